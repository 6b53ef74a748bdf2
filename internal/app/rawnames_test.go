package app_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
)

// TestNamesThatAreNotUTF8AreReused: two files whose names differ only in
// bytes that are not UTF-8 are both released, as they are, and the next
// deploy reuses them instead of sending them again.
func TestNamesThatAreNotUTF8AreReused(t *testing.T) {
	source := t.TempDir()
	names := []string{"caf\xe9.txt", "caf\xe8.txt", "dir\xff/x\xfe\xfd.txt"}
	for i, n := range names {
		p := filepath.Join(source, n)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte{byte('a' + i)}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root := deploytest.LocalRoot(t, "site")
	env := func() map[string]string { return actionEnv(t, map[string]string{"path": root, "source": source}) }

	first := runAction(t, env())
	if first.code != 0 || first.outputs["files-uploaded"] != "4" {
		t.Fatalf("first deploy: exit %d, outputs %q\n%s", first.code, first.outputs, first.stdout)
	}
	for i, n := range names {
		if got, err := os.ReadFile(filepath.Join(root, "current", n)); err != nil || string(got) != string(rune('a'+i)) {
			t.Errorf("%q in the release: %q, %v", n, got, err)
		}
	}
	second := runAction(t, env())
	if second.code != 0 || second.outputs["files-reused"] != "4" || second.outputs["files-uploaded"] != "0" {
		t.Fatalf("second deploy: exit %d, outputs %q (want all 4 reused)\n%s", second.code, second.outputs, second.stdout)
	}
}
