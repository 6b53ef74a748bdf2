package deploy

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/words"
)

// Activate switches every target to release id, prepared earlier by
// Prepare (from this job or others: the hosts of a fleet prepared by many
// runners are switched here as one). It is refused, naming the hosts and
// switching none, where a host lacks the release, where it is not a
// complete prepared release, and, unless Options.Force, where a newer
// release went live since. Then it goes as the second half of a deploy:
// before-activate-once, the switch (with Options.Rollout), after-activate
// and the checks, putting hosts back on failure, success and prune.
func Activate(ctx context.Context, o Options, id string) (_ *Result, err error) {
	start := time.Now()
	r := newRunner(o)
	o = r.o
	if err := r.open(ctx, rootWant{prepared: id, copies: o.Settings.copiesAhead()}, o.Settings.needShell()); err != nil {
		return r.result("activate", id, start), err
	}
	cleanup := context.WithoutCancel(ctx)
	defer r.closeAll(cleanup)
	defer func() {
		if err != nil {
			r.onFailure(cleanup, err)
		}
	}()
	end := o.Groups(fmt.Sprintf("Check release %s on every host", id))
	err = r.each(ctx, o.Concurrency, func(ctx context.Context, i int) error {
		r.results[i].ReleaseID = id
		return r.hosts[i].AdoptPrepared(ctx, id, o.Force)
	})
	end()
	if err != nil {
		return r.result("activate", id, start), fmt.Errorf("release %s was not switched on any host: %w", id, err)
	}
	if res := r.result("activate", id, start); res.Unchanged() {
		// An activate run again (a re-run job): nothing to switch, and
		// the hooks and checks already ran when it went live.
		o.Log.Infof("release %s is live on every host already: nothing to switch", id)
		r.each(cleanup, o.Concurrency, func(ctx context.Context, i int) error {
			r.results[i].Outcome = OutcomeDeployed
			return r.hosts[i].Finish(ctx)
		})
		return r.result("activate", id, start), nil
	}
	return r.activate(ctx, id, "activate", start)
}

// activate switches the prepared hosts to release id: before-activate-once
// on the first host, then the rollout's steps, each switched at once and
// then checked (after-activate, Verify); a failure puts every host that
// switched back, the last step first (with AutoRollback), and no later
// step switches. Once every step passed: success and prune on every host.
func (r *runner) activate(ctx context.Context, id, mode string, start time.Time) (*Result, error) {
	o := r.o
	cleanup := context.WithoutCancel(ctx)
	if o.Settings.BeforeActivateOnce != "" {
		// Once for the fleet, after every host is ready: a migration runs only
		// when the release can go live everywhere.
		end := o.Groups("Before activate, once")
		err := r.hosts[0].RunOnce(ctx)
		end()
		if err != nil {
			r.results[0].Err = err
			if r.hosts[0].inline != switchLater {
				return r.result(mode, id, start), r.switchingStepFailed(cleanup, "before-activate-once", id, err)
			}
			r.abortAll(cleanup, "before-activate-once failed: "+err.Error())
			return r.result(mode, id, start), fmt.Errorf("release %s was not switched on any host: %s: %w", id, r.hosts[0].Name, err)
		}
	}
	steps := o.Rollout.steps(len(r.hosts))
	for n, step := range steps {
		title := fmt.Sprintf("Switch %s to %s", words.Count(int64(len(step)), "host"), id)
		if len(steps) > 1 {
			title = fmt.Sprintf("Step %d of %d: switch %s to %s", n+1, len(steps), words.Count(int64(len(step)), "host"), id)
		}
		end := o.Groups(title)
		if err := r.confirmSwitch(ctx, step); err != nil {
			end()
			r.putBack(cleanup, steps[:n], "a later step could not switch: "+err.Error())
			r.abortAll(cleanup, "could not switch: "+err.Error())
			if n == 0 {
				return r.result(mode, id, start), fmt.Errorf("release %s was not switched on any host: %w", id, err)
			}
			// Only the earlier steps' hosts ever switched: the lost one
			// cannot be read back, but it never renamed.
			return r.result(mode, id, start), fmt.Errorf("step %d of %d could not switch to %s, and none of its hosts did; %s: %w", n+1, len(steps), id, r.switchedBack(cleanup, slices.Concat(steps[:n]...)), err)
		}
		err := r.eachOf(ctx, len(step), step, func(ctx context.Context, i int) error {
			err := r.hosts[i].Activate(ctx)
			r.results[i].SwitchedAt = r.hosts[i].SwitchedAt
			if r.hosts[i].state.switched() {
				r.results[i].Batch = n + 1
			}
			return err
		})
		end()
		if err != nil {
			r.putBack(cleanup, steps[:n+1], "switch failed: "+err.Error())
			r.abortAll(cleanup, "switch failed: "+err.Error())
			return r.result(mode, id, start), fmt.Errorf("switch to %s failed; %s: %w", id, r.switchedBack(cleanup, nil), err)
		}
		o.Log.Infof("current -> releases/%s on %s", id, words.Count(int64(len(step)), "host"))
		if err := r.check(ctx, id, step, start); err != nil {
			res := r.result(mode, id, start)
			if !o.AutoRollback {
				for _, s := range steps[:n+1] {
					for _, i := range s {
						r.hosts[i].appendLog(cleanup, Record{ID: id, Status: StatusFailed, FinishedAt: time.Now().UTC(), Message: err.Error()})
						r.results[i].Outcome = OutcomeFailed
					}
				}
				r.abortAll(cleanup, "an earlier step failed: "+err.Error())
				return res, fmt.Errorf("%w; release %s stays live because auto-rollback is false", err, id)
			}
			rerr := r.putBack(cleanup, steps[:n+1], err.Error())
			r.abortAll(cleanup, "an earlier step failed: "+err.Error())
			if rerr != nil {
				return res, fmt.Errorf("%w; rolling back also failed: %v", err, rerr)
			}
			res.RolledBack = true
			res.ReleaseID = res.PreviousID
			return res, fmt.Errorf("%w; rolled back to %s", err, orNone(res.PreviousID))
		}
	}
	end := o.Groups("Finish: log, prune, unlock")
	r.each(cleanup, o.Concurrency, func(ctx context.Context, i int) error {
		r.results[i].Outcome = OutcomeDeployed
		return r.hosts[i].Finish(ctx)
	})
	end()
	return r.result(mode, id, start), nil
}

