package app_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/app"
	"github.com/atomic-deploy/atomic-deploy/internal/config"
	"github.com/atomic-deploy/atomic-deploy/internal/report"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
)

// Recognisable secrets. The password has a double quote and a backslash so
// that a message quoting it with %q changes its spelling.
const (
	secretKey = "-----BEGIN OPENSSH PRIVATE KEY-----\n" +
		"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n" +
		"QyNTUxOQAAACBTOPSECRETKEYLINEtopsecretkeylineTOPSECRETKEYLINEtopsecretk\n" +
		"-----END OPENSSH PRIVATE KEY-----\n"
	secretPassword   = `hunter2"PASSWORD\5e77`
	secretPassphrase = "correct-horse-battery-PASSPHRASE-8c1f"
)

// secretNeedles is every string that must never be printed: each secret,
// each line of the key, and the password as %q spells it.
func secretNeedles() []string {
	n := []string{secretPassword, secretPassphrase, strconv.Quote(secretPassword)[1 : len(strconv.Quote(secretPassword))-1]}
	for _, l := range strings.Split(strings.TrimSpace(secretKey), "\n") {
		n = append(n, l)
	}
	return n
}

type actionRun struct {
	code                    int
	stdout, stderr          string
	outputsFile, summaryRaw string
	outputs                 map[string]string
}

// actionEnv is what the runner passes a container action: every input of
// action.yml with its default (an empty string when it has none), the
// GITHUB_* variables and the file command paths.
func actionEnv(t *testing.T, inputs map[string]string) map[string]string {
	dir := t.TempDir()
	env := map[string]string{
		"GITHUB_ACTIONS":      "true",
		"GITHUB_OUTPUT":       filepath.Join(dir, "output"),
		"GITHUB_STEP_SUMMARY": filepath.Join(dir, "summary"),
		"GITHUB_SHA":          "0123456789abcdef0123456789abcdef01234567",
		"GITHUB_ACTOR":        "octocat",
		"GITHUB_REPOSITORY":   "octo/site",
		"GITHUB_RUN_ID":       "42",
		"HOME":                dir,
	}
	for _, in := range config.Inputs {
		env["INPUT_"+strings.ToUpper(in.Name)] = in.Default
	}
	for k, v := range inputs {
		env["INPUT_"+strings.ToUpper(k)] = v
	}
	return env
}

func runAction(t *testing.T, env map[string]string) actionRun {
	t.Helper()
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := actionRun{code: app.Main(ctx, nil, environ, app.IO{Stdout: &stdout, Stderr: &stderr})}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	out, _ := os.ReadFile(env["GITHUB_OUTPUT"])
	sum, _ := os.ReadFile(env["GITHUB_STEP_SUMMARY"])
	r.outputsFile, r.summaryRaw = string(out), string(sum)
	var err error
	if r.outputs, err = report.ParseOutputs(r.outputsFile); err != nil {
		t.Fatalf("the runner would reject GITHUB_OUTPUT: %v\n%s", err, r.outputsFile)
	}
	return r
}

// assertNoSecrets checks every place a secret could reach a person. On
// stdout, only ::add-mask:: commands may carry one: the runner consumes
// them and never shows them.
func assertNoSecrets(t *testing.T, r actionRun) {
	t.Helper()
	var shown []string
	for _, line := range strings.Split(r.stdout, "\n") {
		if !strings.HasPrefix(line, "::add-mask::") {
			shown = append(shown, line)
		}
	}
	for where, text := range map[string]string{
		"stdout": strings.Join(shown, "\n"), "stderr": r.stderr, "GITHUB_OUTPUT": r.outputsFile, "GITHUB_STEP_SUMMARY": r.summaryRaw,
	} {
		for _, s := range secretNeedles() {
			if strings.Contains(strings.ToLower(text), strings.ToLower(s)) {
				t.Errorf("%s contains the secret %q:\n%s", where, s, text)
			}
		}
	}
}

// assertMasks checks that the runner is told to mask each secret before
// anything else is printed.
func assertMasks(t *testing.T, r actionRun) {
	t.Helper()
	esc := strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A")
	want := []string{secretPassword, secretPassphrase, esc.Replace(strings.TrimSpace(secretKey))}
	for _, l := range strings.Split(strings.TrimSpace(secretKey), "\n") {
		want = append(want, l)
	}
	lines := strings.Split(r.stdout, "\n")
	for _, w := range want {
		found := false
		for _, l := range lines {
			if l == "::add-mask::"+w {
				found = true
			}
		}
		if !found {
			t.Errorf("no ::add-mask:: for %q in\n%s", w, r.stdout)
		}
	}
	if !strings.HasPrefix(r.stdout, "::add-mask::") {
		t.Errorf("something was printed before the masks:\n%s", r.stdout)
	}
}

func secrets() map[string]string {
	return map[string]string{"private-key": secretKey, "password": secretPassword, "passphrase": secretPassphrase}
}

