package action

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
)

// closedPort returns 127.0.0.1:port where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// unreachableSetup is a key, a known_hosts line for addr and a source tree:
// everything a run needs except a server.
func unreachableSetup(t *testing.T, addr string) (key, knownHosts, source string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(addr)
	knownHosts = "[" + host + "]:" + port + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))
	source = t.TempDir()
	if err := os.WriteFile(filepath.Join(source, "index.html"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block)), knownHosts, source
}

// assertCleanFailure checks that a run that could not connect failed with
// exit status 1 and said so in one line, without a Go stack trace.
func assertCleanFailure(t *testing.T, code int, out, errorPrefix, addr string) {
	t.Helper()
	if code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	for _, s := range []string{"panic", "goroutine", ".go:"} {
		if strings.Contains(out, s) {
			t.Errorf("output has %q (a stack trace?)", s)
		}
	}
	var errs []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, errorPrefix) {
			errs = append(errs, line)
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0], addr) || !strings.Contains(errs[0], "connection refused") {
		t.Errorf("want one %q line naming %s and the refused connection, got %q", errorPrefix, addr, errs)
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

// Every verb, from a terminal and as the action, reports a host that cannot
// be reached as a message.
func TestUnreachableHostIsAMessage(t *testing.T) {
	addr := closedPort(t)
	key, knownHosts, source := unreachableSetup(t, addr)
	root := deploytest.LocalRoot(t, "site")
	for _, verb := range []string{"deploy", "rollback", "unlock", "releases", "plan"} {
		t.Run("cli "+verb, func(t *testing.T) {
			cmd := exec.Command(binary, verb, "--host", "deploy@"+addr, "--path", root, "--source", source, "--known-hosts", knownHosts)
			// The key comes from the environment, as the Security model says.
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "ATOMIC_DEPLOY_PRIVATE_KEY=" + key}
			cmd.Dir = t.TempDir()
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			assertCleanFailure(t, code, string(out), "error: ", addr)
		})
	}
	for _, mode := range []string{"deploy", "rollback", "unlock"} {
		t.Run("action "+mode, func(t *testing.T) {
			r := runAction(t, t.TempDir(), map[string]string{"mode": mode, "host": "deploy@" + addr, "path": root,
				"source": source, "private-key": key, "known-hosts": knownHosts})
			assertCleanFailure(t, r.code, r.stdout, "::error ", addr)
		})
	}
	if _, err := os.Stat(root); err == nil {
		t.Errorf("%s was created", root)
	}
}
