package deploy_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/health"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/sshtest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/sshx"
)

// fleet is n real sshd servers that all see the deploy root at the same
// path, each backed by its own directory (a private bind mount per sshd).
type fleet struct {
	t       testing.TB
	src     string
	path    string   // the deploy root as every host sees it
	dirs    []string // what is behind it on each host
	targets []deploy.Target
	log     *testLog
	set     deploy.Settings
}

func newFleet(t *testing.T, n int) *fleet { return newFleetTB(t, n) }

func newFleetTB(t testing.TB, n int) *fleet {
	f, _ := newFleetServers(t, n)
	return f
}

// newFleetServers is newFleetTB keeping the servers (the fleet benchmark
// needs their ports, host keys and pids).
func newFleetServers(t testing.TB, n int) (*fleet, []*sshtest.Server) {
	t.Helper()
	helper := sshtest.Start(t, sshtest.Options{})
	f := &fleet{t: t, src: t.TempDir(), log: &testLog{}, path: filepath.Join(helper.MkdirUserTemp(t), "app"),
		set: deploy.Settings{KeepReleases: 3, Revision: "r1", Parallel: 64, Lock: deploy.LockOptions{TTL: 10 * time.Second, Wait: 10 * time.Second}}}
	if err := os.Mkdir(f.path, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := make([]sshtest.Options, n)
	for i := range opts {
		dir := helper.MkdirUserTemp(t)
		f.dirs = append(f.dirs, dir)
		opts[i].PrivateMounts = map[string]string{f.path: dir}
	}
	servers := sshtest.StartMany(t, opts...)
	f.targets = directTargets(servers)
	f.write("v1")
	return f, servers
}

// directTargets dials each server itself, named host0, host1, ...
func directTargets(servers []*sshtest.Server) []deploy.Target {
	var ts []deploy.Target
	for i, srv := range servers {
		cfg := srv.Config()
		ts = append(ts, deploy.Target{Name: fmt.Sprintf("host%d", i), Dial: func(ctx context.Context) (transport.Transport, error) { return sshx.Dial(ctx, cfg) }})
	}
	return ts
}

// switchSpread is how far apart in time the hosts switched.
func switchSpread(res *deploy.Result) time.Duration {
	var lo, hi time.Time
	for _, h := range res.Hosts {
		if lo.IsZero() || h.SwitchedAt.Before(lo) {
			lo = h.SwitchedAt
		}
		if h.SwitchedAt.After(hi) {
			hi = h.SwitchedAt
		}
	}
	return hi.Sub(lo)
}

func (f *fleet) write(version string) {
	if err := os.WriteFile(filepath.Join(f.src, "index.html"), []byte(version), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fleet) deploy(mut func(o *deploy.Options)) (*deploy.Result, error) {
	f.t.Helper()
	m, err := release.Build(context.Background(), release.Options{Source: f.src, Revision: "r1"})
	if err != nil {
		f.t.Fatal(err)
	}
	set := f.set
	o := deploy.Options{Targets: f.targets, Root: f.path, Settings: &set, Log: f.log, Concurrency: 10, AutoRollback: true}
	if mut != nil {
		mut(&o)
	}
	return deploy.Deploy(context.Background(), o, m)
}

func (f *fleet) currents() []string {
	var out []string
	for _, d := range f.dirs {
		target, _ := os.Readlink(filepath.Join(d, "current"))
		out = append(out, filepath.Base(target))
	}
	return out
}

func (f *fleet) releases(i int) []string {
	entries, _ := os.ReadDir(filepath.Join(f.dirs[i], "releases"))
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.Name())
	}
	return ids
}

func allEqual(ids []string, want string) bool {
	for _, id := range ids {
		if id != want {
			return false
		}
	}
	return true
}

