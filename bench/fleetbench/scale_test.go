package fleetbench

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
)

// Scale goals of issue 15, at 100 hosts on loopback.
const (
	maxSpread      = 50 * time.Millisecond
	maxClientRSS   = 200e6                 // bytes
	maxCPUPerHost  = 10 * time.Millisecond // a deploy's client CPU per extra host
	releaseFiles   = 5000
	timeToLiveRTTs = 3 // round trips after the connection until live
	timeToLiveSize = 9 // hosts of the larger time-to-live cell
	connectOnly    = "connect only"
)

// BenchmarkActivate runs mode activate over FLEET_HOSTS (default 100)
// real sshd on 127.0.0.1 with a 5,000-file release prepared on every
// host, each run in a client process of its own (clientMain), and checks
// the goals: the hosts switch within 50 ms of each other and the
// client's peak RSS stays under 200 MB. It also measures the client's CPU
// per extra host, for activate (1 host against all) and for a deploy
// changing one file (1, 20 and all hosts; goal ≤ 10 ms per extra host),
// and what a client that only connects to the hosts and closes costs: the
// floor under every mode's CPU per host.
//
// Run it with bench/scale.sh. Knobs: FLEET_HOSTS, FLEET_RUNS (timed runs
// of each kind, default 3), FLEET_CONCURRENCY (hosts connected and
// prepared at once, default 10 as in the action; the switch is on all at
// once either way), FLEET_REPORT (the Markdown report's
// path; default: the test log), FLEET_PROFILE (a directory: a CPU profile
// of each client run over every host, cpu-<mode>-<hosts>-<run>.pb.gz).
func BenchmarkActivate(b *testing.B) {
	n := envInt(b, "FLEET_HOSTS", 100)
	runs := envInt(b, "FLEET_RUNS", 3)
	s := newScaleFleet(b, n)
	// The action's default: 100 hosts connected and uploaded to at once
	// on these 2 cores time out (each SSH start, shell and sftp-server is
	// on this machine too).
	s.concurrency = envInt(b, "FLEET_CONCURRENCY", 10)
	all := clientHosts(s.hosts)
	profile := func(mode string, hosts, run int) string {
		dir := os.Getenv("FLEET_PROFILE")
		if dir == "" || hosts < n {
			return ""
		}
		return filepath.Join(dir, fmt.Sprintf("cpu-%s-%d-%d.pb.gz", mode, hosts, run))
	}

	cells := &cellSet{}
	id := s.release()
	cells.add("prepare, every file sent", n, s.run(b, "prepare", id, all, ""))
	cells.add("activate, first release", n, s.run(b, "activate", id, all, ""))
	sizes := []int{1}
	if n > 20 {
		sizes = append(sizes, 20)
	}
	if n > 1 {
		sizes = append(sizes, n)
	}
	for run := range runs {
		for _, k := range []int{1, n} {
			id := s.release()
			cells.add("prepare, one file changed", k, s.run(b, "prepare", id, all[:k], ""))
			cells.add("activate", k, s.run(b, "activate", id, all[:k], profile("activate", k, run)))
		}
		for _, k := range sizes {
			cells.add("deploy, one file changed", k, s.run(b, "deploy", s.release(), all[:k], profile("deploy", k, run)))
		}
		for _, k := range []int{1, n} {
			cells.add(connectOnly, k, s.run(b, "connect", "", all[:k], ""))
		}
	}

	act := cells.get("activate", n)
	b.ReportMetric(median(act.walls()).Seconds(), fmt.Sprintf("s/activate-%d", n))
	b.ReportMetric(msf(slices.Max(act.spreads())), "ms-spread-max")
	b.ReportMetric(float64(act.maxRSS())/1e6, "MB-rss-max")
	writeReport(b, activateReport(cells, n, s.concurrency, runs, s.size))
}

