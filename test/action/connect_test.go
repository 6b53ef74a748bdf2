package action

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/sshtest"
)

// The connect-* inputs reach the dial: a server that starts listening a
// second late is reached with the default retries (and the log says so);
// connect-timeout bounds an attempt against a server that never speaks.
func TestActionConnectRetriesAndTimeout(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	root := filepath.Join(srv.MkdirUserTemp(t), "app")
	ws := t.TempDir()
	os.WriteFile(filepath.Join(ws, "index.html"), []byte("hi"), 0o644)
	inputs := workflowInputs(srv, root)

	srv.Down()
	restarted := make(chan error, 1)
	time.AfterFunc(time.Second, func() { restarted <- srv.Restart() })
	r := runAction(t, ws, inputs)
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	if r.code != 0 {
		t.Fatalf("exit %d with sshd back after 1 s\n%s", r.code, r.stdout)
	}
	if !strings.Contains(r.stdout, "connection refused") || !strings.Contains(r.stdout, "trying again in") {
		t.Errorf("the log does not show the retry:\n%s", r.stdout)
	}

	silent, _ := testutil.SilentListener(t)
	inputs["host"] = srv.User + "@" + silent
	inputs["connect-timeout"], inputs["connect-retries"] = "1", "0"
	start := time.Now()
	r = runAction(t, ws, inputs)
	if d := time.Since(start); r.code != 1 || d > 5*time.Second || !strings.Contains(r.stdout, "timed out") {
		t.Errorf("silent server with connect-timeout 1: exit %d after %v\n%s", r.code, d, r.stdout)
	}
}
