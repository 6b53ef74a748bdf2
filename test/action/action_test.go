// Package action runs the built binary exactly as the GitHub Actions runner
// runs a container action: inputs as INPUT_<NAME> environment variables,
// the workspace as the working directory, GITHUB_OUTPUT and
// GITHUB_STEP_SUMMARY files, no arguments. The target is a real sshd.
package action

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
	"github.com/atomic-deploy/atomic-deploy/internal/report"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/sshtest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "atomic-deploy-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "atomic-deploy")
	build := exec.Command("go", "build", "-o", binary, "../..")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		panic("build: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type run struct {
	code    int
	stdout  string
	outputs map[string]string
	summary string
}

// runAction runs the binary in workspace with the given inputs.
func runAction(t *testing.T, workspace string, inputs map[string]string) run {
	t.Helper()
	return runActionEnv(t, workspace, inputs, nil)
}

// runActionEnv is runAction with more environment variables (a later one
// of the same name wins).
func runActionEnv(t *testing.T, workspace string, inputs map[string]string, extraEnv []string) run {
	t.Helper()
	files := t.TempDir()
	outFile, sumFile := filepath.Join(files, "output"), filepath.Join(files, "summary")
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + files, "GITHUB_ACTIONS=true",
		"GITHUB_OUTPUT=" + outFile, "GITHUB_STEP_SUMMARY=" + sumFile, "GITHUB_WORKSPACE=" + workspace,
		"GITHUB_SHA=0123456789abcdef0123456789abcdef01234567", "GITHUB_ACTOR=octocat",
		"GITHUB_SERVER_URL=https://github.com", "GITHUB_REPOSITORY=o/r", "GITHUB_RUN_ID=42"}
	for k, v := range inputs {
		// The runner upper-cases names and keeps hyphens.
		env = append(env, "INPUT_"+strings.ToUpper(k)+"="+v)
	}
	cmd := exec.Command(binary)
	cmd.Dir, cmd.Env = workspace, append(env, extraEnv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	r := run{stdout: out.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(outFile)
	outputs, perr := report.ParseOutputs(string(data))
	if perr != nil {
		t.Fatalf("the runner would reject GITHUB_OUTPUT: %v\n%s", perr, data)
	}
	r.outputs = outputs
	sum, _ := os.ReadFile(sumFile)
	r.summary = string(sum)
	return r
}

// workflowInputs is what a workflow step deploying to root on srv passes:
// every input of action.yml at its default, and the connection.
func workflowInputs(srv *sshtest.Server, root string) map[string]string {
	in := map[string]string{}
	for _, i := range config.Inputs {
		in[i.Name] = i.Default
	}
	maps.Copy(in, map[string]string{"host": srv.User + "@" + srv.Addr, "path": root, "private-key": srv.ClientKeyPEM, "known-hosts": srv.KnownHostsLine})
	return in
}

func TestActionDeploysOverSSHAndRollsBack(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	root := filepath.Join(srv.MkdirUserTemp(t), "app")
	ws := t.TempDir()
	os.MkdirAll(filepath.Join(ws, "site/public"), 0o755)
	os.WriteFile(filepath.Join(ws, "site/public/index.html"), []byte("v1"), 0o644)
	os.MkdirAll(filepath.Join(ws, ".git"), 0o755)
	os.WriteFile(filepath.Join(ws, ".git/HEAD"), []byte("ref: x"), 0o644)
	inputs := map[string]string{
		// What action.yml's defaults give every run.
		"mode": "deploy", "port": "22", "exclude": ".github", "keep-releases": "5",
		"healthcheck-timeout": "30s", "auto-rollback": "true", "insecure-ignore-host-key": "false", "concurrency": "10", "lock-timeout": "5m",
		// The workflow's.
		"host": srv.User + "@" + srv.Addr, "path": root, "private-key": srv.ClientKeyPEM, "known-hosts": srv.KnownHostsLine,
		"source": "site", "before-activate": `test -f public/index.html && echo "ready $RELEASE_ID"`,
	}
	first := runAction(t, ws, inputs)
	if first.code != 0 {
		t.Fatalf("exit %d\n%s", first.code, first.stdout)
	}
	id := first.outputs["release-id"]
	if !regexp.MustCompile(`^\d{14}$`).MatchString(id) {
		t.Fatalf("release-id = %q\n%s", id, first.stdout)
	}
	want := map[string]string{"release-path": root + "/releases/" + id, "previous-release-id": "", "revision": "0123456789abcdef0123456789abcdef01234567",
		"files-uploaded": "2", "files-reused": "0", "rolled-back": "false"}
	for k, v := range want {
		if first.outputs[k] != v {
			t.Errorf("output %s = %q, want %q", k, first.outputs[k], v)
		}
	}
	for _, s := range []string{"::group::", "ready " + id, "::add-mask::"} {
		if !strings.Contains(first.stdout, s) {
			t.Errorf("log lacks %q", s)
		}
	}
	// The runner consumes ::add-mask:: lines; nothing else may hold the key.
	var shown []string
	for _, l := range strings.Split(first.stdout, "\n") {
		if !strings.HasPrefix(l, "::add-mask::") {
			shown = append(shown, l)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(srv.ClientKeyPEM), "\n")[1:] {
		if strings.Contains(strings.Join(shown, "\n"), line) {
			t.Errorf("a line of the private key reached the log")
		}
	}
	if !strings.Contains(first.summary, "| "+srv.User+"@"+srv.Addr+" | `"+id+"`") {
		t.Errorf("summary lacks the host row:\n%s", first.summary)
	}
	if _, err := os.Stat(filepath.Join(root, "current/.git")); err == nil {
		t.Errorf(".git was released")
	}

	os.WriteFile(filepath.Join(ws, "site/public/index.html"), []byte("v2"), 0o644)
	second := runAction(t, ws, inputs)
	if second.code != 0 || second.outputs["previous-release-id"] != id || second.outputs["files-uploaded"] != "1" || second.outputs["files-reused"] != "1" {
		t.Fatalf("second deploy: exit %d, outputs %v\n%s", second.code, second.outputs, second.stdout)
	}

	inputs["mode"] = "rollback"
	back := runAction(t, ws, inputs)
	if back.code != 0 || back.outputs["release-id"] != id {
		t.Fatalf("rollback: exit %d, outputs %v\n%s", back.code, back.outputs, back.stdout)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "current/public/index.html")); string(got) != "v1" {
		t.Errorf("after rollback current serves %q", got)
	}
}

func TestActionBadInputChangesNothing(t *testing.T) {
	ws := t.TempDir()
	root := filepath.Join(t.TempDir(), "site")
	r := runAction(t, ws, map[string]string{"path": root, "keep-releases": "zero", "host": "web1", "private-key": "-----BEGIN OPENSSH PRIVATE KEY-----\nsecretsecretsecret\n-----END OPENSSH PRIVATE KEY-----"})
	if r.code != 2 {
		t.Fatalf("exit %d, want 2\n%s", r.code, r.stdout)
	}
	for _, s := range []string{"::error title=Invalid input%3A keep-releases::", "::error title=Invalid input%3A known-hosts::"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("log lacks %q:\n%s", s, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "secretsecretsecret\n") && !strings.Contains(r.stdout, "::add-mask::secretsecretsecret") {
		t.Errorf("secret printed")
	}
	if _, err := os.Stat(root); err == nil {
		t.Errorf("the deploy root was created by a run with bad input")
	}
}
