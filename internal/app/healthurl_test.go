package app_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
)

// TestHealthCheckURLPasswordNeverShown: a failing health check against a
// URL with user:password shows the URL redacted everywhere (stdout,
// stderr, the summary, the outputs), and the password is registered with
// the runner's masking.
func TestHealthCheckURLPasswordNeverShown(t *testing.T) {
	const password = "hc-PASS/word-6b1d"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "echo: %s", r.URL)
	}))
	defer srv.Close()
	hcURL := strings.Replace(srv.URL, "http://", "http://monitor:"+url.PathEscape(password)+"@", 1) + "/up"
	source := t.TempDir()
	os.WriteFile(filepath.Join(source, "index.html"), []byte("hi\n"), 0o644)
	needles := []string{password, url.PathEscape(password), url.QueryEscape(password)}

	t.Run("actions", func(t *testing.T) {
		root := deploytest.LocalRoot(t, "site")
		r := runAction(t, actionEnv(t, map[string]string{"path": root, "source": source, "healthcheck-url": hcURL, "healthcheck-timeout": "1s"}))
		if r.code != 1 || !strings.Contains(r.stdout, "monitor:xxxxx@") {
			t.Fatalf("exit %d, want 1 with the URL redacted\n%s", r.code, r.stdout)
		}
		if !strings.Contains(r.stdout, "::add-mask::"+password+"\n") {
			t.Errorf("the password is not masked:\n%s", r.stdout)
		}
		var shown []string
		for _, l := range strings.Split(r.stdout, "\n") {
			if !strings.HasPrefix(l, "::add-mask::") {
				shown = append(shown, l)
			}
		}
		for where, text := range map[string]string{"stdout": strings.Join(shown, "\n"), "stderr": r.stderr, "summary": r.summaryRaw, "outputs": r.outputsFile} {
			for _, n := range needles {
				if strings.Contains(text, n) {
					t.Errorf("%s shows the password %q:\n%s", where, n, text)
				}
			}
		}
	})
	t.Run("refused input", func(t *testing.T) {
		bad := strings.Replace(hcURL, "http://", "ftp://", 1)
		r := runAction(t, actionEnv(t, map[string]string{"path": "/srv/app", "healthcheck-url": bad, "keep-releases": "0"}))
		if r.code != 2 || !strings.Contains(r.stdout, "::add-mask::"+password+"\n") || !strings.Contains(r.stdout, "monitor:xxxxx@") {
			t.Fatalf("exit %d, want 2 with the password masked and the URL redacted\n%s", r.code, r.stdout)
		}
		for _, l := range strings.Split(r.stdout, "\n") {
			for _, n := range needles {
				if !strings.HasPrefix(l, "::add-mask::") && strings.Contains(l, n) {
					t.Errorf("stdout shows the password %q: %s", n, l)
				}
			}
		}
	})
	t.Run("terminal", func(t *testing.T) {
		root := deploytest.LocalRoot(t, "site")
		code, out := runCLI(t, nil, "deploy", "--source", source, "--path", root, "--healthcheck-url", hcURL, "--healthcheck-timeout", "1s")
		if code != 1 || !strings.Contains(out, "monitor:xxxxx@") {
			t.Fatalf("exit %d, want 1 with the URL redacted\n%s", code, out)
		}
		for _, n := range needles {
			if strings.Contains(out, n) {
				t.Errorf("the terminal shows the password %q:\n%s", n, out)
			}
		}
	})
}
