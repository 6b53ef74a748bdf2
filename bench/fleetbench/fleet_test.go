// Package fleetbench holds BenchmarkFleet: one deploy to 1 host against one
// to 20, each a real sshd on 127.0.0.1 (run it with bench/fleet.sh).
package fleetbench

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
)

// BenchmarkFleet compares the wall time of one deploy to 1 host and to 20
// hosts (each a real sshd on 127.0.0.1 with its own deploy root), at each
// round-trip time of FLEET_RTTS (ms, default "0"), and reports how far
// apart in time the 20 hosts switched and where the CPU went. RTT 0 dials
// the sshd directly; any other RTT goes through one bench/delayproxy
// process (FLEET_PROXY_BIN) that adds RTT/2 to each direction.
//
// Run it with bench/fleet.sh, which builds the proxy and writes the
// Markdown report (FLEET_REPORT) to bench/out. Other knobs: FLEET_RUNS
// (timed deploys per cell, default 5), FLEET_HOSTS (default 20),
// FLEET_CONCURRENCY (hosts connected and prepared at once, default all
// of them; the switch is on all at once either way), FLEET_TRACE (a directory: after the timed runs, one more deploy of each
// size per RTT with every remote operation logged there, as
// ATOMIC_DEPLOY_TRACE does), FLEET_PROFILE (a directory: a CPU profile
// of each timed deploy to every host, cpu-<rtt>ms-<run>.pb.gz, for
// `go tool pprof` to merge).
func BenchmarkFleet(b *testing.B) {
	rtts := envRTTs(b)
	runs := envInt(b, "FLEET_RUNS", 5)
	hosts := envInt(b, "FLEET_HOSTS", 20)
	proxyBin := os.Getenv("FLEET_PROXY_BIN")
	for _, rtt := range rtts {
		if rtt > 0 && proxyBin == "" {
			b.Fatalf("FLEET_RTTS has %d ms but FLEET_PROXY_BIN is not set: run bench/fleet.sh", rtt)
		}
	}

	f := newFleet(b, hosts)
	f.concurrency = envInt(b, "FLEET_CONCURRENCY", hosts)
	// The initial deploy (every file sent) is not what is measured.
	if _, err := f.deploy(f.hosts.Targets()); err != nil {
		b.Fatalf("initial deploy: %v\n%s", err, f.log)
	}

	version := 1
	var rows []fleetRow
	for _, rtt := range rtts {
		targets, proxyPid := f.hosts.Targets(), 0
		if rtt > 0 {
			targets, proxyPid = startDelayProxy(b, proxyBin, time.Duration(rtt)*time.Millisecond, f.hosts)
		}
		c := &fleetCell{f: f, targets: targets, proxyPid: proxyPid, version: &version}
		// One untimed deploy of each size first (new proxy, warm caches).
		c.run(b, 1)
		c.run(b, hosts)
		one, all := &fleetStats{}, &fleetStats{}
		// Interleaved, so a slow phase of the machine hits both sizes.
		for run := range runs {
			one.add(c.run(b, 1))
			if dir := os.Getenv("FLEET_PROFILE"); dir != "" {
				c.profile = filepath.Join(dir, fmt.Sprintf("cpu-%dms-%d.pb.gz", rtt, run))
			}
			all.add(c.run(b, hosts))
			c.profile = ""
		}
		if dir := os.Getenv("FLEET_TRACE"); dir != "" {
			for _, n := range []int{1, hosts} {
				c.traceTo = &testutil.SyncBuffer{}
				r := c.run(b, n)
				fmt.Fprintf(c.traceTo, "deploy of %d host(s) took %.1fms\n", n, msf(r.wall))
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("trace-%dms-%dhosts.log", rtt, n)), []byte(c.traceTo.String()), 0o644); err != nil {
					b.Fatal(err)
				}
			}
			c.traceTo = nil
		}
		rows = append(rows, fleetRow{rtt: rtt, one: one, all: all})
		r := rows[len(rows)-1]
		b.ReportMetric(median(one.walls).Seconds(), fmt.Sprintf("s/1-host@%dms", rtt))
		b.ReportMetric(median(all.walls).Seconds(), fmt.Sprintf("s/%d-hosts@%dms", hosts, rtt))
		b.ReportMetric(r.ratio(), fmt.Sprintf("ratio@%dms", rtt))
	}

	report := fleetReport(rows, hosts, f.concurrency, runs)
	if path := os.Getenv("FLEET_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			b.Fatal(err)
		}
	} else {
		b.Log("\n" + report)
	}
}

// fleet is the benchmark's hosts, the release it deploys to them and how.
type fleet struct {
	hosts       deploytest.Fleet
	src         *deploytest.Source
	log         *deploytest.Log
	concurrency int // hosts connected and prepared at once; 0: all
}

// newFleet starts n sshd and writes a 500-file release.
func newFleet(b *testing.B, n int) *fleet {
	f := &fleet{hosts: deploytest.NewFleet(b, n, deploytest.Options{Kind: deploytest.SSH}),
		src: deploytest.NewSource(b, map[string]string{"index.html": "v1"}), log: &deploytest.Log{}}
	files := map[string]string{}
	for i := range 500 {
		files[fmt.Sprintf("vendor/p%02d/f%03d.php", i%20, i)] = fmt.Sprintf("<?php // %d %0500d", i, i)
	}
	f.src.Write(files)
	return f
}

