package action

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/sshtest"
)

// runBinary runs the built binary in dir with exactly env.
func runBinary(t *testing.T, bin, dir string, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env = dir, append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// The documented way to give the CLI its secrets: the key and the pinned
// host keys from files (or the key from the environment), not on the
// command line.
func TestCLIReadsKeyAndKnownHostsFromFiles(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	root := filepath.Join(srv.MkdirUserTemp(t), "app")
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "index.html"), []byte("v1"), 0o644)
	files := t.TempDir()
	keyFile, khFile := filepath.Join(files, "deploy_key"), filepath.Join(files, "known_hosts")
	os.WriteFile(keyFile, []byte(srv.ClientKeyPEM), 0o600)
	os.WriteFile(khFile, []byte(srv.KnownHostsLine+"\n"), 0o644)
	host := srv.User + "@" + srv.Addr

	code, out := runBinary(t, binary, t.TempDir(), nil, "deploy", "--host", host, "--path", root, "--source", src,
		"--private-key-file", keyFile, "--known-hosts-file", khFile)
	if code != 0 {
		t.Fatalf("deploy: exit %d\n%s", code, out)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "current/index.html")); string(got) != "v1" {
		t.Errorf("current serves %q", got)
	}
	code, out = runBinary(t, binary, t.TempDir(), []string{"ATOMIC_DEPLOY_PRIVATE_KEY=" + srv.ClientKeyPEM},
		"releases", "--host", host, "--path", root, "--known-hosts-file", khFile)
	if code != 0 || !strings.Contains(out, host+": 1 release\n") {
		t.Fatalf("releases: exit %d\n%s", code, out)
	}
	if strings.Contains(out, strings.Split(srv.ClientKeyPEM, "\n")[1]) {
		t.Errorf("the key was printed")
	}
}

// A job re-run with debug logging (RUNNER_DEBUG=1) logs every remote
// operation, as ATOMIC_DEPLOY_TRACE=1 does; without either, nothing is traced.
func TestRunnerDebugTraces(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	root := filepath.Join(srv.MkdirUserTemp(t), "app")
	ws := t.TempDir()
	os.WriteFile(filepath.Join(ws, "index.html"), []byte("v1"), 0o644)
	inputs := []string{"GITHUB_ACTIONS=true", "INPUT_HOST=" + srv.User + "@" + srv.Addr, "INPUT_PATH=" + root,
		"INPUT_PRIVATE-KEY=" + srv.ClientKeyPEM, "INPUT_KNOWN-HOSTS=" + srv.KnownHostsLine}
	traced := regexp.MustCompile(`(?m)^trace ` + regexp.QuoteMeta(srv.User+"@"+srv.Addr) + `: connected in \S+$`)
	for _, tt := range []struct {
		env   []string
		trace bool
	}{
		{nil, false},
		{[]string{"RUNNER_DEBUG=1"}, true},
		{[]string{"ATOMIC_DEPLOY_TRACE=1"}, true},
	} {
		code, out := runBinary(t, binary, ws, slices.Concat(inputs, tt.env))
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s", tt.env, code, out)
		}
		if got := traced.MatchString(out) && strings.Contains(out, "[trace] "); got != tt.trace {
			t.Errorf("%v: traced = %v, want %v\n%s", tt.env, got, tt.trace, out)
		}
	}
}

// The version is set at build time with -ldflags -X, as the Makefile,
// the Dockerfile and release.yml do.
func TestVersionSetAtBuildTime(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "atomic-deploy")
	build := exec.Command("go", "build", "-o", bin, "-ldflags", "-X github.com/atomic-deploy/atomic-deploy/internal/version.Version=v1.2.3-rc.1", "../..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if code, out := runBinary(t, bin, t.TempDir(), nil, "--version"); code != 0 || out != "atomic-deploy v1.2.3-rc.1\n" {
		t.Errorf("exit %d, %q", code, out)
	}
	// Without it: dev, and the commit when Go recorded one.
	if code, out := runBinary(t, binary, t.TempDir(), nil, "--version"); code != 0 || !regexp.MustCompile(`^atomic-deploy dev(-[0-9a-f]{12}(-dirty)?)?\n$`).MatchString(out) {
		t.Errorf("exit %d, %q", code, out)
	}
}
