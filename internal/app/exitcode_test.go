package app_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
)

// A source that is missing or not a directory is bad input: exit status 2,
// the message names the input, and nothing runs (not even the build).
func TestSourceMustBeADirectory(t *testing.T) {
	ws := t.TempDir()
	t.Chdir(ws)
	os.WriteFile(filepath.Join(ws, "file.txt"), []byte("x"), 0o644)
	tests := []struct{ source, says string }{
		{"missing", "missing (in " + ws + ") does not exist"},
		{filepath.Join(ws, "missing", "deeper"), ws + "/missing/deeper does not exist"},
		{"file.txt", "file.txt (in " + ws + ") is not a directory"},
		{filepath.Join(ws, "file.txt"), ws + "/file.txt is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.source, func(t *testing.T) {
			root := deploytest.LocalRoot(t, "site")
			marker := filepath.Join(t.TempDir(), "built")
			for _, args := range [][]string{
				{"deploy", "--path", root, "--source", tt.source, "--build", "touch " + marker},
				{"plan", "--path", root, "--source", tt.source},
			} {
				code, out := runCLI(t, nil, args...)
				if code != 2 || !strings.Contains(out, "error: Invalid input: source: "+tt.says) {
					t.Errorf("%s: exit %d, want 2 and the reason:\n%s", args[0], code, out)
				}
			}
			r := runAction(t, actionEnv(t, map[string]string{"path": root, "source": tt.source, "build": "touch " + marker}))
			if r.code != 2 || !strings.Contains(r.stdout, "::error title=Invalid input%3A source::") {
				t.Errorf("action: exit %d, want 2 and an annotation:\n%s", r.code, r.stdout)
			}
			for _, p := range []string{root, marker} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was created by a run with bad input", p)
				}
			}
		})
	}
	// Modes that release nothing do not look at source.
	root := deploytest.LocalRoot(t, "site")
	if code, out := runCLI(t, nil, "unlock", "--path", root, "--source", "missing"); code != 0 {
		t.Errorf("unlock with a missing source: exit %d\n%s", code, out)
	}
}

// The summary of a rollback says so on every host's row.
func TestRollbackSummarySaysRolledBack(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "index.html"), []byte("hi\n"), 0o644)
	root := deploytest.LocalRoot(t, "site")
	var ids []string
	for range 2 {
		r := runAction(t, actionEnv(t, map[string]string{"path": root, "source": src}))
		if r.code != 0 {
			t.Fatalf("deploy: exit %d\n%s", r.code, r.stdout)
		}
		ids = append(ids, r.outputs["release-id"])
	}
	r := runAction(t, actionEnv(t, map[string]string{"path": root, "mode": "rollback"}))
	if r.code != 0 || r.outputs["release-id"] != ids[0] {
		t.Fatalf("rollback: exit %d, release-id %q, want %s\n%s", r.code, r.outputs["release-id"], ids[0], r.stdout)
	}
	if !regexp.MustCompile("(?m)^\\| local \\| `" + ids[0] + "` \\| `" + ids[1] + "` \\| .* \\| ✅ rolled back \\|$").MatchString(r.summaryRaw) {
		t.Errorf("no \"rolled back\" row for local:\n%s", r.summaryRaw)
	}
	if strings.Contains(r.summaryRaw, "deployed") {
		t.Errorf("the rollback's summary says deployed:\n%s", r.summaryRaw)
	}
}
