package action

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/sshtest"
)

// resetServer answers opcache-reset-url (/reset) with status and the
// health check (/up) with 200, and records what `current` pointed to at
// each request.
type resetServer struct {
	*httptest.Server
	mu     sync.Mutex
	status int
	seen   []string // "reset current=<id>", "up current=<id>"
}

func startResetServer(t *testing.T, root string) *resetServer {
	s := &resetServer{status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		link, _ := os.Readlink(filepath.Join(root, "current"))
		s.mu.Lock()
		defer s.mu.Unlock()
		switch r.URL.Path {
		case "/reset":
			s.seen = append(s.seen, "reset current="+filepath.Base(link))
			w.WriteHeader(s.status)
		case "/up":
			s.seen = append(s.seen, "up current="+filepath.Base(link))
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *resetServer) answer(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
}

func (s *resetServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.seen
	s.seen = nil
	return out
}

// TestActionOPcacheResetURL: with opcache-reset: url the binary requests
// opcache-reset-url after the switch and before the health check; a
// failure rolls back, and after a rollback (that one, or mode: rollback)
// the URL is requested again. The URL's password and query (a token) are
// never shown.
func TestActionOPcacheResetURL(t *testing.T) {
	const password, token = "reset-PASS-91d2", "reset-TOKEN-5e0f"
	dir := t.TempDir()
	root := filepath.Join(dir, "app")
	srv := startResetServer(t, root)
	resetURL := strings.Replace(srv.URL, "http://", "http://ops:"+password+"@", 1) + "/reset?token=" + token
	ws := siteWorkspace(t)
	inputs := actionDefaults()
	maps.Copy(inputs, map[string]string{"path": root, "source": "site", "opcache-reset": "url", "opcache-reset-url": resetURL,
		"healthcheck-url": srv.URL + "/up", "healthcheck-timeout": "5s"})
	deploy := func() run {
		r := runAction(t, ws, inputs)
		assertNothingShows(t, r, []string{password, token})
		return r
	}

	first := deploy()
	if first.code != 0 {
		t.Fatalf("exit %d\n%s", first.code, first.stdout)
	}
	id1 := first.outputs["release-id"]
	if got := srv.requests(); strings.Join(got, ", ") != "reset current="+id1+", up current="+id1 {
		t.Errorf("requests %q, want the reset after the switch to %s, then the health check", got, id1)
	}
	if !strings.Contains(first.stdout, "opcache-reset: requesting http://ops:xxxxx@127.0.0.1:") || !strings.Contains(first.stdout, "/reset?…") {
		t.Errorf("the log does not show the (redacted) reset URL:\n%s", first.stdout)
	}

	srv.answer(http.StatusInternalServerError)
	failed := deploy()
	id2 := failed.outputs["previous-release-id"]
	if failed.code != 1 || failed.outputs["rolled-back"] != "true" || !strings.Contains(failed.stdout, "opcache-reset-url http://ops:xxxxx@127.0.0.1:") || !strings.Contains(failed.stdout, "answered HTTP 500") {
		t.Fatalf("exit %d, outputs %q; want a rollback naming opcache-reset-url and HTTP 500\n%s", failed.code, failed.outputs, failed.stdout)
	}
	if got := srv.requests(); len(got) != 2 || got[1] != "reset current="+id1 || got[0] == got[1] {
		t.Errorf("requests %q, want a reset of the new release, then one after switching back to %s (%s)", got, id1, id2)
	}
	if got := currentRelease(t, root); got != id1 {
		t.Errorf("current -> %s, want %s", got, id1)
	}

	srv.answer(http.StatusOK)
	second := deploy()
	if second.code != 0 {
		t.Fatalf("exit %d\n%s", second.code, second.stdout)
	}
	srv.requests()
	inputs["mode"] = "rollback"
	back := deploy()
	if back.code != 0 || back.outputs["release-id"] != id1 {
		t.Fatalf("rollback: exit %d, outputs %q\n%s", back.code, back.outputs, back.stdout)
	}
	if got := srv.requests(); strings.Join(got, ", ") != "reset current="+id1 {
		t.Errorf("rollback made requests %q, want one reset once current is back on %s", got, id1)
	}
}

// TestActionOPcacheResetFPMReload: with opcache-reset: fpm-reload,
// opcache-reset-command runs on the server right after every switch:
// before after-activate, and again after an automatic rollback; when it
// fails, the deploy says so and rolls back.
func TestActionOPcacheResetFPMReload(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	dir := srv.MkdirUserTemp(t)
	root := filepath.Join(dir, "app")
	ws := siteWorkspace(t)
	order := filepath.Join(dir, "order.txt")
	inputs := sshInputs(srv, root, map[string]string{"opcache-reset": "fpm-reload",
		"opcache-reset-command": `echo "reload sees $(readlink "$DEPLOY_PATH/current")" >> "$DEPLOY_PATH/../order.txt"`,
		"after-activate":        `echo after-activate >> "$DEPLOY_PATH/../order.txt"`})
	first := runAction(t, ws, inputs)
	if first.code != 0 {
		t.Fatalf("exit %d\n%s", first.code, first.stdout)
	}
	id := first.outputs["release-id"]
	if got, _ := os.ReadFile(order); string(got) != "reload sees releases/"+id+"\nafter-activate\n" {
		t.Errorf("order.txt = %q, want the reload after the switch to %s, then after-activate", got, id)
	}

	// The reload is refused while the new release is live: the deploy rolls
	// back, and the reload runs again once current is back.
	os.Remove(order)
	inputs["opcache-reset-command"] = `now=$(readlink "$DEPLOY_PATH/current"); echo "reload sees $now" >> "$DEPLOY_PATH/../order.txt"
if [ "$now" != "releases/` + id + `" ]; then echo "php-fpm: reload refused" >&2; exit 3; fi`
	failed := runAction(t, ws, inputs)
	if failed.code != 1 || failed.outputs["rolled-back"] != "true" || !strings.Contains(failed.stdout, "opcache-reset-command failed on") || !strings.Contains(failed.stdout, "exit status 3") || !strings.Contains(failed.stdout, "reload refused") {
		t.Fatalf("exit %d, outputs %q; want a rollback naming opcache-reset-command\n%s", failed.code, failed.outputs, failed.stdout)
	}
	newID := failed.outputs["deployed-release-id"]
	if got, _ := os.ReadFile(order); string(got) != "reload sees releases/"+newID+"\nreload sees releases/"+id+"\n" {
		t.Errorf("order.txt = %q, want a reload after the switch to %s, none of after-activate, and one after the switch back to %s", got, newID, id)
	}
	if got := currentRelease(t, root); got != id {
		t.Errorf("current -> %s, want %s", got, id)
	}
}
