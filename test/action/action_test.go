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
	"slices"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
	"github.com/atomic-deploy/atomic-deploy/internal/report"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
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

// runActionEnv is runAction with more variables in the step's environment
// (what a workflow's env: gives it).
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
	env = append(env, extraEnv...)
	cmd := exec.Command(binary)
	cmd.Dir, cmd.Env = workspace, env
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
	root := deploytest.LocalRoot(t, "site")
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

// actionDefaults are the inputs action.yml's defaults give every run.
func actionDefaults() map[string]string {
	return map[string]string{
		"mode": "deploy", "port": "22", "exclude": ".git\n.github", "keep-releases": "5",
		"healthcheck-timeout": "30s", "auto-rollback": "true", "insecure-ignore-host-key": "false", "concurrency": "10", "lock-timeout": "5m",
	}
}

// dumpEnv writes what a child of atomic-deploy can learn of the
// environment: its own, and the one atomic-deploy was started with.
func dumpEnv(prefix string) string {
	return strings.ReplaceAll(`env > @-env.txt; tr '\0' '\n' < /proc/$$/environ > @-self.txt; tr '\0' '\n' < /proc/$PPID/environ > @-parent.txt`, "@", prefix)
}

// assertNoCredentials checks the dumps of dumpEnv in dir: each holds the
// environment (PATH), none a secret input's variable or value.
func assertNoCredentials(t *testing.T, dir, prefix string, secrets []string) {
	t.Helper()
	for _, f := range []string{"env", "self", "parent"} {
		data, err := os.ReadFile(filepath.Join(dir, prefix+"-"+f+".txt"))
		if err != nil || !strings.Contains(string(data), "PATH=") {
			t.Errorf("%s-%s.txt: no environment dumped (%v): %q", prefix, f, err, data)
		}
		for _, s := range secrets {
			if strings.Contains(string(data), s) {
				t.Errorf("%s-%s.txt holds the secret %q", prefix, f, s)
			}
		}
		if f != "parent" && strings.Contains(string(data), "INPUT_PASSWORD=") {
			t.Errorf("%s-%s.txt has INPUT_PASSWORD", prefix, f)
		}
	}
}

// TestActionBuildGetsNoCredentials: a build that dumps its environment
// (and the one of the process that started it) into the release ships no
// key, passphrase or password to the server, and a hook run on the runner
// (a deploy with no host) sees none either.
func TestActionBuildGetsNoCredentials(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	const passphrase = "build-must-not-see-PASSPHRASE-31c7"
	const password = "build-must-not-see-PASSWORD-9a0e"
	key := srv.EncryptedClientKeyPEM(t, passphrase)
	secrets := []string{passphrase, password}
	for _, l := range strings.Split(strings.TrimSpace(key), "\n")[1:] {
		if !strings.HasPrefix(l, "-----") {
			secrets = append(secrets, l)
		}
	}
	ws := t.TempDir()
	os.MkdirAll(filepath.Join(ws, "site"), 0o755)
	os.WriteFile(filepath.Join(ws, "site/index.html"), []byte("v1"), 0o644)

	t.Run("build, release on the server", func(t *testing.T) {
		root := filepath.Join(srv.MkdirUserTemp(t), "app")
		inputs := actionDefaults()
		for k, v := range map[string]string{
			"host": srv.User + "@" + srv.Addr, "path": root, "known-hosts": srv.KnownHostsLine,
			"private-key": key, "passphrase": passphrase, "password": password,
			"source": "site", "build": dumpEnv("build"),
		} {
			inputs[k] = v
		}
		r := runAction(t, ws, inputs)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.stdout)
		}
		assertNoCredentials(t, filepath.Join(root, "current"), "build", secrets)
		if env, _ := os.ReadFile(filepath.Join(root, "current/build-env.txt")); !strings.Contains(string(env), "INPUT_HOST="+srv.User) {
			t.Errorf("the other inputs did not reach the build:\n%s", env)
		}
	})
	t.Run("hook on the runner", func(t *testing.T) {
		root := deploytest.LocalRoot(t, "app")
		inputs := actionDefaults()
		for k, v := range map[string]string{
			"path": root, "private-key": key, "passphrase": passphrase, "password": password,
			"source": "site", "before-activate": dumpEnv("hook"),
		} {
			inputs[k] = v
		}
		r := runAction(t, ws, inputs)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.stdout)
		}
		assertNoCredentials(t, filepath.Join(root, "current"), "hook", secrets)
	})
}

