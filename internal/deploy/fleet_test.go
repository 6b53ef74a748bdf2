package deploy_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/health"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// fleet is n real sshd servers that all see the deploy root at the same
// path, each backed by its own directory.
type fleet struct {
	t     *testing.T
	hosts deploytest.Fleet
	src   *deploytest.Source
	log   *deploytest.Log
	set   deploy.Settings
}

func newFleet(t *testing.T, n int) *fleet {
	t.Helper()
	return newFleetOf(t, n, deploytest.SSH)
}

// newFleetOf is newFleet with servers of kind.
func newFleetOf(t *testing.T, n int, kind deploytest.Kind) *fleet {
	t.Helper()
	return &fleet{t: t, hosts: deploytest.NewFleet(t, n, deploytest.Options{Kind: kind}),
		src: deploytest.NewSource(t, map[string]string{"index.html": "v1"}), log: &deploytest.Log{},
		set: deploy.Settings{KeepReleases: 3, Revision: "r1", Parallel: 64, Lock: deploy.LockOptions{TTL: 10 * time.Second, Wait: 10 * time.Second}}}
}

func (f *fleet) write(version string) { f.src.Write(map[string]string{"index.html": version}) }

func (f *fleet) deploy(mut func(o *deploy.Options)) (*deploy.Result, error) {
	f.t.Helper()
	set := f.set
	o := deploy.Options{Targets: f.hosts.Targets(), Root: f.hosts.Path(), Settings: &set, Log: f.log, Concurrency: 10, AutoRollback: true}
	if mut != nil {
		mut(&o)
	}
	return deploy.Deploy(context.Background(), o, f.src.Manifest("r1"))
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
	if got := f.hosts.Currents(); !allEqual(got, first.ReleaseID) {
		t.Fatalf("currents = %v, want all %s", got, first.ReleaseID)
	}
	// host1 alone has a broken environment.
	os.WriteFile(f.hosts[1].Root("shared-broken"), nil, 0o644)
	f.write("v2")
	f.set.BeforeActivate = `if [ -e "$DEPLOY_PATH/shared-broken" ]; then echo "migration failed" >&2; exit 1; fi`
	res, err := f.deploy(nil)
	if err == nil || !strings.Contains(err.Error(), "host1") || !strings.Contains(err.Error(), "not switched on any host") {
		t.Fatalf("err = %v", err)
	}
	if got := f.hosts.Currents(); !allEqual(got, first.ReleaseID) {
		t.Errorf("currents = %v, want all still on %s", got, first.ReleaseID)
	}
	for i, h := range f.hosts {
		if got := h.Releases(); len(got) != 1 {
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
	for _, h := range f.hosts {
		if _, err := os.Stat(h.Root("migrated-" + res.ReleaseID)); err == nil {
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
		o.Verify = func(ctx context.Context, id, prev string, _ []string) error {
			return health.Check{URL: srv.URL, Timeout: time.Second}.Run(ctx, id, prev)
		}
	})
	if err == nil || !res.RolledBack || !strings.Contains(err.Error(), "rolled back to "+first.ReleaseID) {
		t.Fatalf("err = %v, rolled back %v", err, res.RolledBack)
	}
	if got := f.hosts.Currents(); !allEqual(got, first.ReleaseID) {
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
	spread := deploytest.SwitchSpread(res)
	t.Logf("switch spread across %d hosts: %s", len(res.Hosts), spread)
	if spread > 500*time.Millisecond {
		t.Errorf("switch spread %s; hosts should flip within about one round trip", spread)
	}
}

// Every host keeps its own record of what it holds, so a second deploy
// reuses the unchanged files on each of them.
func TestFleetIncrementalDeployReusesOnEveryHost(t *testing.T) {
	f := newFleet(t, 3)
	files := map[string]string{}
	for i := range 20 {
		files[fmt.Sprintf("f%02d.txt", i)] = strings.Repeat("x", i+1)
	}
	f.src.Write(files)
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
	// One run records one manifest on every host (its uploads get one
	// mtime), which the client encodes once, and reads once next time.
	manifest := ".atomic-deploy/manifests/" + res.ReleaseID + ".json.gz"
	for _, h := range f.hosts[1:] {
		if got := h.Read(manifest); got == "" || got != f.hosts[0].Read(manifest) {
			t.Errorf("%s stores another manifest than %s", h.Name, f.hosts[0].Name)
		}
	}
	// One host after the other: each holder is told of the manifest read
	// from the host before, and sends "manifest =" instead of it (the
	// holder's side: TestHolderScript). The plans are the same.
	f.write("v3")
	res, err = f.deploy(func(o *deploy.Options) { o.Concurrency = 1 })
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range res.Hosts {
		if h.FilesUploaded != 1 || h.FilesReused != 21 {
			t.Errorf("%s, one host at a time: uploaded %d, reused %d; want 1 and 21", h.Name, h.FilesUploaded, h.FilesReused)
		}
	}
	for _, h := range f.hosts {
		if got := h.Read("current/index.html"); got != "v3" {
			t.Errorf("%s serves %q", h.Name, got)
		}
	}
}

// A host whose connection drops while the others wait to switch (here:
// as the switch step begins) is found before any host switches: the
// others' current is never touched, not switched and put back.
func TestFleetHostLostBeforeTheSwitchSwitchesNone(t *testing.T) {
	for _, kind := range []deploytest.Kind{deploytest.SSH, deploytest.SFTPOnly} {
		t.Run(string(kind), func(t *testing.T) {
			f := newFleetOf(t, 3, kind)
			first, err := f.deploy(nil)
			if err != nil {
				t.Fatalf("first deploy: %v\n%s", err, f.log)
			}
			inodes := func() []uint64 {
				var got []uint64
				for _, h := range f.hosts {
					info, err := os.Lstat(h.Root("current"))
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, info.Sys().(*syscall.Stat_t).Ino)
				}
				return got
			}
			before := inodes()
			f.write("v2")
			_, err = f.deploy(func(o *deploy.Options) { loseHostAt(o, 1, "Switch ") })
			if err == nil || !strings.Contains(err.Error(), "host1") || strings.Contains(err.Error(), "host0") || !strings.Contains(err.Error(), "not switched on any host") {
				t.Fatalf("deploy with host1 lost before the switch: %v\n%s", err, f.log)
			}
			if got := f.hosts.Currents(); !allEqual(got, first.ReleaseID) {
				t.Fatalf("currents = %v, want all still %s", got, first.ReleaseID)
			}
			if after := inodes(); !slices.Equal(after, before) {
				t.Errorf("current was replaced (inodes %v, then %v): hosts switched and were put back instead of never switching", before, after)
			}
		})
	}
}

// loseHostAt closes target host's connection when the log section whose
// title starts with prefix begins.
func loseHostAt(o *deploy.Options, host int, prefix string) {
	var lost transport.Transport
	dial := o.Targets[host].Dial
	o.Targets[host].Dial = func(ctx context.Context) (transport.Transport, error) {
		tr, err := dial(ctx)
		lost = tr
		return tr, err
	}
	o.Groups = func(title string) func() {
		if strings.HasPrefix(title, prefix) {
			lost.Close()
		}
		return func() {}
	}
}

// A host of a later step lost before that step switches: the canary is
// put back, and the error does not count the lost host among those that
// may have switched (it never renamed).
func TestFleetHostLostBeforeALaterStepPutsTheCanaryBack(t *testing.T) {
	for _, kind := range []deploytest.Kind{deploytest.SSH, deploytest.SFTPOnly} {
		t.Run(string(kind), func(t *testing.T) {
			f := newFleetOf(t, 4, kind)
			first, err := f.deploy(nil)
			if err != nil {
				t.Fatalf("first deploy: %v\n%s", err, f.log)
			}
			f.write("v2")
			_, err = f.deploy(func(o *deploy.Options) {
				o.Rollout = deploy.Rollout{Canary: 1}
				loseHostAt(o, 2, "Step 2 of 2")
			})
			if err == nil || !strings.Contains(err.Error(), "step 2 of 2 could not switch") || !strings.Contains(err.Error(), "host2") ||
				!strings.Contains(err.Error(), "every host is on its previous release") || strings.Contains(err.Error(), "may be on it") {
				t.Fatalf("deploy with host2 lost before step 2: %v\n%s", err, f.log)
			}
			if got := f.hosts.Currents(); !allEqual(got, first.ReleaseID) {
				t.Fatalf("currents = %v, want all back on %s", got, first.ReleaseID)
			}
		})
	}
}

// Where nothing runs in the release after the upload, the upload's command
// seals it, on every host of a fleet and for mode: prepare: no command of
// its own seals it, a round trip less a host. The seal works all the same:
// a file of the live release edited in place, its size and mtime put back,
// is named by the next deploy and sent again, not reused.
func TestTheUploadSealsWhereNothingFollows(t *testing.T) {
	f := newFleet(t, 2)
	f.src.Write(map[string]string{"app.php": "<?php return 1;"})
	var trace testutil.SyncBuffer
	res, err := f.deploy(traced(&trace))
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, f.log)
	}
	sealedBy := func(what, id string) {
		t.Helper()
		if strings.Contains(trace.String(), "exec      seal") {
			t.Errorf("%s: a command of its own sealed the release:\n%s", what, trace.String())
		}
		for _, h := range f.hosts {
			if _, err := os.Stat(h.Root(".atomic-deploy", "manifests", id+".seal")); err != nil {
				t.Errorf("%s: %s: the release is not sealed: %v", what, h.Name, err)
			}
		}
	}
	sealedBy("deploy on 2 hosts", res.ReleaseID)

	edited := f.hosts[1].Root("current", "app.php")
	info, err := os.Stat(edited)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(edited, []byte("<?php return 2;"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(edited, info.ModTime(), info.ModTime()); err != nil {
		t.Fatal(err)
	}
	f.write("v2")
	trace.Reset()
	const id = "20990101000000"
	if _, err := deploy.Prepare(context.Background(), f.options(nil, func(o *deploy.Options) { o.ReleaseID = id; traced(&trace)(o) }), f.src.Manifest("r1")); err != nil {
		t.Fatalf("prepare: %v\n%s", err, f.log)
	}
	sealedBy("prepare on 2 hosts", id)
	if !strings.Contains(f.log.String(), "edited in place") || !strings.Contains(f.log.String(), "app.php") {
		t.Errorf("the edit of the live release was not named:\n%s", f.log)
	}
	if got, _ := os.ReadFile(f.hosts[1].Root("releases", id, "app.php")); string(got) != "<?php return 1;" {
		t.Errorf("the prepared release has app.php %q: the edited file was reused", got)
	}
}

// renameFails is a transport whose renames fail, once wait returns.
type renameFails struct {
	transport.Transport
	wait func()
}

func (r renameFails) Rename(ctx context.Context, oldpath, newpath string) error {
	r.wait()
	return fmt.Errorf("rename %s: injected failure", newpath)
}

// A rollback whose switch fails on one host puts back the hosts that did
// switch, and logs no rollback there: the releases log still says what is
// live, so the next rollback without a release id picks the same target.
func TestAFleetRollbackThatFailsOnOneHostPutsTheOthersBack(t *testing.T) {
	f := newFleet(t, 2)
	first, err := f.deploy(nil)
	if err != nil {
		t.Fatalf("first deploy: %v\n%s", err, f.log)
	}
	f.write("v2")
	second, err := f.deploy(nil)
	if err != nil {
		t.Fatalf("second deploy: %v\n%s", err, f.log)
	}
	// Host 1's rename fails once host 0 has switched to the target.
	host0Switched := func() {
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			if f.hosts[0].Current() == first.ReleaseID {
				return
			}
		}
	}
	o := f.options(nil, nil)
	dial := o.Targets[1].Dial
	o.Targets[1].Dial = func(ctx context.Context) (transport.Transport, error) {
		tr, err := dial(ctx)
		if err != nil {
			return nil, err
		}
		return renameFails{tr, host0Switched}, nil
	}
	if _, err := deploy.Rollback(context.Background(), o, ""); err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("rollback: %v (want the injected failure)", err)
	}
	for _, h := range f.hosts {
		if h.Current() != second.ReleaseID {
			t.Errorf("%s: current is %s after the failed rollback, want %s back", h.Name, h.Current(), second.ReleaseID)
		}
		if log, _ := os.ReadFile(h.Root(".atomic-deploy", "releases.log")); strings.Contains(string(log), "rolled-back") {
			t.Errorf("%s: the releases log records a rollback that was undone:\n%s", h.Name, log)
		}
	}
	if _, err := deploy.Rollback(context.Background(), f.options(nil, nil), ""); err != nil || !allEqual(f.hosts.Currents(), first.ReleaseID) {
		t.Errorf("the next rollback: %v, currents %v (want every host on %s)", err, f.hosts.Currents(), first.ReleaseID)
	}
}