// confirmSwitch asks every host of a step of several whether it can switch
// (Host.ConfirmSwitch), all at once; one host alone is switched without
// asking, as its switch fails the same way and nothing else switched.
func (r *runner) confirmSwitch(ctx context.Context, step []int) error {
	if len(step) < 2 {
		return nil
	}
	return r.eachOf(ctx, len(step), step, func(ctx context.Context, i int) error { return r.hosts[i].ConfirmSwitch(ctx) })
}

// check runs after-activate on the hosts of a step, then Verify for them.
func (r *runner) check(ctx context.Context, id string, step []int, start time.Time) error {
	end := r.o.Groups("After activate and health check")
	defer end()
	err := r.eachOf(ctx, r.o.Concurrency, step, func(ctx context.Context, i int) error { return r.hosts[i].AfterActivate(ctx) })
	if err != nil || r.o.Verify == nil {
		return err
	}
	names := make([]string, len(step))
	for k, i := range step {
		names[k] = r.hosts[i].Name
	}
	began := time.Now()
	err = r.o.Verify(ctx, id, r.result("", id, start).PreviousID, names)
	for _, i := range step {
		r.hosts[i].phases = append(r.hosts[i].phases, Phase{Name: PhaseCheck, Start: began, End: time.Now()})
	}
	return err
}

// putBack switches the hosts of steps back, the last step first, so that
// the fleet goes back in the order it came.
func (r *runner) putBack(ctx context.Context, steps [][]int, reason string) error {
	var errs []error
	for _, step := range slices.Backward(steps) {
		if err := r.revertAll(ctx, step, reason); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%v", errs)
}

// steps splits the hosts (0..n-1, in the order given) into the rollout's
// steps: every host at once; the canaries, then the rest; or batches.
func (ro Rollout) steps(n int) [][]int {
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	switch {
	case ro.Canary > 0 && ro.Canary < n:
		return [][]int{all[:ro.Canary], all[ro.Canary:]}
	case ro.BatchSize > 0 && ro.BatchSize < n:
		return slices.Collect(slices.Chunk(all, ro.BatchSize))
	}
	return [][]int{all}
}
