package deploy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
)

// BenchmarkFleet compares the wall time of one deploy to 1 host and to 20
// hosts (each a real sshd with its own deploy root), and reports how far
// apart in time the 20 hosts switched. Run it with bench/fleet.sh.
func BenchmarkFleet(b *testing.B) {
	one := benchFleet(b, 1)
	twenty := benchFleet(b, 20)
	b.ReportMetric(one.Seconds(), "s/1-host")
	b.ReportMetric(twenty.Seconds(), "s/20-hosts")
	b.ReportMetric(twenty.Seconds()/one.Seconds(), "ratio-20/1")
}

// benchFleet deploys a 500-file release to n hosts b.N times and returns
// the median wall time, logging the switch spread of the last run.
func benchFleet(b *testing.B, n int) time.Duration {
	f := newFleetTB(b, n)
	for i := range 500 {
		p := filepath.Join(f.src, fmt.Sprintf("vendor/p%02d/f%03d.php", i%20, i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(fmt.Sprintf("<?php // %d %0500d", i, i)), 0o644)
	}
	var times []time.Duration
	var spread time.Duration
	for i := 0; i < max(b.N, 3); i++ {
		f.write(fmt.Sprintf("v%d", i))
		start := time.Now()
		res, err := f.deploy(func(o *deploy.Options) { o.Concurrency = n })
		if err != nil {
			b.Fatalf("deploy to %d hosts: %v", n, err)
		}
		times = append(times, time.Since(start))
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
	b.Logf("%2d host(s): median %s over %d deploys, switch spread %s", n, times[len(times)/2], len(times), spread)
	return times[len(times)/2]
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
