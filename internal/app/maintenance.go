package app

import (
	"context"
	"sync"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// maintenanceUpScript ends maintenance mode in the release $1 points at.
const maintenanceUpScript = "cd \"$1\" || exit 1\n" + config.LaravelMaintenanceUp + "\n"

// liftMaintenance ends maintenance mode after a deploy with
// maintenance-mode that failed: before-activate may have put the live
// release down (through the shared storage) and no hook runs after a
// failure. `php artisan up` runs in the live release of every host the
// deploy reached that had one; it is a no-op where the app is up.
func (a *run) liftMaintenance(ctx context.Context, targets []deploy.Target, res *deploy.Result) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ConnectTimeout+time.Minute)
	defer cancel()
	end := a.log.Group("Maintenance mode: php artisan up after the failed deploy")
	defer end()
	current := deploy.Layout{Root: a.cfg.Path}.Current()
	var wg sync.WaitGroup
	for i, h := range res.Hosts {
		if i >= len(targets) || h.PreviousID == "" || !reached(h) {
			continue // nothing was live to put down, or the deploy never reached it
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t, err := targets[i].Dial(ctx)
			if err == nil {
				defer t.Close()
				out := a.log.Writer(h.Name)
				err = t.Exec(ctx, transport.Command{Name: "maintenance-up", Script: maintenanceUpScript, Args: []string{current}}, nil, out, out)
			}
			if err != nil {
				a.log.Warnf("%s may still be in maintenance mode (%v): run `php artisan up` in %s", h.Name, err, current)
			}
		}()
	}
	wg.Wait()
}