// deploy deploys the release to targets, all at once (or concurrency at
// a time, until the switch).
func (f *fleet) deploy(targets []deploy.Target) (*deploy.Result, error) {
	// The lock as a real deploy takes it: its heartbeat, every TTL/4, is
	// client work that grows with the deploy's wall time.
	set := deploy.Settings{KeepReleases: 3, Revision: "r1", Parallel: 64, Lock: deploy.DefaultLockOptions}
	o := deploy.Options{Targets: targets, Root: f.hosts.Path(), Settings: &set, Log: f.log, Concurrency: cmp.Or(f.concurrency, len(targets)), AutoRollback: true}
	return deploy.Deploy(context.Background(), o, f.src.Manifest("r1"))
}

// fleetCell deploys to the first n of its targets, measuring each deploy.
type fleetCell struct {
	f        *fleet
	targets  []deploy.Target
	proxyPid int
	version  *int
	traceTo  *testutil.SyncBuffer // set: trace every operation into it
	profile  string               // set: write a CPU profile of the deploy there
}

// deployRun is one measured deploy.
type deployRun struct {
	wall   time.Duration
	spread time.Duration // max-min of the hosts' SwitchedAt
	// closing is from the first connection's Close to the end of the last:
	// about one round trip if they close in parallel, n if one by one.
	closing time.Duration
	cpu     cpuSample     // from its start until its servers finished
	during  time.Duration // machine CPU while the deploy ran
	// noisy: the machine was not quiet before or after it, or other
	// processes took a noticeable share of the CPU while it ran.
	noisy  bool
	alloc  uint64 // bytes the client allocated
	gcs    uint32 // garbage collections in the client
	faults int64  // the client's minor page faults
}

func (c *fleetCell) run(b *testing.B, n int) deployRun {
	*c.version++
	c.f.src.Write(map[string]string{"index.html": fmt.Sprintf("v%d", *c.version)}) // one file changes
	letGo(b, c.f.hosts)
	quiet := settle(c.f.hosts)
	var mem0, mem1 runtime.MemStats
	runtime.ReadMemStats(&mem0)
	faults := pageFaults()
	before := sampleCPU(c.f.hosts, c.proxyPid)
	start := time.Now()
	targets := c.targets[:n]
	if c.traceTo != nil {
		targets = tracedTargets(targets, c.traceTo, start)
	}
	var closing closeSpan
	targets = closeTimed(targets, &closing)
	stopProfile := startProfile(b, c.profile)
	res, err := c.f.deploy(targets)
	wall := time.Since(start)
	stopProfile()
	end, _ := machineCPU()
	if err != nil {
		b.Fatalf("deploy to %d hosts: %v\n%s", n, err, c.f.log)
	}
	quiet = settle(c.f.hosts) && quiet
	cpu := sampleCPU(c.f.hosts, c.proxyPid).sub(before)
	faults = pageFaults() - faults
	runtime.ReadMemStats(&mem1)
	if other := cpu.other(); other > 50*time.Millisecond+cpu.machine/10 {
		quiet = false
	}
	return deployRun{wall: wall, spread: deploytest.SwitchSpread(res), closing: closing.span(), cpu: cpu, during: end - before.machine, noisy: !quiet,
		alloc: mem1.TotalAlloc - mem0.TotalAlloc, gcs: mem1.NumGC - mem0.NumGC, faults: faults}
}

// fleetStats collects the runs of one cell.
type fleetStats struct {
	walls, spreads, closings []time.Duration
	cpu                      cpuSample
	during                   time.Duration
	noisy                    int
	alloc                    uint64
	gcs                      uint32
	faults                   int64
}

func (s *fleetStats) add(r deployRun) {
	s.walls = append(s.walls, r.wall)
	s.spreads = append(s.spreads, r.spread)
	s.closings = append(s.closings, r.closing)
	s.cpu = s.cpu.add(r.cpu)
	s.during += r.during
	s.alloc += r.alloc
	s.gcs += r.gcs
	s.faults += r.faults
	if r.noisy {
		s.noisy++
	}
}

// mean is the CPU per deploy. A mean, not a median: /proc counts in 10 ms
// ticks, which a mean smooths.
func (s *fleetStats) mean() cpuSample {
	n := time.Duration(len(s.walls))
	c := s.cpu
	return cpuSample{c.client / n, c.servers / n, c.proxy / n, c.machine / n}
}

// coresBusy is the share of all cores busy while the deploys ran.
func (s *fleetStats) coresBusy() float64 {
	var wall time.Duration
	for _, w := range s.walls {
		wall += w
	}
	return s.during.Seconds() / (wall.Seconds() * float64(runtime.NumCPU()))
}

type fleetRow struct {
	rtt      int
	one, all *fleetStats
}

func (r fleetRow) ratio() float64 {
	return median(r.all.walls).Seconds() / median(r.one.walls).Seconds()
}