// BenchmarkTimeToLive: with a 5,000-file release prepared, mode activate
// on 1 host and on 9 (FLEET_HOSTS) at each round-trip time of FLEET_RTTS (ms, default
// 20; through one bench/delayproxy process, FLEET_PROXY_BIN), each in a
// client process of its own: the time from the start of the run to the
// last host's switch, against the time to connect to those hosts (a
// client process that only connects) + 3 round trips, with no hooks.
// Releases are prepared directly (no delay). Knobs: FLEET_RUNS (default
// 5), FLEET_REPORT, FLEET_TRACE (a directory: after the timed runs, one
// more activate of each cell with every remote operation logged there,
// trace-activate-<rtt>ms-<hosts>hosts.log).
func BenchmarkTimeToLive(b *testing.B) {
	rtts := []int{20}
	if os.Getenv("FLEET_RTTS") != "" {
		rtts = envRTTs(b)
	}
	runs := envInt(b, "FLEET_RUNS", 5)
	proxyBin := os.Getenv("FLEET_PROXY_BIN")
	n := envInt(b, "FLEET_HOSTS", timeToLiveSize)
	s := newScaleFleet(b, n)
	s.concurrency = n
	direct := clientHosts(s.hosts)
	id := s.release()
	s.run(b, "prepare", id, direct, "")
	s.run(b, "activate", id, direct, "")

	var rows []ttlRow
	for _, rtt := range rtts {
		via := direct
		if rtt > 0 {
			if proxyBin == "" {
				b.Fatalf("FLEET_RTTS has %d ms but FLEET_PROXY_BIN is not set: run bench/scale.sh", rtt)
			}
			cfgs, _ := delayProxy(b, proxyBin, time.Duration(rtt)*time.Millisecond, s.hosts)
			via = nil
			for i, h := range s.hosts {
				via = append(via, clientHost{Name: h.Name, SSH: cfgs[i]})
			}
		}
		for _, k := range slices.Compact([]int{1, n}) {
			row := ttlRow{rtt: rtt, hosts: k}
			s.run(b, "connect", "", via[:k], "") // untimed: a new proxy, warm caches
			for range runs {
				row.connect = append(row.connect, s.run(b, "connect", "", via[:k], ""))
				id := s.release()
				s.run(b, "prepare", id, direct[:k], "")
				row.activate = append(row.activate, s.run(b, "activate", id, via[:k], ""))
			}
			if dir := os.Getenv("FLEET_TRACE"); dir != "" {
				id := s.release()
				s.run(b, "prepare", id, direct[:k], "")
				s.runTraced(b, "activate", id, via[:k], filepath.Join(dir, fmt.Sprintf("trace-activate-%dms-%dhosts.log", rtt, k)))
			}
			rows = append(rows, row)
			b.ReportMetric(median(row.lives()).Seconds(), fmt.Sprintf("s-to-live/%d-hosts@%dms", k, rtt))
		}
	}
	writeReport(b, timeToLiveReport(rows, runs, s.size))
}

// scaleFleet is a fleet that client processes deploy to: its hosts, the
// release tree, and how runs go.
type scaleFleet struct {
	hosts       deploytest.Fleet
	src         *deploytest.Source
	size        int64 // bytes of the release
	version     int   // of the file that changes with each release
	concurrency int
}

// newScaleFleet starts n sshd and writes a release of 5,000 files of
// ~510 bytes (a vendor/-like tree, small so that 100 hosts' copies of
// it stay small on disk).
func newScaleFleet(b *testing.B, n int) *scaleFleet {
	s := &scaleFleet{hosts: deploytest.NewFleet(b, n, deploytest.Options{Kind: deploytest.SSH}),
		src: deploytest.NewSource(b, map[string]string{"index.html": "v0"})}
	files := map[string]string{}
	for i := range releaseFiles - 1 {
		files[fmt.Sprintf("vendor/p%03d/f%04d.php", i%250, i)] = fmt.Sprintf("<?php // %d %0500d", i, i)
	}
	s.src.Write(files)
	for _, m := range s.src.Manifest("r1").Entries {
		s.size += m.Size
	}
	return s
}

// release changes one file and returns a release id newer than any
// before (ids count up from 2099-01-01, past any made from the clock).
func (s *scaleFleet) release() string {
	s.version++
	s.src.Write(map[string]string{"index.html": fmt.Sprintf("v%d", s.version)})
	return time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(s.version) * time.Second).Format(release.IDLayout)
}

// run runs mode on hosts in a client process once the servers have
// finished the last run's connections and the machine is quiet.
func (s *scaleFleet) run(b *testing.B, mode, id string, hosts []clientHost, profile string) clientRun {
	b.Helper()
	return s.runWith(b, clientConfig{Mode: mode, ReleaseID: id, Hosts: hosts, Profile: profile})
}

// runTraced is run with every remote operation logged to trace.
func (s *scaleFleet) runTraced(b *testing.B, mode, id string, hosts []clientHost, trace string) clientRun {
	b.Helper()
	return s.runWith(b, clientConfig{Mode: mode, ReleaseID: id, Hosts: hosts, Trace: trace})
}

func (s *scaleFleet) runWith(b *testing.B, c clientConfig) clientRun {
	b.Helper()
	mode, hosts := c.Mode, c.Hosts
	c.Root, c.Source, c.Concurrency = s.hosts.Path(), s.src.Dir, min(s.concurrency, len(hosts))
	letGo(b, s.hosts)
	quiet := settle(s.hosts)
	r := runClient(b, c)
	r.noisy = !quiet
	if want := len(hosts); len(r.Hosts) != want {
		b.Fatalf("%s on %d hosts reported %d", mode, want, len(r.Hosts))
	}
	return r
}

