package app

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestChildEnvDropsSecretVariables: what the build command and local hooks
// get is the process environment without the variables that carry secret
// inputs, in either spelling that reaches us, and with everything else.
func TestChildEnvDropsSecretVariables(t *testing.T) {
	environ := []string{
		"PATH=/usr/bin:/bin", "HOME=/github/home", "GITHUB_SHA=abc", "CI=true",
		"INPUT_PRIVATE-KEY=-----BEGIN KEY-----", "INPUT_PASSPHRASE=phrase", "INPUT_PASSWORD=pw",
		"INPUT_PRIVATE_KEY=-----BEGIN KEY-----", // what some runners (act) pass
		"ATOMIC_DEPLOY_PRIVATE_KEY=-----BEGIN KEY-----", "ATOMIC_DEPLOY_PASSPHRASE=phrase", "ATOMIC_DEPLOY_PASSWORD=pw",
		"INPUT_HOST=deploy@web1", "INPUT_BUILD=npm ci", "ATOMIC_DEPLOY_PATH=/srv/app", "NPM_TOKEN=kept: the build may need it",
		"NOT_A_PAIR",
	}
	got := childEnv(environ)
	want := []string{
		"PATH=/usr/bin:/bin", "HOME=/github/home", "GITHUB_SHA=abc", "CI=true",
		"INPUT_HOST=deploy@web1", "INPUT_BUILD=npm ci", "ATOMIC_DEPLOY_PATH=/srv/app", "NPM_TOKEN=kept: the build may need it",
	}
	if !slices.Equal(got, want) {
		t.Errorf("childEnv =\n%q\nwant\n%q", got, want)
	}
}

// TestHideSecretEnv: a child reading /proc/<parent>/environ finds the
// secret variables without their values; the others are untouched.
func TestHideSecretEnv(t *testing.T) {
	before, err := os.ReadFile("/proc/self/environ")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	if !bytes.Contains(before, []byte("INPUT_PASSWORD=")) {
		// The variable must be in the block the kernel keeps, which only
		// a process started with it has: run this test in such a child.
		if os.Getenv("HIDE_SECRET_ENV_CHILD") != "" {
			t.Fatal("the child was started without INPUT_PASSWORD")
		}
		exe, _ := os.Executable()
		cmd := exec.Command(exe, "-test.run=^TestHideSecretEnv$")
		cmd.Env = append(os.Environ(), "HIDE_SECRET_ENV_CHILD=1", "INPUT_PASSWORD=hide-me-8d0c", "ATOMIC_DEPLOY_PASSPHRASE=hide-me-too-77a1", "KEEP_ME=visible-42")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	if err := hideSecretEnv(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile("/proc/self/environ")
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"hide-me-8d0c", "hide-me-too-77a1"} {
		if bytes.Contains(after, []byte(secret)) {
			t.Errorf("/proc/self/environ still holds %q", secret)
		}
	}
	if !bytes.Contains(after, []byte("KEEP_ME=visible-42\x00")) || !bytes.Contains(after, []byte("INPUT_PASSWORD=")) {
		t.Errorf("other variables changed:\n%q", after)
	}
	if os.Getenv("INPUT_PASSWORD") != "hide-me-8d0c" {
		t.Error("the program's own copy of the environment changed")
	}
	if strings.Count(string(after), "\x00") < strings.Count(string(before), "\x00") {
		t.Error("variables were lost")
	}
}
