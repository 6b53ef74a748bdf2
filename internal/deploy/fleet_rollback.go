package deploy

import (
	"context"
	"fmt"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/words"
)

// Rollback switches every host to id, or to the previous successful
// release. All targets are checked before any host switches.
func Rollback(ctx context.Context, o Options, id string) (*Result, error) {
	start := time.Now()
	r := newRunner(o)
	o = r.o
	needShell := ""
	if o.Settings.AfterSwitch.Script != "" {
		needShell = o.Settings.AfterSwitch.Name
	}
	if err := r.open(ctx, rootWant{copies: o.Settings.copiesAhead()}, needShell); err != nil {
		return r.result("rollback", id, start), err
	}
	cleanup := context.WithoutCancel(ctx)
	defer r.closeAll(cleanup)
	targets := make([]string, len(r.hosts))
	err := r.each(ctx, o.Concurrency, func(ctx context.Context, i int) error {
		t, err := r.hosts[i].ResolveRollback(id, o.Force)
		targets[i] = t
		return err
	})
	if err != nil {
		return r.result("rollback", id, start), fmt.Errorf("nothing was changed: %w", err)
	}
	for i := range targets {
		if targets[i] != targets[0] {
			return r.result("rollback", id, start), fmt.Errorf("nothing was changed: hosts would roll back to different releases (%s on %s, %s on %s); pass release-id", targets[0], r.hosts[0].Name, targets[i], r.hosts[i].Name)
		}
	}
	id = targets[0]
	end := o.Groups(fmt.Sprintf("Roll back %s to %s", words.Count(int64(len(r.hosts)), "host"), id))
	defer end()
	err = r.each(ctx, len(r.hosts), func(ctx context.Context, i int) error {
		r.results[i].ReleaseID = id
		if err := r.hosts[i].RollbackTo(ctx, id); err != nil {
			r.results[i].Outcome = OutcomeFailed
			return err
		}
		r.results[i].Outcome = OutcomeDeployed
		return nil
	})
	if err != nil {
		// Put back the hosts that did switch, so the fleet stays on one release.
		r.each(cleanup, len(r.hosts), func(ctx context.Context, i int) error {
			h := r.hosts[i]
			if !h.state.switched() || r.results[i].PreviousID == "" {
				return nil
			}
			r.results[i].Outcome = OutcomeRolledBack
			h.state = maybeLive // where current points is read back at the end
			if err := h.switchTo(ctx, r.results[i].PreviousID); err != nil {
				return err // still rolled back: its records say so
			}
			h.rolledBack = nil
			return nil
		})
		r.finishRollbacks(cleanup)
		return r.result("rollback", id, start), fmt.Errorf("rollback to %s failed: %w", id, err)
	}
	err = r.each(ctx, len(r.hosts), func(ctx context.Context, i int) error {
		if r.hosts[i].root.currentID == id {
			return nil // nothing switched there
		}
		return r.hosts[i].AfterSwitch(ctx)
	})
	r.finishRollbacks(cleanup)
	if err != nil {
		return r.result("rollback", id, start), fmt.Errorf("current is on %s, but: %w", id, err)
	}
	return r.result("rollback", id, start), nil
}

// finishRollbacks logs what each host's rollback did as its lock is let go.
func (r *runner) finishRollbacks(ctx context.Context) {
	r.each(ctx, len(r.hosts), func(ctx context.Context, i int) error {
		r.hosts[i].FinishRollback(ctx)
		return nil
	})
}

// Unlock removes a lock left behind on every host.
func Unlock(ctx context.Context, o Options) (*Result, error) {
	start := time.Now()
	r := newRunner(o)
	err := r.each(ctx, o.Concurrency, func(ctx context.Context, i int) error {
		r.started[i] = time.Now()
		t, err := o.Targets[i].Dial(ctx)
		if err != nil {
			return err
		}
		defer t.Close()
		owner, had, err := ForceUnlock(ctx, t, Layout{Root: o.Root}.Lock())
		r.results[i].Duration = time.Since(r.started[i])
		switch {
		case err != nil:
			return err
		case had:
			r.results[i].Outcome = OutcomeUnlocked
			o.Log.Infof("%s: removed the lock held %s", o.Targets[i].Name, owner)
		default:
			r.results[i].Outcome = OutcomeNoLock
			o.Log.Infof("%s: no lock was held", o.Targets[i].Name)
		}
		return nil
	})
	return r.result("unlock", "", start), err
}
