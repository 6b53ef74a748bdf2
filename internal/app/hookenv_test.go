package app_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
)

// TestHookEnvFromFlagsAndConfigFile: --env and --secret-env add a line
// each use; a name alone reads the shell's variable (the way to keep a
// secret out of ps); the config file gives env but never secret-env.
func TestHookEnvFromFlagsAndConfigFile(t *testing.T) {
	ws := t.TempDir()
	t.Chdir(ws)
	os.MkdirAll(filepath.Join(ws, "site"), 0o755)
	os.WriteFile(filepath.Join(ws, "site/index.html"), []byte("hi"), 0o644)
	root := deploytest.LocalRoot(t, "app")
	os.WriteFile(filepath.Join(ws, "atomic-deploy.yml"), []byte("source: site\nenv:\n  - FROM_FILE=file value\n  - EQUALS=a=b=c\n"), 0o644)

	code, out := runCLI(t, []string{"SHELL_SECRET=shell-secret-4a1e", "PATH=" + os.Getenv("PATH")}, "deploy", "--path", root,
		"--env", "FLAG_ONE=1", "--env", "FLAG_TWO<<EOF\ntwo\nlines\nEOF", "--secret-env", "SHELL_SECRET", "--secret-env=INLINE=inline-secret-77d0",
		"--before-activate", `env > "$DEPLOY_PATH/../hook.env"; echo "$SHELL_SECRET $INLINE"`)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	env, _ := os.ReadFile(filepath.Join(root, "../hook.env"))
	for _, want := range []string{"FLAG_ONE=1\n", "FLAG_TWO=two\nlines\n", "SHELL_SECRET=shell-secret-4a1e\n", "INLINE=inline-secret-77d0\n"} {
		if !strings.Contains(string(env), want) {
			t.Errorf("the hook's environment lacks %q:\n%s", want, env)
		}
	}
	if strings.Contains(string(env), "FROM_FILE") {
		t.Errorf("--env did not replace the file's env")
	}
	if strings.Contains(out, "shell-secret-4a1e") || strings.Contains(out, "inline-secret-77d0") || !strings.Contains(out, "[local] *** ***") {
		t.Errorf("the secrets are not masked on the terminal:\n%s", out)
	}

	// Without the flags the file's env applies.
	if code, out := runCLI(t, nil, "deploy", "--path", root, "--before-activate", `env > "$DEPLOY_PATH/../hook.env"`); code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	env, _ = os.ReadFile(filepath.Join(root, "../hook.env"))
	if !strings.Contains(string(env), "FROM_FILE=file value\n") || !strings.Contains(string(env), "EQUALS=a=b=c\n") {
		t.Errorf("the config file's env did not reach the hook:\n%s", env)
	}

	os.WriteFile(filepath.Join(ws, "atomic-deploy.yml"), []byte("source: site\nsecret-env: [DB_PASSWORD=file-secret-9d2c]\n"), 0o644)
	code, out = runCLI(t, nil, "deploy", "--path", root)
	if code != 2 || !strings.Contains(out, `"secret-env" is a secret and is not read from files; pass it with --secret-env or the ATOMIC_DEPLOY_SECRET_ENV environment variable`) {
		t.Errorf("exit %d, want 2 refusing secret-env in the file\n%s", code, out)
	}
	if strings.Contains(out, "file-secret-9d2c") {
		t.Errorf("the file's secret was printed:\n%s", out)
	}
}
