package app_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
)

// dumpEnv writes what a child of atomic-deploy can learn of the
// environment: its own, and the one atomic-deploy was started with.
const dumpEnv = `env > %[1]s-env.txt; tr '\0' '\n' < /proc/$$/environ > %[1]s-self.txt; tr '\0' '\n' < /proc/$PPID/environ > %[1]s-parent.txt`

// TestBuildAndLocalHooksGetNoSecrets: the build command and a hook run on
// this machine see neither the secret inputs' variables nor their values,
// while the rest of the environment reaches them.
func TestBuildAndLocalHooksGetNoSecrets(t *testing.T) {
	source := t.TempDir()
	os.WriteFile(filepath.Join(source, "index.html"), []byte("hi\n"), 0o644)
	root := deploytest.LocalRoot(t, "site")
	env := actionEnv(t, with(secrets(), map[string]string{
		"path": root, "source": source,
		"build":           strings.ReplaceAll(dumpEnv, "%[1]s", "build"),
		"before-activate": strings.ReplaceAll(dumpEnv, "%[1]s", "hook"),
	}))
	env["KEEP_ME"] = "visible-to-builds"
	// In Actions these variables are the process's own: the test process
	// gets them too, so a child that inherited it would see them.
	for k, v := range env {
		if strings.HasPrefix(k, "INPUT_") || k == "KEEP_ME" {
			t.Setenv(k, v)
		}
	}
	r := runAction(t, env)
	if r.code != 0 {
		t.Fatalf("exit code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	release := r.outputs["release-path"]
	for _, who := range []string{"build", "hook"} {
		env, _ := os.ReadFile(filepath.Join(release, who+"-env.txt"))
		if !strings.Contains(string(env), "KEEP_ME=visible-to-builds") || !strings.Contains(string(env), "INPUT_PATH=") {
			t.Errorf("%s: the rest of the environment did not reach it:\n%s", who, env)
		}
		for _, f := range []string{"env", "self"} {
			data, _ := os.ReadFile(filepath.Join(release, who+"-"+f+".txt"))
			for _, name := range []string{"INPUT_PRIVATE-KEY=", "INPUT_PASSPHRASE=", "INPUT_PASSWORD="} {
				if strings.Contains(string(data), name) {
					t.Errorf("%s-%s.txt has %s", who, f, name)
				}
			}
		}
		for _, f := range []string{"env", "self", "parent"} {
			data, _ := os.ReadFile(filepath.Join(release, who+"-"+f+".txt"))
			for _, s := range secretNeedles() {
				if strings.Contains(string(data), s) {
					t.Errorf("%s-%s.txt holds the secret %q", who, f, s)
				}
			}
		}
	}
}