// projected estimates the 20-host wall time on separate servers: the
// one-host time plus the client's extra CPU for the other hosts spread over
// this machine's cores. It assumes the servers' (and the proxy's) CPU is
// not on the runner and that the client's extra work runs in parallel.
func (r fleetRow) projected() time.Duration {
	extra := r.all.mean().client - r.one.mean().client
	return median(r.one.walls) + time.Duration(float64(extra)/float64(runtime.NumCPU()))
}

func rttLabel(rtt int) string {
	if rtt == 0 {
		return "~0 ms (loopback)"
	}
	return fmt.Sprintf("~%d ms", rtt)
}

func fleetReport(rows []fleetRow, hosts, concurrency, runs int) string {
	var b strings.Builder
	cores := runtime.NumCPU()
	fmt.Fprintf(&b, "%d sshd on 127.0.0.1, each with its own deploy root; a 500-file release, one file changed per deploy; "+
		"concurrency %d; median of %d deploys per cell (1-host and %d-host deploys interleaved, after one untimed deploy of each). "+
		"%d CPU cores shared by the client, every sshd and the delay proxy; the lock with its default TTL (heartbeat every %s).\n\n",
		hosts, concurrency, runs, hosts, cores, deploy.DefaultLockOptions.TTL/4)
	fmt.Fprintf(&b, "| RTT | 1 host | %d hosts | %d/1 | goal ≤ 1.5× | switch spread, %d hosts (median / max) | closing the connections, 1 / %d hosts | estimate on separate servers* |\n", hosts, hosts, hosts, hosts)
	b.WriteString("|---|---:|---:|---:|:-:|---:|---:|---:|\n")
	for _, r := range rows {
		verdict := "PASS"
		if r.ratio() > 1.5 {
			verdict = "FAIL"
		}
		p := r.projected()
		fmt.Fprintf(&b, "| %s | %s | %s | %.2f× | %s | %.1f / %.1f ms | %s / %s ms | ~%s (%.2f×) |\n", rttLabel(r.rtt),
			secs(median(r.one.walls)), secs(median(r.all.walls)), r.ratio(), verdict,
			msf(median(r.all.spreads)), msf(slices.Max(r.all.spreads)),
			ms(median(r.one.closings)), ms(median(r.all.closings)),
			secs(p), p.Seconds()/median(r.one.walls).Seconds())
	}
	fmt.Fprintf(&b, "\n\\* Estimate, not a measurement: the 1-host time plus the client's extra CPU for the other hosts "+
		"spread over this machine's %d cores. It assumes the servers' (and the proxy's) CPU is elsewhere and the client's "+
		"extra work runs in parallel; it leaves out waits that grow with the number of hosts on any machine, such as "+
		"connections closed one after another (\"closing\": first Close called to last Close returned).\n", cores)
	fmt.Fprintf(&b, "\nCPU per deploy, ms (mean; /proc counts in 10 ms ticks). client: this process (getrusage); "+
		"sshd: the %d listeners and everything they ran (sessions, shells, tar), counted when the connections end; "+
		"proxy: the delay proxy; other: the rest of the machine's busy time (/proc/stat; can be a few ticks below zero), "+
		"all from the start of each deploy until every sshd finished; cores busy: share of the %d cores busy while the deploys ran; "+
		"client memory: what the client allocated per deploy (MB, Go heap), its garbage collections and its minor page faults "+
		"(pages the kernel handed it on first touch, thousands).\n\n", hosts, cores)
	b.WriteString("| RTT | hosts | wall | client | sshd | proxy | other | machine | cores busy | client per extra host | client memory: alloc, GCs, faults |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		for i, s := range []*fleetStats{r.one, r.all} {
			m := s.mean()
			n, perHost := 1, "–"
			if i == 1 {
				n = hosts
				if hosts > 1 {
					perHost = ms((m.client - r.one.mean().client) / time.Duration(hosts-1))
				}
			}
			proxy := "–"
			if r.rtt > 0 {
				proxy = ms(m.proxy)
			}
			other := ms(m.other())
			if s.noisy > 0 {
				other += fmt.Sprintf(" (noisy: %d)", s.noisy)
			}
			runs := uint64(len(s.walls))
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %.0f%% | %s | %.1f MB, %.1f, %.1fk |\n", rttLabel(r.rtt), n,
				secs(median(s.walls)), ms(m.client), ms(m.servers), proxy, other,
				ms(m.machine), 100*s.coresBusy(), perHost, float64(s.alloc/runs)/1e6, float64(s.gcs)/float64(runs), float64(s.faults)/float64(runs)/1000)
		}
	}
	noisy := 0
	for _, r := range rows {
		noisy += r.one.noisy + r.all.noisy
	}
	if noisy > 0 {
		fmt.Fprintf(&b, "\nWarning: other processes on this machine were busy around %d of the timed deploys "+
			"(more than 25%% of the cores just before or after, or \"other\" above 50 ms + 10%% of the deploy's CPU); "+
			"rows marked (noisy: n) had n of them, and their times are less reliable.\n", noisy)
	}
	return b.String()
}
