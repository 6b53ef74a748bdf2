package laravel_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/webtest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// TestLaravelPreset walks the life of a Laravel site deployed with
// `--preset laravel`: the first deploy refuses to run without the
// production .env, then the app is migrated, cached, served from the new
// release, and its queue worker is told to restart on every deploy.
func TestLaravelPreset(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := newSite(t)
	web := webtest.Start(t, webtest.Options{DeployPath: s.Path, User: s.Server.User})

	// 1. No <path>/shared/.env yet: the deploy must stop before the switch
	// with a message that says where the production .env goes, and must
	// not create an empty one.
	r := s.deploy(ctx)
	if r.Code == 0 {
		t.Fatalf("deploy without shared/.env succeeded:\n%s", r.Stderr)
	}
	envPath := s.Path + "/shared/.env"
	t.Logf("deploy without shared/.env (exit %d):\n%s", r.Code, lastLines(r.Stderr, 3))
	for _, want := range []string{envPath, "production .env"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("the error does not mention %q:\n%s", want, r.Stderr)
		}
	}
	if id := s.Current(); id != "" {
		t.Errorf("current points to %s after a failed first deploy", id)
	}
	if _, err := os.Lstat(s.Root("shared/.env")); !os.IsNotExist(err) {
		t.Errorf("%s was created by a failed deploy (err %v)", envPath, err)
	}
	if left, _ := os.ReadDir(s.Root("releases")); len(left) != 0 {
		t.Errorf("the failed release was left behind: %v", left)
	}

	// 2. The operator puts the production .env in place; now it deploys.
	s.putEnv(ctx)
	first := s.mustDeploy(ctx)
	idA := first.ReleaseID()
	t.Logf("first deploy: release %s in %s", idA, first.Elapsed.Round(time.Millisecond))
	if s.Current() != idA {
		t.Fatalf("current = %q, want %s", s.Current(), idA)
	}
	checkRelease(t, s, web, idA)

	// 3. A queue worker, started by its supervisor from current, runs the
	// code of the release that was live when it started; queue:restart
	// (the preset's after-activate) makes it exit on the next deploy.
	tr := s.ssh(ctx)
	worker := func() (done <-chan error, out *testutil.SyncBuffer) {
		out = &testutil.SyncBuffer{}
		ch := make(chan error, 1)
		worker := transport.Command{Name: "queue-worker", Script: `cd "$1" && exec php artisan queue:work --sleep=1 --tries=1 --max-time=150`, Args: []string{s.Path + "/current"}}
		go func() { ch <- tr.Exec(ctx, worker, nil, out, out) }()
		return ch, out
	}
	workerA, outA := worker()
	ping(t, web, s, idA)
	handled := waitForPing(t, web, idA, 15*time.Second)
	if handled != idA {
		t.Fatalf("job queued by %s was handled by %q, want %s (worker: %s)", idA, handled, idA, outA)
	}

	nextSecond()
	second := s.mustDeploy(ctx)
	idB := second.ReleaseID()
	if idB <= idA {
		t.Fatalf("second release id %s is not after %s", idB, idA)
	}
	select {
	case err := <-workerA:
		if err != nil {
			t.Fatalf("worker from %s ended with %v: %s", idA, err, outA)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("the worker started in %s is still running 15s after the deploy of %s: queue:restart did not reach it\n%s", idA, idB, second.Stderr)
	}
	checkRelease(t, s, web, idB)
	workerB, outB := worker()
	ping(t, web, s, idB)
	if handled := waitForPing(t, web, idB, 15*time.Second); handled != idB {
		t.Fatalf("after the restart the job was handled by %q, want %s (worker: %s)", handled, idB, outB)
	}

	// 4. Losing shared/.env later fails the deploy the same way and leaves
	// the live release alone.
	if err := tr.Rename(ctx, envPath, envPath+".off"); err != nil {
		t.Fatal(err)
	}
	r = s.deploy(ctx)
	if r.Code == 0 || !strings.Contains(r.Stderr, envPath) {
		t.Fatalf("deploy without shared/.env: exit %d, want a failure naming %s:\n%s", r.Code, envPath, r.Stderr)
	}
	if got := s.Current(); got != idB {
		t.Fatalf("current = %q after the failed deploy, want %s untouched", got, idB)
	}
	if st := getStatus(t, web); st.Release != idB {
		t.Fatalf("serving %s after the failed deploy, want %s", st.Release, idB)
	}
	if err := tr.Rename(ctx, envPath+".off", envPath); err != nil {
		t.Fatal(err)
	}
	nextSecond()
	third := s.mustDeploy(ctx)
	checkRelease(t, s, web, third.ReleaseID())
	select {
	case err := <-workerB:
		if err != nil {
			t.Fatalf("worker from %s ended with %v: %s", idB, err, outB)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("the worker started in %s did not restart after the deploy of %s", idB, third.ReleaseID())
	}
}

// checkRelease verifies a deployed release: what it serves and what the
// preset's hooks left on disk.
func checkRelease(t *testing.T, s *site, web *webtest.Server, id string) {
	t.Helper()
	st := getStatus(t, web)
	if st.Release != id || st.Build != s.builds[id] || st.Revision != "build-"+itoa(s.builds[id]) {
		t.Errorf("GET / = %+v, want release %s build %d", st, id, s.builds[id])
	}
	code, body, err := web.Get("/health")
	if err != nil || code != 200 || !strings.Contains(body, "release="+id) {
		t.Errorf("GET /health = %d %q %v, want 200 naming release %s", code, body, err, id)
	}
	code, body, err = web.Get("/about")
	if err != nil || code != 200 || !strings.Contains(body, id) || !strings.Contains(body, "Configuration is cached.") {
		t.Errorf("GET /about = %d %v:\n%s", code, err, body)
	}

	rel := s.Root("releases", id)
	for _, f := range []string{"bootstrap/cache/config.php", "bootstrap/cache/routes-v7.php"} {
		if _, err := os.Stat(filepath.Join(rel, f)); err != nil {
			t.Errorf("%s: %v (config:cache / route:cache did not run in the release)", f, err)
		}
	}
	if views, _ := filepath.Glob(filepath.Join(rel, "bootstrap/cache/views/*.php")); len(views) == 0 {
		t.Errorf("no compiled views in %s/bootstrap/cache/views (view:cache)", rel)
	}
	for link, want := range map[string]string{"storage": "../../shared/storage", ".env": "../../shared/.env"} {
		if got, err := os.Readlink(filepath.Join(rel, link)); err != nil || got != want {
			t.Errorf("%s/%s -> %q (%v), want a link to %s", rel, link, got, err, want)
		}
	}
	if _, err := os.Stat(s.Root("shared/storage/database.sqlite")); err != nil {
		t.Errorf("the database is not in shared storage: %v", err)
	}
	// The cached configuration points into this release, never `current`.
	cached, err := os.ReadFile(filepath.Join(rel, "bootstrap/cache/config.php"))
	if err == nil && strings.Contains(string(cached), s.Path+"/current") {
		t.Errorf("bootstrap/cache/config.php refers to %s/current; cached paths must name the release", s.Path)
	}
}

func ping(t *testing.T, web *webtest.Server, s *site, id string) {
	t.Helper()
	code, body, err := web.Get("/ping")
	if err != nil || code != 202 || !strings.Contains(body, id) {
		t.Fatalf("GET /ping = %d %q %v", code, body, err)
	}
}

// waitForPing waits until a job queued by release id has been handled and
// returns the release that handled it.
func waitForPing(t *testing.T, web *webtest.Server, id string, timeout time.Duration) string {
	t.Helper()
	var handled string
	waitFor(timeout, func() bool {
		code, body, err := web.Get("/pings")
		if err != nil || code != 200 {
			return false
		}
		var pings []struct {
			QueuedBy  string `json:"queued_by"`
			HandledBy string `json:"handled_by"`
		}
		if json.Unmarshal([]byte(body), &pings) != nil {
			return false
		}
		for _, p := range pings {
			if p.QueuedBy == id {
				handled = p.HandledBy
				return true
			}
		}
		return false
	})
	if handled == "" {
		t.Fatalf("no job queued by %s was handled within %s", id, timeout)
	}
	return handled
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func itoa(n int) string { return strconv.Itoa(n) }

// nextSecond waits for the next whole second. Laravel's restart signal is a
// timestamp in seconds: a queue:restart in the same second as the one a
// worker started after looks like no restart at all (real deploys are
// seconds apart).
func nextSecond() {
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))
}