func with(a, b map[string]string) map[string]string {
	m := map[string]string{}
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

func TestActionNeverPrintsSecrets(t *testing.T) {
	source := t.TempDir()
	os.WriteFile(filepath.Join(source, "index.html"), []byte("hi\n"), 0o644)
	broken := []struct {
		name   string
		inputs map[string]string
		phrase string
	}{
		{"several broken inputs", map[string]string{"host": "deploy@web1:0", "path": "relative", "keep-releases": "0"}, "Invalid input: path"},
		{"password pasted into fingerprint", map[string]string{"host": "deploy@web1", "path": "/srv/a", "fingerprint": secretPassword}, "Invalid input: fingerprint"},
		{"passphrase pasted into host", map[string]string{"host": secretPassphrase, "path": "/srv/a", "known-hosts": "x"}, "Invalid input: username"},
		{"password pasted into release-id", map[string]string{"path": "/srv/a", "mode": "rollback", "release-id": secretPassword}, "Invalid input: release-id"},
		{"key pasted into known-hosts and path", map[string]string{"host": "deploy@web1:abc", "path": secretKey, "known-hosts": secretKey}, "Invalid input: path"},
		{"passphrase as the mode", map[string]string{"path": "/srv/a", "mode": secretPassphrase}, "Invalid input: mode"},
	}
	for _, tt := range broken {
		t.Run(tt.name, func(t *testing.T) {
			r := runAction(t, actionEnv(t, with(secrets(), tt.inputs)))
			if r.code != 2 {
				t.Errorf("exit code %d, want 2\n%s", r.code, r.stdout)
			}
			if !strings.Contains(r.stdout, "::error title="+strings.ReplaceAll(tt.phrase, ":", "%3A")+"::") {
				t.Errorf("no %q annotation:\n%s", tt.phrase, r.stdout)
			}
			assertNoSecrets(t, r)
			assertMasks(t, r)
		})
	}

	t.Run("valid local deploy", func(t *testing.T) {
		root := deploytest.LocalRoot(t, "site")
		// The build prints the password, as a careless build script might.
		r := runAction(t, actionEnv(t, with(secrets(), map[string]string{
			"path": root, "source": source, "build": "printf '%s\\n' " + "'" + secretPassword + "'",
		})))
		if r.code != 0 {
			t.Fatalf("exit code %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stdout, "[build] ***") {
			t.Errorf("the build's output was not shown redacted:\n%s", r.stdout)
		}
		if r.outputs["release-id"] == "" || r.summaryRaw == "" {
			t.Errorf("no outputs or summary:\n%s\n%s", r.outputsFile, r.summaryRaw)
		}
		assertNoSecrets(t, r)
		assertMasks(t, r)
	})

	t.Run("failed local deploy", func(t *testing.T) {
		r := runAction(t, actionEnv(t, with(secrets(), map[string]string{
			"path": deploytest.LocalRoot(t, "site"), "source": source, "build": "echo " + secretPassphrase + " >&2; exit 1",
		})))
		if r.code != 1 {
			t.Fatalf("exit code %d\n%s", r.code, r.stdout)
		}
		assertNoSecrets(t, r)
		assertMasks(t, r)
	})
}

var releaseIDRE = regexp.MustCompile(`^\d{14}$`)

// TestActionLocalDeploy drives a deploy exactly as the runner does: the
// workspace is the working directory, inputs come as INPUT_* with their
// defaults, and a later step reads GITHUB_OUTPUT.
func TestActionLocalDeploy(t *testing.T) {
	ws := t.TempDir()
	files := map[string]string{
		"index.html":   "<h1>hello</h1>\n",
		"css/site.css": "body { color: red }\n",
		"bin/run.sh":   "#!/bin/sh\necho ok\n",
	}
	ignored := map[string]string{
		".github/workflows/deploy.yml": "on: push\n",
		".git/HEAD":                    "ref: refs/heads/main\n",
	}
	write := func(name, content string) {
		p := filepath.Join(ws, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for n, c := range files {
		write(n, c)
	}
	for n, c := range ignored {
		write(n, c)
	}
	os.Chmod(filepath.Join(ws, "bin/run.sh"), 0o755)
	t.Chdir(ws)
	root := deploytest.LocalRoot(t, "deploy root")

	deployOnce := func(sha string) (actionRun, map[string]string) {
		t.Helper()
		env := actionEnv(t, map[string]string{"path": root})
		env["GITHUB_SHA"] = sha
		r := runAction(t, env)
		if r.code != 0 {
			t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		if strings.Contains(r.stdout, "::error") || r.stderr != "" {
			t.Errorf("errors from a good deploy:\n%s\n%s", r.stdout, r.stderr)
		}
		for _, o := range config.Outputs {
			if _, ok := r.outputs[o.Name]; !ok {
				t.Errorf("output %s not set", o.Name)
			}
		}
		if len(r.outputs) != len(config.Outputs) {
			t.Errorf("outputs %q, want exactly %d", r.outputs, len(config.Outputs))
		}
		t.Logf("outputs: %q", r.outputs)
		id := r.outputs["release-id"]
		if !releaseIDRE.MatchString(id) {
			t.Fatalf("release-id %q", id)
		}
		if want := filepath.Join(root, "releases", id); r.outputs["release-path"] != want {
			t.Errorf("release-path = %q, want %q", r.outputs["release-path"], want)
		}
		if fi, err := os.Stat(r.outputs["release-path"]); err != nil || !fi.IsDir() {
			t.Errorf("release-path: %v", err)
		}
		if link, err := os.Readlink(filepath.Join(root, "current")); err != nil || filepath.Base(link) != id {
			t.Errorf("current -> %q, %v; want release %s", link, err, id)
		}
		if got, _ := os.ReadFile(filepath.Join(root, "releases", id, "REVISION")); string(got) != sha+"\n" {
			t.Errorf("REVISION = %q", got)
		}
		for n := range ignored {
			if _, err := os.Lstat(filepath.Join(root, "releases", id, n)); err == nil {
				t.Errorf("excluded %s was deployed", n)
			}
		}
		if r.outputs["revision"] != sha || r.outputs["rolled-back"] != "false" {
			t.Errorf("revision %q rolled-back %q", r.outputs["revision"], r.outputs["rolled-back"])
		}
		if _, err := time.ParseDuration(r.outputs["duration"]); err != nil {
			t.Errorf("duration %q: %v", r.outputs["duration"], err)
		}
		row := regexp.MustCompile("(?m)^\\| local \\| `" + id + "` \\| .* \\| ✅ deployed \\|$")
		if !row.MatchString(r.summaryRaw) {
			t.Errorf("no table row for local in the summary:\n%s", r.summaryRaw)
		}
		if !strings.Contains(r.summaryRaw, "### ✅ Deployed release `"+id+"` (1 host)") {
			t.Errorf("summary heading:\n%s", r.summaryRaw)
		}
		return r, r.outputs
	}
	size := func(names ...string) string {
		n := 0
		for _, f := range names {
			n += len(files[f])
		}
		return strconv.Itoa(n)
	}
	sha1 := "1111111111111111111111111111111111111111"
	sha2 := "2222222222222222222222222222222222222222"

	// First deploy: everything is sent, REVISION included.
	_, first := deployOnce(sha1)
	if first["previous-release-id"] != "" {
		t.Errorf("previous-release-id %q on the first deploy", first["previous-release-id"])
	}
	if first["files-uploaded"] != "4" || first["files-reused"] != "0" {
		t.Errorf("first deploy: uploaded %s reused %s, want 4 and 0", first["files-uploaded"], first["files-reused"])
	}
	revLen := len(sha1) + 1
	if want, _ := strconv.Atoi(size("index.html", "css/site.css", "bin/run.sh")); first["bytes-uploaded"] != strconv.Itoa(want+revLen) {
		t.Errorf("first deploy: bytes-uploaded %s, want %d", first["bytes-uploaded"], want+revLen)
	}

	// The same tree and revision again: every file is reused.
	_, second := deployOnce(sha1)
	if second["previous-release-id"] != first["release-id"] {
		t.Errorf("previous-release-id %q, want %q", second["previous-release-id"], first["release-id"])
	}
	if second["release-id"] <= first["release-id"] {
		t.Errorf("release ids not increasing: %s then %s", first["release-id"], second["release-id"])
	}
	if second["files-uploaded"] != "0" || second["files-reused"] != "4" || second["bytes-uploaded"] != "0" {
		t.Errorf("second deploy: uploaded %s (%s bytes) reused %s, want 0 (0) and 4",
			second["files-uploaded"], second["bytes-uploaded"], second["files-reused"])
	}

	// One changed file and a new commit: only it and the generated REVISION are sent.
	files["css/site.css"] = "body { color: blue; margin: 0 }\n"
	write("css/site.css", files["css/site.css"])
	_, third := deployOnce(sha2)
	if third["previous-release-id"] != second["release-id"] {
		t.Errorf("previous-release-id %q, want %q", third["previous-release-id"], second["release-id"])
	}
	want, _ := strconv.Atoi(size("css/site.css"))
	if third["files-uploaded"] != "2" || third["files-reused"] != "2" || third["bytes-uploaded"] != strconv.Itoa(want+revLen) {
		t.Errorf("third deploy: uploaded %s (%s bytes) reused %s, want 2 (%d) and 2",
			third["files-uploaded"], third["bytes-uploaded"], third["files-reused"], want+revLen)
	}
	got, _ := os.ReadFile(filepath.Join(root, "current", "css", "site.css"))
	if string(got) != files["css/site.css"] {
		t.Errorf("live site.css = %q", got)
	}
	if fi, err := os.Stat(filepath.Join(root, "current", "bin", "run.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/run.sh: %v %v", fi.Mode(), err)
	}
}
