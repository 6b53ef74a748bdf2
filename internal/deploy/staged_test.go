package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
)

// options are the fleet's deploy options for the hosts given (all: nil).
func (f *fleet) options(hosts deploytest.Fleet, mut func(o *deploy.Options)) deploy.Options {
	if hosts == nil {
		hosts = f.hosts
	}
	set := f.set
	o := deploy.Options{Targets: hosts.Targets(), Root: f.hosts.Path(), Settings: &set, Log: f.log, Concurrency: 10, AutoRollback: true}
	if mut != nil {
		mut(&o)
	}
	return o
}

func (f *fleet) prepare(hosts deploytest.Fleet, id string) (*deploy.Result, error) {
	return deploy.Prepare(context.Background(), f.options(hosts, func(o *deploy.Options) { o.ReleaseID = id }), f.src.Manifest("r1"))
}

func (f *fleet) activate(id string, mut func(o *deploy.Options)) (*deploy.Result, error) {
	return deploy.Activate(context.Background(), f.options(nil, mut), id)
}

// A fleet past one runner: three "matrix jobs" each prepare a group of
// three hosts with one release id, at once; nothing goes live until one
// activate switches all nine together.
func TestStagedReleaseAcrossGroups(t *testing.T) {
	f := newFleet(t, 9)
	first, err := f.deploy(nil)
	if err != nil {
		t.Fatalf("first deploy: %v\n%s", err, f.log)
	}
	f.write("v2")
	const id = "20990101000000"
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := f.prepare(f.hosts[3*g:3*g+3], id)
			if err == nil && res.ReleaseID != id {
				err = fmt.Errorf("prepared %s", res.ReleaseID)
			}
			errs[g] = err
		}()
	}
	wg.Wait()
	for g, err := range errs {
		if err != nil {
			t.Fatalf("group %d: %v\n%s", g, err, f.log)
		}
	}
	if got := f.hosts.Currents(); !allEqual(got, first.ReleaseID) {
		t.Fatalf("currents after prepare = %v, want all still %s", got, first.ReleaseID)
	}
	for i, h := range f.hosts {
		if got := h.Read("releases/" + id + "/index.html"); got != "v2" {
			t.Errorf("host%d: prepared release holds %q", i, got)
		}
	}
	res, err := f.activate(id, nil)
	if err != nil {
		t.Fatalf("activate: %v\n%s", err, f.log)
	}
	if got := f.hosts.Currents(); !allEqual(got, id) {
		t.Fatalf("currents after activate = %v, want all %s", got, id)
	}
	spread := deploytest.SwitchSpread(res)
	t.Logf("9 hosts switched within %v of each other", spread)
	for _, h := range res.Hosts {
		if h.Outcome != deploy.OutcomeDeployed || h.Batch != 1 || len(h.Phases) == 0 {
			t.Errorf("%s: outcome %q, batch %d, %d phases", h.Name, h.Outcome, h.Batch, len(h.Phases))
		}
	}
}

// Activate is refused, naming the hosts and switching none, where the
// release was not prepared, and where a newer release went live since it
// was prepared (unless forced).
func TestActivateRefusals(t *testing.T) {
	f := newFleet(t, 3)
	first, err := f.deploy(nil)
	if err != nil {
		t.Fatalf("first deploy: %v\n%s", err, f.log)
	}
	f.write("v2")
	const id = "20990101000000"
	// The group of host2 failed to prepare: it has no release id.
	if _, err := f.prepare(f.hosts[:2], id); err != nil {
		t.Fatal(err)
	}
	_, err = f.activate(id, nil)
	if err == nil || !strings.Contains(err.Error(), "host2") || strings.Contains(err.Error(), "host0:") || !strings.Contains(err.Error(), "not switched on any host") {
		t.Fatalf("activate with a host unprepared: %v", err)
	}
	if got := f.hosts.Currents(); !allEqual(got, first.ReleaseID) {
		t.Fatalf("currents = %v, want all still %s", got, first.ReleaseID)
	}
	// The refusal left it prepared where it was: once host2 has it too, it
	// goes. But a deploy lands in between.
	if _, err := f.prepare(f.hosts[2:], id); err != nil {
		t.Fatal(err)
	}
	f.write("v3")
	newer, err := f.deploy(func(o *deploy.Options) { o.ReleaseID = "20990101000001" })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.activate(id, nil); err == nil || !strings.Contains(err.Error(), "newer release") {
		t.Fatalf("activate after a newer deploy: %v", err)
	}
	if got := f.hosts.Currents(); !allEqual(got, newer.ReleaseID) {
		t.Fatalf("currents = %v, want all still %s", got, newer.ReleaseID)
	}
	for _, h := range f.hosts {
		if links, _ := filepath.Glob(h.Root(".current.tmp-*")); len(links) > 0 {
			t.Errorf("a refused activate left switch links: %q", links)
		}
	}
	if _, err := f.activate(id, func(o *deploy.Options) { o.Force = true }); err != nil {
		t.Fatalf("forced activate: %v", err)
	}
	if got := f.hosts.Currents(); !allEqual(got, id) {
		t.Fatalf("currents after the forced activate = %v", got)
	}
}

