package action

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

// secretForms is s as programs print it: raw, quoted by Go's %q, as JSON,
// percent-encoded and shell-quoted.
func secretForms(s string) []string {
	q := strconv.Quote(s)
	j, _ := json.Marshal(s)
	var plain bytes.Buffer
	enc := json.NewEncoder(&plain)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	p := strings.TrimSpace(plain.String())
	return []string{s, q[1 : len(q)-1], string(j[1 : len(j)-1]), p[1 : len(p)-1], url.QueryEscape(s), url.PathEscape(s),
		strings.ReplaceAll(url.QueryEscape(s), "+", "%20"), strings.ReplaceAll(s, "'", `'\''`), strings.ReplaceAll(s, "'", `'"'"'`)}
}

// assertNothingShows checks the step's stdout (but the ::add-mask::
// commands, which the runner consumes), its summary and its outputs for
// every form of every line of the secrets.
func assertNothingShows(t *testing.T, r run, secrets []string) {
	t.Helper()
	var shown []string
	for _, l := range strings.Split(r.stdout, "\n") {
		if !strings.HasPrefix(l, "::add-mask::") {
			shown = append(shown, l)
		}
	}
	var outputs []string
	for k, v := range r.outputs {
		outputs = append(outputs, k+"="+v)
	}
	for where, text := range map[string]string{"log": strings.Join(shown, "\n"), "summary": r.summary, "outputs": strings.Join(outputs, "\n")} {
		for _, s := range secrets {
			for _, line := range strings.Split(s, "\n") {
				for _, form := range secretForms(line) {
					if strings.Contains(text, form) {
						t.Errorf("the %s shows a secret as %q:\n%s", where, form, text)
					}
				}
			}
		}
	}
}

