package action

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	inputs := map[string]string{
		"mode": "deploy", "port": "22", "exclude": ".github", "keep-releases": "5", "healthcheck-timeout": "30s", "auto-rollback": "true",
		"insecure-ignore-host-key": "false", "concurrency": "10", "lock-timeout": "5m", "connect-timeout": "20s", "connect-retries": "3",
		"host": srv.User + "@" + srv.Addr, "path": root, "private-key": srv.ClientKeyPEM, "known-hosts": srv.KnownHostsLine,
	}

	srv.Kill()
	for {
		c, err := net.Dial("tcp", srv.Addr)
		if err != nil {
			break
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
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

	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	inputs["host"] = srv.User + "@" + silent.Addr().String()
	inputs["connect-timeout"], inputs["connect-retries"] = "1", "0"
	start := time.Now()
	r = runAction(t, ws, inputs)
	if d := time.Since(start); r.code != 1 || d > 5*time.Second || !strings.Contains(r.stdout, "timed out") {
		t.Errorf("silent server with connect-timeout 1: exit %d after %v\n%s", r.code, d, r.stdout)
	}
}