// A canary that fails its check goes back, and no other host switched; a
// batch that fails puts every batch back, the last first, and later
// batches never switch.
func TestRollouts(t *testing.T) {
	t.Run("canary", func(t *testing.T) {
		f := newFleet(t, 4)
		first, _ := f.deploy(nil)
		f.write("v2")
		var checked [][]string
		_, err := f.deploy(func(o *deploy.Options) {
			o.Rollout = deploy.Rollout{Canary: 1}
			o.Verify = func(_ context.Context, _, _ string, hosts []string) error {
				checked = append(checked, hosts)
				return fmt.Errorf("health check failed on %v", hosts)
			}
		})
		if err == nil {
			t.Fatal("deploy succeeded")
		}
		if len(checked) != 1 || !slices.Equal(checked[0], []string{"host0"}) {
			t.Errorf("checked %v, want the canary alone", checked)
		}
		if got := f.hosts.Currents(); !allEqual(got, first.ReleaseID) {
			t.Errorf("currents = %v, want all back on %s", got, first.ReleaseID)
		}
		for i := 1; i < 4; i++ {
			if strings.Contains(f.hosts[i].Read(".atomic-deploy/releases.log"), "rolled back to") {
				t.Errorf("host%d was switched", i)
			}
		}
	})
	t.Run("batches", func(t *testing.T) {
		f := newFleet(t, 5)
		first, _ := f.deploy(nil)
		f.write("v2")
		var steps [][]string
		var mu sync.Mutex
		f.set.AfterActivate = `echo "$RELEASE_ID" >> "$DEPLOY_PATH/../after.log"`
		res, err := f.deploy(func(o *deploy.Options) {
			o.Rollout = deploy.Rollout{BatchSize: 2}
			o.Verify = func(_ context.Context, _, _ string, hosts []string) error {
				mu.Lock()
				defer mu.Unlock()
				steps = append(steps, hosts)
				if len(steps) == 2 {
					return fmt.Errorf("health check failed on %v", hosts)
				}
				return nil
			}
		})
		if err == nil {
			t.Fatal("deploy succeeded")
		}
		if len(steps) != 2 || !slices.Equal(steps[0], []string{"host0", "host1"}) || !slices.Equal(steps[1], []string{"host2", "host3"}) {
			t.Errorf("checked %v, want [host0 host1] then [host2 host3]", steps)
		}
		if got := f.hosts.Currents(); !allEqual(got, first.ReleaseID) {
			t.Errorf("currents = %v, want all back on %s", got, first.ReleaseID)
		}
		for _, h := range res.Hosts {
			want := map[string]int{"host0": 1, "host1": 1, "host2": 2, "host3": 2, "host4": 0}[h.Name]
			if h.Batch != want {
				t.Errorf("%s: batch %d, want %d", h.Name, h.Batch, want)
			}
		}
		if _, err := os.Stat(f.hosts[4].Root("../after.log")); err == nil {
			t.Error("host4, in the third batch, ran after-activate")
		}
		// Batch 2 went back before batch 1: its failed records are older.
		failedAt := func(i int) time.Time {
			var at time.Time
			for _, line := range strings.Split(f.hosts[i].Read(".atomic-deploy/releases.log"), "\n") {
				var r deploy.Record
				if json.Unmarshal([]byte(line), &r) == nil && r.Status == deploy.StatusFailed {
					at = r.FinishedAt
				}
			}
			return at
		}
		if latest2, earliest1 := max(failedAt(2).UnixNano(), failedAt(3).UnixNano()), min(failedAt(0).UnixNano(), failedAt(1).UnixNano()); latest2 > earliest1 || latest2 == 0 {
			t.Errorf("batch 2 went back at %v, batch 1 at %v: not the last batch first", time.Unix(0, latest2), time.Unix(0, earliest1))
		}
	})
}

