package fleetbench

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/sshx"
)

// BenchmarkRenameStorm isolates the switch from the deploy around it: one
// SSH transport per host (FLEET_HOSTS, default 100), and on every host at
// once one SFTP rename of a ready link over `current`, as activate does.
// Before the storm the connections sit idle for 0, 3 or 20 s, and in the
// last kind each is asked one request (an Lstat) right before it, as the
// switch confirmation does. It reports the spread of the renames' starts
// and ends (the switch spread) for each kind, STORM_REPS times (default 3).
// Run it with SCALE_PARTS=storm bench/scale.sh.
func BenchmarkRenameStorm(b *testing.B) {
	n := envInt(b, "FLEET_HOSTS", 100)
	reps := envInt(b, "STORM_REPS", 3)
	hosts := deploytest.NewFleet(b, n, deploytest.Options{Kind: deploytest.SSH})
	ctx := context.Background()
	root := hosts.Path()
	next, current := path.Join(root, "next"), path.Join(root, "current")

	ts := make([]*sshx.Transport, n)
	eachHost(b, 10, n, func(i int) error {
		t, err := sshx.Dial(ctx, hosts[i].Server.Config())
		if err != nil {
			return err
		}
		ts[i] = t
		if err := t.Ready(ctx); err != nil {
			return err
		}
		return t.MkdirAll(ctx, root, 0o755)
	})
	b.Cleanup(func() {
		for _, t := range ts {
			if t != nil {
				t.Close()
			}
		}
	})
	if b.Failed() {
		return
	}

	kinds := []struct {
		name string
		idle time.Duration
		warm bool
	}{
		{"idle 0 s", 0, false},
		{"idle 3 s", 3 * time.Second, false},
		{"idle 20 s", 20 * time.Second, false},
		{"idle 20 s, one Lstat right before", 20 * time.Second, true},
	}
	rows := make([][]string, len(kinds))
	for range reps {
		for k, kind := range kinds {
			eachHost(b, 10, n, func(i int) error {
				return ts[i].Symlink(ctx, fmt.Sprintf("r%d", i), next)
			})
			time.Sleep(kind.idle)
			if kind.warm {
				eachHost(b, 10, n, func(i int) error {
					_, err := ts[i].Lstat(ctx, next)
					return err
				})
			}
			starts, ends := make([]time.Time, n), make([]time.Time, n)
			eachHost(b, n, n, func(i int) error {
				starts[i] = time.Now()
				defer func() { ends[i] = time.Now() }()
				return ts[i].Rename(ctx, next, current)
			})
			if b.Failed() {
				return
			}
			rows[k] = append(rows[k], fmt.Sprintf("%.1f / %.1f", msf(deploytest.Spread(starts)), msf(deploytest.Spread(ends))))
		}
	}

	var r strings.Builder
	fmt.Fprintf(&r, "%d sshd on 127.0.0.1, one SSH connection each; every host renames a ready link over `current` at once. "+
		"Spread of the renames' starts / ends in ms, %d repetitions.\n\n", n, reps)
	fmt.Fprintf(&r, "| before the renames | %s |\n|---|%s\n", strings.Repeat("start / end | ", reps-1)+"start / end", strings.Repeat("---:|", reps))
	for k, kind := range kinds {
		fmt.Fprintf(&r, "| %s | %s |\n", kind.name, strings.Join(rows[k], " | "))
	}
	writeReport(b, r.String())
}

// eachHost runs do for 0..n-1, at most limit at once; errors fail b.
func eachHost(b *testing.B, limit, n int, do func(i int) error) {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := do(i); err != nil {
				b.Errorf("host%d: %v", i, err)
			}
		}()
	}
	wg.Wait()
}