func TestFleetOneHostFailingBeforeActivateSwitchesNone(t *testing.T) {
	f := newFleet(t, 3)
	first, err := f.deploy(nil)
	if err != nil {
		t.Fatalf("first deploy: %v\n%s", err, f.log)
	}
	if got := f.currents(); !allEqual(got, first.ReleaseID) {
		t.Fatalf("currents = %v, want all %s", got, first.ReleaseID)
	}
	// host1 alone has a broken environment.
	os.WriteFile(filepath.Join(f.dirs[1], "shared-broken"), nil, 0o644)
	f.write("v2")
	f.set.BeforeActivate = `if [ -e "$DEPLOY_PATH/shared-broken" ]; then echo "migration failed" >&2; exit 1; fi`
	res, err := f.deploy(nil)
	if err == nil || !strings.Contains(err.Error(), "host1") || !strings.Contains(err.Error(), "not switched on any host") {
		t.Fatalf("err = %v", err)
	}
	if got := f.currents(); !allEqual(got, first.ReleaseID) {
		t.Errorf("currents = %v, want all still on %s", got, first.ReleaseID)
	}
	for i := range f.dirs {
		if got := f.releases(i); len(got) != 1 {
			t.Errorf("host%d releases = %v: the prepared release was not cleaned up", i, got)
		}
	}
	if res.Hosts[1].Err == nil || res.Hosts[0].Err != nil {
		t.Errorf("per-host errors wrong: %+v", res.Hosts)
	}
}

func TestFleetBeforeActivateOnceRunsOnOneHost(t *testing.T) {
	f := newFleet(t, 3)
	f.set.BeforeActivateOnce = `touch "$DEPLOY_PATH/migrated-$RELEASE_ID"`
	res, err := f.deploy(nil)
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, f.log)
	}
	ran := 0
	for _, d := range f.dirs {
		if _, err := os.Stat(filepath.Join(d, "migrated-"+res.ReleaseID)); err == nil {
			ran++
		}
	}
	if ran != 1 {
		t.Errorf("before-activate-once ran on %d hosts, want 1", ran)
	}
}

func TestFleetHealthCheckFailureRollsEveryHostBack(t *testing.T) {
	f := newFleet(t, 3)
	first, err := f.deploy(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer srv.Close()
	f.write("v2")
	res, err := f.deploy(func(o *deploy.Options) {
		o.Verify = func(ctx context.Context, id, prev string) error {
			return health.Check{URL: srv.URL, Timeout: time.Second}.Run(ctx, id, prev)
		}
	})
	if err == nil || !res.RolledBack || !strings.Contains(err.Error(), "rolled back to "+first.ReleaseID) {
		t.Fatalf("err = %v, rolled back %v", err, res.RolledBack)
	}
	if got := f.currents(); !allEqual(got, first.ReleaseID) {
		t.Errorf("currents = %v, want all back on %s", got, first.ReleaseID)
	}
	for _, h := range res.Hosts {
		if h.Outcome != deploy.OutcomeRolledBack {
			t.Errorf("%s outcome = %q", h.Name, h.Outcome)
		}
	}
}

func TestFleetSwitchesTogether(t *testing.T) {
	f := newFleet(t, 5)
	res, err := f.deploy(nil)
	if err != nil {
		t.Fatal(err)
	}
	spread := switchSpread(res)
	t.Logf("switch spread across %d hosts: %s", len(res.Hosts), spread)
	if spread > 500*time.Millisecond {
		t.Errorf("switch spread %s; hosts should flip within about one round trip", spread)
	}
}

// Every host keeps its own record of what it holds, so a second deploy
// reuses the unchanged files on each of them.
func TestFleetIncrementalDeployReusesOnEveryHost(t *testing.T) {
	f := newFleet(t, 3)
	for i := range 20 {
		os.WriteFile(filepath.Join(f.src, fmt.Sprintf("f%02d.txt", i)), []byte(strings.Repeat("x", i+1)), 0o644)
	}
	if _, err := f.deploy(nil); err != nil {
		t.Fatal(err)
	}
	f.write("v2")
	res, err := f.deploy(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range res.Hosts {
		if h.FilesUploaded != 1 || h.FilesReused != 21 {
			t.Errorf("%s: uploaded %d, reused %d; want 1 and 21 (20 files + REVISION)", h.Name, h.FilesUploaded, h.FilesReused)
		}
	}
}