// A prepared release survives the prune of a deploy that runs meanwhile,
// until it is older than the prepared TTL.
func TestPreparedReleaseAndPrune(t *testing.T) {
	f := newFleet(t, 1)
	f.set.KeepReleases = 1
	if _, err := f.deploy(nil); err != nil {
		t.Fatal(err)
	}
	// Long enough for two deploys on a loaded machine (a few seconds each).
	const id, ttl = "20260101000000", 10 * time.Second
	prepared, err := deploy.Prepare(context.Background(), f.options(nil, func(o *deploy.Options) { o.ReleaseID, o.PreparedTTL = id, ttl }), f.src.Manifest("r1"))
	if err != nil {
		t.Fatal(err)
	}
	for v := range 2 {
		f.write(fmt.Sprint("v", v+3))
		if _, err := f.deploy(nil); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Contains(f.hosts[0].Releases(), id) {
		t.Fatalf("the prepared release was pruned: %v", f.hosts[0].Releases())
	}
	// Never a default rollback target.
	if res, err := deploy.Rollback(context.Background(), f.options(nil, nil), ""); err != nil || res.ReleaseID == id {
		t.Errorf("rollback went to %+v (%v)", res, err)
	}
	time.Sleep(time.Until(prepared.Hosts[0].Phases[0].Start.Add(ttl + time.Second)))
	f.write("v9")
	if _, err := f.deploy(nil); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(f.hosts[0].Releases(), id) {
		t.Errorf("the expired prepared release is still there: %v", f.hosts[0].Releases())
	}
}

// Activate switches only a release still as it was prepared: a file
// written into it since (on one host) refuses the activate, naming the
// host and the file, and nothing switches. On a server with a shell the
// lock holder lists the prepared release and sends its seal, so the check
// makes no requests of its own (the time to live is the connection and 3
// round trips: lock, switch link, rename); an SFTP-only server is checked
// by its manifest, over SFTP.
func TestActivateChecksThePreparedRelease(t *testing.T) {
	for _, kind := range []deploytest.Kind{deploytest.SSH, deploytest.SFTPOnly} {
		t.Run(string(kind), func(t *testing.T) {
			f := newFleetOf(t, 2, kind)
			first, err := f.deploy(nil)
			if err != nil {
				t.Fatalf("first deploy: %v\n%s", err, f.log)
			}
			f.write("v2")
			const id, next = "20990101000000", "20990101000001"
			if _, err := f.prepare(nil, id); err != nil {
				t.Fatalf("prepare: %v\n%s", err, f.log)
			}
			edited, err := os.OpenFile(f.hosts[1].Root("releases", id, "index.html"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			edited.WriteString(" edited")
			edited.Close()
			_, err = f.activate(id, nil)
			if err == nil || !strings.Contains(err.Error(), "host1") || strings.Contains(err.Error(), "host0") ||
				!strings.Contains(err.Error(), "not as it was prepared") || !strings.Contains(err.Error(), "index.html") {
				t.Fatalf("activate of an edited release: %v", err)
			}
			if got := f.hosts.Currents(); !allEqual(got, first.ReleaseID) {
				t.Fatalf("currents = %v, want all still %s", got, first.ReleaseID)
			}

			f.write("v3")
			if _, err := f.prepare(nil, next); err != nil {
				t.Fatalf("prepare: %v\n%s", err, f.log)
			}
			var trace testutil.SyncBuffer
			res, err := f.activate(next, traced(&trace))
			if err != nil || !allEqual(f.hosts.Currents(), next) {
				t.Fatalf("activate: %v, currents %v\n%s", err, f.hosts.Currents(), f.log)
			}
			checked := strings.Contains(trace.String(), " scan ") || strings.Contains(trace.String(), ".seal")
			if kind == deploytest.SSH && checked {
				t.Errorf("activate listed the release or read its seal itself, after the lock holder did:\n%s", trace.String())
			}
			if kind == deploytest.SFTPOnly && !checked {
				t.Errorf("activate on an SFTP-only server did not check the release:\n%s", trace.String())
			}
			// The switch is one request: the lock holder made its link.
			if linked := strings.Contains(trace.String(), "symlink "); kind == deploytest.SSH && linked {
				t.Errorf("activate made the switch's link itself, after the lock holder did:\n%s", trace.String())
			}
			if res.ReleaseID != next {
				t.Errorf("result release %s, want %s", res.ReleaseID, next)
			}
		})
	}
}