// cell is the runs of one kind on one number of hosts.
type cell struct {
	kind  string
	hosts int
	runs  []clientRun
}

func (c *cell) walls() []time.Duration {
	return c.each(func(r clientRun) time.Duration { return r.wall })
}
func (c *cell) cpus() []time.Duration {
	return c.each(func(r clientRun) time.Duration { return r.cpu })
}
func (c *cell) spreads() []time.Duration { return c.each(clientRun.spread) }

func (c *cell) each(f func(clientRun) time.Duration) []time.Duration {
	var ds []time.Duration
	for _, r := range c.runs {
		ds = append(ds, f(r))
	}
	return ds
}

func (c *cell) maxRSS() int64 {
	var m int64
	for _, r := range c.runs {
		m = max(m, r.peakRSS)
	}
	return m
}

func (c *cell) noisy() int {
	n := 0
	for _, r := range c.runs {
		if r.noisy {
			n++
		}
	}
	return n
}

// cellSet keeps cells in the order they were first added.
type cellSet struct{ cells []*cell }

func (cs *cellSet) add(kind string, hosts int, r clientRun) {
	if c := cs.get(kind, hosts); c != nil {
		c.runs = append(c.runs, r)
		return
	}
	cs.cells = append(cs.cells, &cell{kind: kind, hosts: hosts, runs: []clientRun{r}})
}

func (cs *cellSet) get(kind string, hosts int) *cell {
	for _, c := range cs.cells {
		if c.kind == kind && c.hosts == hosts {
			return c
		}
	}
	return nil
}

// perExtraHost is the client CPU a run of kind costs per host beyond
// from (medians), false when there is nothing to compare.
func (cs *cellSet) perExtraHost(kind string, from, to int) (time.Duration, bool) {
	a, z := cs.get(kind, from), cs.get(kind, to)
	if a == nil || z == nil || to <= from {
		return 0, false
	}
	return (median(z.cpus()) - median(a.cpus())) / time.Duration(to-from), true
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func mb(n int64) string { return fmt.Sprintf("%.0f MB", float64(n)/1e6) }

func activateReport(cs *cellSet, n, concurrency, runs int, size int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d sshd on 127.0.0.1 (no added delay), each with its own deploy root; a release of %d files (%.1f MB), "+
		"one file changed per release; every run a client process of its own (wall time, CPU and peak RSS from getrusage); "+
		"concurrency %d; medians of %d runs (the first prepare and activate once); %d CPU cores shared by the client and every sshd.\n\n",
		n, releaseFiles, float64(size)/1e6, concurrency, runs, runtime.NumCPU())
	b.WriteString("| run | hosts | wall | client CPU | client CPU per extra host* | client peak RSS (max) | switch spread (median / max) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range cs.cells {
		perHost := "–"
		if d, ok := cs.perExtraHost(c.kind, 1, c.hosts); ok {
			perHost = fmt.Sprintf("%.1f ms", msf(d))
		}
		spread := "–"
		if c.hosts > 1 && !strings.HasPrefix(c.kind, "prepare") && c.kind != connectOnly {
			spread = fmt.Sprintf("%.1f / %.1f ms", msf(median(c.spreads())), msf(slices.Max(c.spreads())))
		}
		noisy := ""
		if k := c.noisy(); k > 0 {
			noisy = fmt.Sprintf(" (noisy: %d)", k)
		}
		fmt.Fprintf(&b, "| %s | %d | %s%s | %s ms | %s | %s | %s |\n", c.kind, c.hosts, secs(median(c.walls())), noisy,
			ms(median(c.cpus())), perHost, mb(c.maxRSS()), spread)
	}
	b.WriteString("\n\\* (client CPU at n hosts − at 1 host) / (n − 1), medians. " + connectOnly + ": a client that connects to every host at once (the SSH handshake and login) and closes, as the time-to-live runs do.")
	if d, ok := cs.perExtraHost("deploy, one file changed", 20, n); ok && n > 20 {
		fmt.Fprintf(&b, " A deploy's CPU per host from 20 to %d hosts: %.1f ms.", n, msf(d))
	}
	b.WriteString("\n\n| goal | measured | |\n|---|---:|:-:|\n")
	if act := cs.get("activate", n); act != nil && n > 1 {
		spread := slices.Max(act.spreads())
		fmt.Fprintf(&b, "| activate on %d hosts: switch spread < %s ms | %.1f ms (max) | %s |\n", n, ms(maxSpread), msf(spread), verdict(spread < maxSpread))
		fmt.Fprintf(&b, "| activate on %d hosts: client peak RSS < %s | %s (max) | %s |\n", n, mb(maxClientRSS), mb(act.maxRSS()), verdict(act.maxRSS() < maxClientRSS))
	}
	if d, ok := cs.perExtraHost("deploy, one file changed", 1, n); ok {
		fmt.Fprintf(&b, "| deploy on %d hosts: client CPU ≤ %s ms per extra host | %.1f ms | %s |\n", n, ms(maxCPUPerHost), msf(d), verdict(d <= maxCPUPerHost))
	}
	if noisy := slices.ContainsFunc(cs.cells, func(c *cell) bool { return c.noisy() > 0 }); noisy {
		b.WriteString("\nWarning: the machine was not quiet (or the servers not done) before the runs marked (noisy: n); their times are less reliable.\n")
	}
	return b.String()
}