// TestActionRemoteOutputIssuesNoCommands: what a hook on the server prints
// (stdout and stderr, ending lines with "\r" as the runner also does, or
// hiding the old ##[...] form in a line) reaches the log as text. Read as
// the runner reads it, the log holds only the action's own commands: its
// masks, groups and the one error annotation.
func TestActionRemoteOutputIssuesNoCommands(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	root := filepath.Join(srv.MkdirUserTemp(t), "app")
	ws := t.TempDir()
	os.MkdirAll(filepath.Join(ws, "site"), 0o755)
	os.WriteFile(filepath.Join(ws, "site/index.html"), []byte("v1"), 0o644)
	forged := `printf 'x\r::set-output name=release-id::evil\n'; ` +
		`printf 'step 1\r::add-mask::[%s]\r::error title=Forged::annotation\n' "$(hostname)"; ` +
		`printf 'x\r::stop-commands::tok\n::tok::\n'; ` +
		`printf '  ::warning::indented\r\n::notice::after crlf\n'; ` +
		`printf 'x ##[set-output name=rolled-back;]false\n' >&2; ` +
		`printf 'x\r##[add-mask]x\n::error::last words\n' >&2; exit 3`
	inputs := actionDefaults()
	for k, v := range map[string]string{
		"host": srv.User + "@" + srv.Addr, "path": root, "private-key": srv.ClientKeyPEM, "known-hosts": srv.KnownHostsLine,
		"source": "site", "before-activate": forged,
	} {
		inputs[k] = v
	}
	r := runAction(t, ws, inputs)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s", r.code, r.stdout)
	}
	open := ""
	var acted []string
	for _, c := range report.ParseRunnerLog(r.stdout) {
		switch {
		case c.Name == "stop-commands" && open == "" && len(c.Data) == 32:
			open = c.Data
			continue
		case open != "" && c.Name == open:
			open = ""
			continue
		case c.Name == "add-mask":
			if !strings.Contains(srv.ClientKeyPEM, c.Data) {
				t.Errorf("forged mask %q", c.Data)
			}
			continue
		case c.Name == "error" && c.Properties["title"] != "Deploy failed":
			t.Errorf("forged error %q %q", c.Properties["title"], c.Data)
		}
		acted = append(acted, c.Name)
	}
	if want := []string{"group", "endgroup", "group", "endgroup", "group", "endgroup", "error"}; !slices.Equal(acted, want) {
		t.Errorf("the runner would act on %q, want %q\n%s", acted, want, r.stdout)
	}
	if open != "" {
		t.Error("commands left stopped")
	}
	for _, shown := range []string{"] ::set-output name=release-id::evil\n", "] ::error::last words\n", "] x ##[set-output name=rolled-back;]false\n"} {
		if !strings.Contains(r.stdout, shown) {
			t.Errorf("the log does not show %q:\n%s", shown, r.stdout)
		}
	}
	if r.outputs["release-id"] == "evil" || r.outputs["rolled-back"] != "false" {
		t.Errorf("outputs %q", r.outputs)
	}
}

// TestActionBareFingerprintForSeveralServers: a bare fingerprint with two
// hosts (or a jump host) is refused before anything is touched, and the
// message shows the per-host form.
func TestActionBareFingerprintForSeveralServers(t *testing.T) {
	ws := t.TempDir()
	for _, extra := range []map[string]string{{"host": "deploy@web1\ndeploy@web2:2222"}, {"host": "deploy@web1", "jump-host": "bastion"}} {
		inputs := actionDefaults()
		for k, v := range map[string]string{"path": "/srv/app", "private-key": "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----",
			"fingerprint": "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"} {
			inputs[k] = v
		}
		for k, v := range extra {
			inputs[k] = v
		}
		r := runAction(t, ws, inputs)
		if r.code != 2 || !strings.Contains(r.stdout, "::error title=Invalid input%3A fingerprint::a bare fingerprint") || !strings.Contains(r.stdout, "%0A  web1=SHA256:…") {
			t.Errorf("%v: exit %d\n%s", extra, r.code, r.stdout)
		}
	}
}

// TestActionNamesThatAreNotUTF8 deploys files whose names differ only in
// bytes that are not UTF-8 over SSH (tar stream, and SFTP on a server
// without a shell) twice: both are released as they are, and the second
// deploy reuses them.
func TestActionNamesThatAreNotUTF8(t *testing.T) {
	for _, sftpOnly := range []bool{false, true} {
		t.Run(map[bool]string{false: "shell", true: "sftp-only"}[sftpOnly], func(t *testing.T) {
			srv := sshtest.Start(t, sshtest.Options{SFTPOnly: sftpOnly})
			root := filepath.Join(srv.MkdirUserTemp(t), "app")
			ws := t.TempDir()
			names := []string{"caf\xe9.txt", "caf\xe8.txt", "d\xff/x\xfe.txt"}
			for i, n := range names {
				os.MkdirAll(filepath.Join(ws, "site", filepath.Dir(n)), 0o755)
				os.WriteFile(filepath.Join(ws, "site", n), []byte{byte('a' + i)}, 0o644)
			}
			inputs := actionDefaults()
			for k, v := range map[string]string{"host": srv.User + "@" + srv.Addr, "path": root, "private-key": srv.ClientKeyPEM,
				"known-hosts": srv.KnownHostsLine, "source": "site"} {
				inputs[k] = v
			}
			first := runAction(t, ws, inputs)
			if first.code != 0 || first.outputs["files-uploaded"] != "4" {
				t.Fatalf("first: exit %d, outputs %q\n%s", first.code, first.outputs, first.stdout)
			}
			for i, n := range names {
				if got, err := os.ReadFile(filepath.Join(root, "current", n)); err != nil || string(got) != string(rune('a'+i)) {
					t.Errorf("%q on the server: %q, %v", n, got, err)
				}
			}
			second := runAction(t, ws, inputs)
			if second.code != 0 || second.outputs["files-reused"] != "4" || second.outputs["files-uploaded"] != "0" {
				t.Fatalf("second: exit %d, outputs %q (want all 4 reused)\n%s", second.code, second.outputs, second.stdout)
			}
		})
	}
}
