package deploy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
)

// BenchmarkFleet compares the wall time of one deploy to 1 host and to 20
// hosts (each a real sshd with its own deploy root), and reports how far
// apart in time the 20 hosts switched. Run it with bench/fleet.sh.
func BenchmarkFleet(b *testing.B) {
	one, cpuOne := benchFleet(b, 1)
	twenty, cpuTwenty := benchFleet(b, 20)
	b.ReportMetric(one.Seconds(), "s/1-host")
	b.ReportMetric(twenty.Seconds(), "s/20-hosts")
	b.ReportMetric(twenty.Seconds()/one.Seconds(), "ratio-20/1")
	// Here the 20 servers run on the client's own cores. On 20 machines only
	// the client's extra work adds to the one-host time.
	projected := one + time.Duration(float64(cpuTwenty-cpuOne)/float64(runtime.NumCPU()))
	b.ReportMetric(projected.Seconds()/one.Seconds(), "projected-ratio-20/1")
	b.Logf("client CPU per deploy: 1 host %s, 20 hosts %s; on separate servers: about %s (%.2f× one host)",
		cpuOne.Round(time.Millisecond), cpuTwenty.Round(time.Millisecond), projected.Round(time.Millisecond), projected.Seconds()/one.Seconds())
}

// cpuTime is this process's user+system time: the deploy client's work,
// without the sshd processes it talks to.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchFleet deploys a 500-file release to n hosts b.N times and returns
// the median wall time and the client's median CPU time per deploy,
// logging the switch spread of the last run.
func benchFleet(b *testing.B, n int) (time.Duration, time.Duration) {
	f := newFleetTB(b, n)
	for i := range 500 {
		p := filepath.Join(f.src, fmt.Sprintf("vendor/p%02d/f%03d.php", i%20, i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(fmt.Sprintf("<?php // %d %0500d", i, i)), 0o644)
	}
	var times, cpus []time.Duration
	var spread time.Duration
	for i := 0; i < max(b.N, 3); i++ {
		f.write(fmt.Sprintf("v%d", i))
		start, cpu := time.Now(), cpuTime()
		res, err := f.deploy(func(o *deploy.Options) { o.Concurrency = n })
		if err != nil {
			b.Fatalf("deploy to %d hosts: %v", n, err)
		}
		times = append(times, time.Since(start))
		cpus = append(cpus, cpuTime()-cpu)
		var lo, hi time.Time
		for _, h := range res.Hosts {
			if lo.IsZero() || h.SwitchedAt.Before(lo) {
				lo = h.SwitchedAt
			}
			hi = later(hi, h.SwitchedAt)
		}
		spread = hi.Sub(lo)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	sort.Slice(cpus, func(i, j int) bool { return cpus[i] < cpus[j] })
	b.Logf("%2d host(s): median %s over %d deploys, switch spread %s", n, times[len(times)/2], len(times), spread)
	return times[len(times)/2], cpus[len(cpus)/2]
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