// ttlRow is one cell of BenchmarkTimeToLive.
type ttlRow struct {
	rtt, hosts        int
	connect, activate []clientRun
}

// lives are the times from the start of each activate to its last switch.
func (r ttlRow) lives() []time.Duration {
	var ds []time.Duration
	for _, a := range r.activate {
		ds = append(ds, lastSwitch(a).Sub(a.Start))
	}
	return ds
}

func lastSwitch(r clientRun) time.Time {
	var last time.Time
	for _, h := range r.Hosts {
		if h.SwitchedAt.After(last) {
			last = h.SwitchedAt
		}
	}
	return last
}

// phaseAt is when the last host began (or ended) phase name, since the
// run's start (median over the runs); 0 when no host had it.
func (r ttlRow) phaseAt(name string, end bool) time.Duration {
	var ds []time.Duration
	for _, a := range r.activate {
		var last time.Time
		for _, h := range a.Hosts {
			for _, p := range h.Phases {
				t := p.Start
				if end {
					t = p.End
				}
				if p.Name == name && t.After(last) {
					last = t
				}
			}
		}
		if !last.IsZero() {
			ds = append(ds, last.Sub(a.Start))
		}
	}
	if len(ds) == 0 {
		return 0
	}
	return median(ds)
}

func timeToLiveReport(rows []ttlRow, runs int, size int64) string {
	var startups []time.Duration
	for _, r := range rows {
		for _, a := range r.activate {
			startups = append(startups, a.Start.Sub(a.started))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "A release of %d files (%.1f MB) prepared on every host beforehand (directly, no delay, and its lock holders let go: the spare made, as when a person approves); then mode activate, no hooks, "+
		"through one bench/delayproxy process with a listener per sshd (the TCP handshake to the proxy is local, so a connection "+
		"is one round trip shorter than on a real link). Each run a client process of its own; \"connection\" is a client process "+
		"that only connects to the same hosts at once (SSH handshake and authentication, until the last is up). "+
		"\"live\" is when the last host's rename answered (the rename itself is about half a round trip earlier), "+
		"counted from the call of deploy.Activate (the process started %.1f ms before it, median); the other times count from there too. "+
		"Medians of %d runs.\n\n",
		releaseFiles, float64(size)/1e6, msf(median(startups)), runs)
	b.WriteString("| RTT | hosts | connection | goal: connection + 3 RTT | start → live (median / max) | round trips after the connection | last host connected and locked | last switch began | activate done | client process | |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|\n")
	for _, r := range rows {
		conn := median(r.connectDurations())
		goal := conn + timeToLiveRTTs*time.Duration(r.rtt)*time.Millisecond
		lives := r.lives()
		live := median(lives)
		rtts := "–"
		if r.rtt > 0 {
			rtts = fmt.Sprintf("%.1f", float64(live-conn)/float64(time.Duration(r.rtt)*time.Millisecond))
		}
		var done, wall []time.Duration
		for _, a := range r.activate {
			done = append(done, a.Duration)
			wall = append(wall, a.wall)
		}
		fmt.Fprintf(&b, "| ~%d ms | %d | %.1f ms | %.1f ms | %.1f / %.1f ms | %s | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %s |\n", r.rtt, r.hosts,
			msf(conn), msf(goal), msf(live), msf(slices.Max(lives)), rtts, msf(r.phaseAt(deploy.PhaseConnect, true)),
			msf(r.phaseAt(deploy.PhaseSwitch, false)), msf(median(done)), msf(median(wall)), verdict(live <= goal))
	}
	return b.String()
}

func (r ttlRow) connectDurations() []time.Duration {
	var ds []time.Duration
	for _, c := range r.connect {
		ds = append(ds, c.Duration)
	}
	return ds
}

// writeReport writes the report to FLEET_REPORT, or logs it.
func writeReport(b *testing.B, report string) {
	if path := os.Getenv("FLEET_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			b.Fatal(err)
		}
		return
	}
	b.Log("\n" + report)
}