// TestActionHookEnvAndSecretEnv: env and secret-env reach before-activate,
// before-activate-once and after-activate as environment variables (the
// three forms: NAME=value, NAME<<EOF, NAME alone for the step's
// variable), over a real sshd and on this machine. No process on the
// machine has a value in its arguments while the hook runs (ps, and every
// /proc/*/cmdline); the values never show in the log, the summary or the
// outputs, in any encoding, though the hook prints them (raw, set -x
// quoted, JSON, percent-encoded).
func TestActionHookEnvAndSecretEnv(t *testing.T) {
	token := fmt.Sprintf("%x", time.Now().UnixNano())
	dbPassword := `it's "db" p@ss/wörd <&> 100%+\ x-` + token
	apiToken := "api-line-one-" + token + "\napi-line-two-" + token
	fromStep := "from-the-step-" + token
	secrets := []string{dbPassword, apiToken, fromStep}
	dump := `d=$DEPLOY_PATH/..; env > "$d/$HOOK.env"`
	printForms := `printf 'raw: %s\n' "$DB_PASSWORD" "$API_TOKEN" "$STEP_SECRET"
set -x
: "$DB_PASSWORD"
set +x`
	if _, err := exec.LookPath("jq"); err == nil {
		printForms += `
jq -rn --arg v "$DB_PASSWORD" '$v|@json, ($v|@uri), ($v|@sh)'`
	}
	inputs := map[string]string{
		"env":        "APP_ENV=production\nGREETING<<EOF\nhello\n  world\nEOF\nPUBLIC_FROM_STEP",
		"secret-env": "DB_PASSWORD=" + dbPassword + "\nAPI_TOKEN<<END\n" + apiToken + "\nEND\nSTEP_SECRET",
		"before-activate": "HOOK=before-activate; " + dump + `
ps -eo args > "$d/ps.txt"
for p in /proc/[0-9]*; do { tr '\0' ' ' < "$p/cmdline"; echo; } 2>/dev/null || true; done > "$d/cmdline.txt"
` + printForms,
		"before-activate-once": "HOOK=before-activate-once; " + dump,
		"after-activate":       "HOOK=after-activate; " + dump,
	}
	stepEnv := []string{"PUBLIC_FROM_STEP=public value", "STEP_SECRET=" + fromStep}
	wantEnv := []string{"APP_ENV=production\n", "GREETING=hello\n  world\n", "PUBLIC_FROM_STEP=public value\n",
		"DB_PASSWORD=" + dbPassword + "\n", "API_TOKEN=" + apiToken + "\n", "STEP_SECRET=" + fromStep + "\n"}

	check := func(t *testing.T, r run, dir string) {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.stdout)
		}
		for _, hook := range []string{"before-activate", "before-activate-once", "after-activate"} {
			env, err := os.ReadFile(filepath.Join(dir, hook+".env"))
			if err != nil {
				t.Fatalf("%s did not run: %v", hook, err)
			}
			for _, want := range append(wantEnv, "RELEASE_ID="+r.outputs["release-id"]+"\n") {
				if !strings.Contains(string(env), want) {
					t.Errorf("%s's environment lacks %q", hook, want)
				}
			}
		}
		ps, _ := os.ReadFile(filepath.Join(dir, "ps.txt"))
		cmdlines, _ := os.ReadFile(filepath.Join(dir, "cmdline.txt"))
		if !strings.Contains(string(ps), "ps -eo args") || !strings.Contains(string(cmdlines), "tr") {
			t.Fatalf("the hook saw no processes:\n%s\n%s", ps, cmdlines)
		}
		for _, s := range secrets {
			for _, line := range strings.Split(s, "\n") {
				if strings.Contains(string(ps), line) || strings.Contains(string(cmdlines), line) {
					t.Errorf("a process has the secret %q in its arguments:\n%s", line, ps)
				}
			}
		}
		if strings.Count(r.stdout, "raw: ***") != 3 || !strings.Contains(r.stdout, ": ***") {
			t.Errorf("the hook's printing of the secrets is not in the log, redacted:\n%s", r.stdout)
		}
		assertNothingShows(t, r, secrets)
	}

	t.Run("over ssh", func(t *testing.T) {
		srv := sshtest.Start(t, sshtest.Options{})
		dir := srv.MkdirUserTemp(t)
		r := runActionEnv(t, siteWorkspace(t), sshInputs(srv, filepath.Join(dir, "app"), inputs), stepEnv)
		check(t, r, dir)
	})
	t.Run("on this machine", func(t *testing.T) {
		dir := t.TempDir()
		in := actionDefaults()
		maps.Copy(in, inputs)
		in["path"], in["source"] = filepath.Join(dir, "app"), "site"
		r := runActionEnv(t, siteWorkspace(t), in, stepEnv)
		check(t, r, dir)
	})
}

// TestActionHookEnvRefused: a bad line in env or secret-env is refused
// before anything is touched (exit 2), naming the input and the line; the
// secret-env line is not shown.
func TestActionHookEnvRefused(t *testing.T) {
	const secret = "pasted-SECRET-value-0c3d"
	dir := t.TempDir()
	for _, tt := range []struct{ inputs map[string]string }{
		{map[string]string{"env": "A=1\nPATH=/tmp/evil"}},
		{map[string]string{"secret-env": "OK=1\n" + secret}},
		{map[string]string{"env": "TOKEN=1", "secret-env": "TOKEN=" + secret}},
	} {
		in := actionDefaults()
		maps.Copy(in, tt.inputs)
		in["path"], in["source"] = filepath.Join(dir, "app"), "site"
		r := runAction(t, siteWorkspace(t), in)
		if r.code != 2 || !strings.Contains(r.stdout, "::error title=Invalid input%3A ") || !strings.Contains(r.stdout, "line 2") && !strings.Contains(r.stdout, "line 1") {
			t.Errorf("%v: exit %d, want 2 naming the input and line\n%s", tt.inputs, r.code, r.stdout)
		}
		assertNothingShows(t, r, []string{secret})
		if _, err := os.Stat(filepath.Join(dir, "app")); err == nil {
			t.Fatalf("%v: the deploy root was created", tt.inputs)
		}
	}
}
