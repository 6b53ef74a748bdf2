package action

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/sshtest"
)

// sshInputs are the inputs of a deploy of ws/site to root on srv.
func sshInputs(srv *sshtest.Server, root string, more map[string]string) map[string]string {
	inputs := actionDefaults()
	for k, v := range map[string]string{"host": srv.User + "@" + srv.Addr, "path": root, "private-key": srv.ClientKeyPEM,
		"known-hosts": srv.KnownHostsLine, "source": "site"} {
		inputs[k] = v
	}
	for k, v := range more {
		inputs[k] = v
	}
	return inputs
}

// siteWorkspace is a workspace with site/index.html.
func siteWorkspace(t *testing.T) string {
	t.Helper()
	ws := t.TempDir()
	os.MkdirAll(filepath.Join(ws, "site"), 0o755)
	os.WriteFile(filepath.Join(ws, "site/index.html"), []byte("v1"), 0o644)
	return ws
}

func currentRelease(t *testing.T, root string) string {
	t.Helper()
	link, err := os.Readlink(filepath.Join(root, "current"))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(link)
}

// TestActionCommandTimeout: a hook that sleeps past command-timeout is
// ended; the deploy fails naming command-timeout. Before the switch
// nothing is switched; after it (after-activate) the deploy rolls back.
func TestActionCommandTimeout(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	root := filepath.Join(srv.MkdirUserTemp(t), "app")
	ws := siteWorkspace(t)
	first := runAction(t, ws, sshInputs(srv, root, nil))
	if first.code != 0 {
		t.Fatalf("first deploy: exit %d\n%s", first.code, first.stdout)
	}
	live := first.outputs["release-id"]
	for _, hook := range []string{"before-activate", "after-activate"} {
		t.Run(hook, func(t *testing.T) {
			start := time.Now()
			r := runAction(t, ws, sshInputs(srv, root, map[string]string{hook: "echo started; sleep 60; echo not reached", "command-timeout": "2s"}))
			took := time.Since(start)
			if r.code != 1 || !strings.Contains(r.stdout, hook+" failed on ") || !strings.Contains(r.stdout, "command-timeout 2s") {
				t.Fatalf("exit %d, want 1 naming %s and command-timeout 2s\n%s", r.code, hook, r.stdout)
			}
			if took > 30*time.Second || strings.Contains(r.stdout, "not reached") {
				t.Errorf("the hook was not ended at its timeout (the deploy took %s)\n%s", took, r.stdout)
			}
			if got := currentRelease(t, root); got != live {
				t.Errorf("current -> %s, want still %s", got, live)
			}
			if want := map[string]string{"before-activate": "false", "after-activate": "true"}[hook]; r.outputs["rolled-back"] != want {
				t.Errorf("rolled-back = %q, want %s", r.outputs["rolled-back"], want)
			}
		})
	}
}
