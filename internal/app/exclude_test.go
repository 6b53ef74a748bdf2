package app_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
)

// Setting exclude replaces only its .github default: .git/config, which
// holds the token actions/checkout used, never ships unless "!.git" says so.
func TestActionExcludeKeepsGitOut(t *testing.T) {
	ws := t.TempDir()
	for name, content := range map[string]string{
		".git/config":             "[http]\n\textraheader = AUTHORIZATION: basic c2VjcmV0\n",
		".github/workflows/d.yml": "on: push\n",
		"tests/a_test.php":        "<?php\n",
		"index.php":               "<?php\n",
	} {
		p := filepath.Join(ws, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		exclude string
		shipped map[string]bool
	}{
		{"tests", map[string]bool{".git/config": false, ".github/workflows/d.yml": true, "tests/a_test.php": false, "index.php": true}},
		{"tests\n!.git", map[string]bool{".git/config": true, ".github/workflows/d.yml": true, "tests/a_test.php": false, "index.php": true}},
	} {
		root := deploytest.LocalRoot(t, "site")
		r := runAction(t, actionEnv(t, map[string]string{"path": root, "source": ws, "exclude": tt.exclude}))
		if r.code != 0 {
			t.Fatalf("exclude %q: exit %d\n%s%s", tt.exclude, r.code, r.stdout, r.stderr)
		}
		for name, want := range tt.shipped {
			_, err := os.Lstat(filepath.Join(root, "current", name))
			if got := err == nil; got != want {
				t.Errorf("exclude %q: %s shipped = %v, want %v", tt.exclude, name, got, want)
			}
		}
	}
}
