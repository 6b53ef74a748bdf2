package laravel_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/webtest"
)

// DeploysEnv overrides how many deploys TestZeroDowntimeUnderLoad makes.
const DeploysEnv = "ATOMIC_DEPLOY_LARAVEL_DEPLOYS"

const (
	loadConns     = 16                     // concurrent keep-alive connections, like wrk -c16
	warmUp        = time.Second            // load before the latency baseline starts
	idleBefore    = 3 * time.Second        // load without deploys (warm-up included)
	servedWithin  = time.Second            // a new release must be answering this soon after its switch
	switchQuietly = 250 * time.Millisecond // "near a switch", for the latency report
)

// TestZeroDowntimeUnderLoad deploys the Laravel example again and again
// (each deploy changes config/example.php, so every release is different
// code and configuration) while 16 connections request / without pause,
// and checks every single answer:
//   - no connection errors and no non-2xx status;
//   - the release that answered was live at some moment between the
//     request going out and the answer coming back (the `current` symlink
//     is watched in a tight loop to know when each release was live);
//   - the answer carries the build number deployed with that release, so
//     code and cached configuration never come from different releases;
//   - each new release answers requests sent within 1s of its switch.
func TestZeroDowntimeUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping 30 deploys under load")
	}
	deploys := 30
	if v := os.Getenv(DeploysEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q is not a positive number", DeploysEnv, v)
		}
		deploys = n
	}
	// About a minute on an idle 2-core machine; the limit is for a
	// heavily loaded CI runner.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	s := newSite(t)
	// The traffic runs at a lower priority so that 30 deploys fit in CI
	// time on a 2-core machine; it still keeps every PHP worker busy.
	web := webtest.Start(t, webtest.Options{DeployPath: s.Path, User: s.Server.User, Nice: 10})
	s.putEnv(ctx)
	first := s.mustDeploy(ctx)
	if st := getStatus(t, web); st.Release != first.ReleaseID() {
		t.Fatalf("serving %s, want %s", st.Release, first.ReleaseID())
	}

	t0 := time.Now()
	watchCtx, stopWatch := context.WithCancel(ctx)
	w := newWatcher(s.Root(), t0)
	watchDone := make(chan struct{})
	go func() { w.run(watchCtx); close(watchDone) }()
	defer func() { stopWatch(); <-watchDone }()
	if !waitFor(5*time.Second, func() bool { return len(w.segments()) > 0 }) {
		t.Fatal("the watcher never read current")
	}

	loadCtx, stopLoad := context.WithCancel(ctx)
	l := newLoad(web.URL+"/", loadConns, t0)
	loadDone := make(chan struct{})
	go func() { l.run(loadCtx); close(loadDone) }()
	defer func() { stopLoad(); <-loadDone }()

	time.Sleep(idleBefore)
	type done struct {
		id       string
		returned time.Duration
		took     time.Duration
	}
	var released []done
	deployStart := time.Since(t0)
	for i := range deploys {
		r := s.deploy(ctx)
		if r.Code != 0 || r.ReleaseID() == "" {
			t.Fatalf("deploy %d of %d failed (exit %d):\n%s", i+1, deploys, r.Code, r.Stderr)
		}
		released = append(released, done{id: r.ReleaseID(), returned: time.Since(t0), took: r.Elapsed})
		// The deploy has returned: the very next request is the new release.
		if st := getStatus(t, web); st.Release != r.ReleaseID() || st.Build != s.builds[r.ReleaseID()] {
			t.Fatalf("right after deploy %d returned, GET / = %+v, want release %s build %d", i+1, st, r.ReleaseID(), s.builds[r.ReleaseID()])
		}
	}
	deployEnd := time.Since(t0)
	time.Sleep(500 * time.Millisecond)
	stopLoad()
	<-loadDone
	stopWatch()
	<-watchDone

	samples := l.results()
	segs := w.segments()
	var (
		errs, non2xx, bad, notLive, wrongBuild int
		firstProblems                          []string
	)
	problem := func(format string, args ...any) {
		if len(firstProblems) < 10 {
			firstProblems = append(firstProblems, fmt.Sprintf(format, args...))
		}
	}
	firstServed := map[string]time.Duration{} // release -> earliest request it answered
	for _, sm := range samples {
		switch {
		case sm.Err != "" || sm.Status == 0:
			errs++
			problem("connection error at %s: %s", sm.Start, sm.Err)
			continue
		case sm.Status < 200 || sm.Status > 299:
			non2xx++
			problem("status %d at %s", sm.Status, sm.Start)
			continue
		case sm.BadBody:
			bad++
			problem("unreadable body at %s", sm.Start)
			continue
		}
		if err := checkLive(segs, sm); err != nil {
			notLive++
			problem("%v", err)
		}
		if want, ok := s.builds[sm.Release]; !ok || sm.Build != want {
			wrongBuild++
			problem("release %s answered with build %d, deployed with build %d", sm.Release, sm.Build, want)
		}
		if at, ok := firstServed[sm.Release]; !ok || sm.Start < at {
			firstServed[sm.Release] = sm.Start
		}
	}

	// When each release went live, by the watcher.
	switchedAt := map[string]time.Duration{}
	for _, seg := range segs {
		if _, ok := switchedAt[seg.ID]; !ok {
			switchedAt[seg.ID] = seg.First
		}
	}
	var slowest time.Duration
	for i, d := range released {
		at, ok := switchedAt[d.id]
		if !ok {
			t.Errorf("deploy %d: the watcher never saw current -> %s", i+1, d.id)
			continue
		}
		served, ok := firstServed[d.id]
		if !ok {
			t.Errorf("deploy %d: release %s never answered a load request", i+1, d.id)
			continue
		}
		// Requests sent after the switch cannot get the old release (the
		// live check above); this checks the new one is not starved.
		lag := max(served-at, 0)
		slowest = max(slowest, lag)
		if lag > servedWithin {
			t.Errorf("deploy %d: the first request release %s answered was sent %s after its switch (limit %s)", i+1, d.id, lag, servedWithin)
		}
	}

	// Latency: requests that started near a switch vs. the idle baseline.
	var idle, nearSwitch, duringDeploys []time.Duration
	for _, sm := range samples {
		if sm.Err != "" {
			continue
		}
		lat := sm.End - sm.Start
		switch {
		case sm.Start >= warmUp && sm.End < deployStart:
			idle = append(idle, lat)
		case sm.Start >= deployStart && sm.End <= deployEnd:
			duringDeploys = append(duringDeploys, lat)
			for _, d := range released {
				if at := switchedAt[d.id]; sm.End >= at-switchQuietly && sm.Start <= at+switchQuietly {
					nearSwitch = append(nearSwitch, lat)
					break
				}
			}
		}
	}
	var deployTimes []time.Duration
	for _, d := range released {
		deployTimes = append(deployTimes, d.took)
	}
	t.Logf("%d deploys in %s (median %s, max %s), %d requests (%.0f/s), %d connection errors, %d non-2xx, %d unreadable, %d from a release not live, %d with the wrong build; every new release answered requests sent at most %s after its switch",
		len(released), (deployEnd - deployStart).Round(time.Millisecond), percentile(deployTimes, 50).Round(time.Millisecond), percentile(deployTimes, 100).Round(time.Millisecond),
		len(samples), float64(len(samples))/(samples[len(samples)-1].End-samples[0].Start).Seconds(), errs, non2xx, bad, notLive, wrongBuild, slowest.Round(time.Millisecond))
	t.Logf("latency p50/p99: idle %s/%s (%d req), during deploys %s/%s (%d req), within %s of a switch %s/%s (%d req)",
		percentile(idle, 50).Round(time.Microsecond), percentile(idle, 99).Round(time.Microsecond), len(idle),
		percentile(duringDeploys, 50).Round(time.Microsecond), percentile(duringDeploys, 99).Round(time.Microsecond), len(duringDeploys),
		switchQuietly, percentile(nearSwitch, 50).Round(time.Microsecond), percentile(nearSwitch, 99).Round(time.Microsecond), len(nearSwitch))
	if errs+non2xx+bad+notLive+wrongBuild > 0 {
		t.Errorf("visitors saw problems during the deploys; first ones:\n  %s", strings.Join(firstProblems, "\n  "))
	}
	if len(samples) < 100*len(released) {
		t.Errorf("only %d requests over %d deploys: the load did not keep up, the test proves little", len(samples), len(released))
	}
	if t.Failed() {
		t.Logf("web server logs:\n%s", web.Logs())
	}
}
