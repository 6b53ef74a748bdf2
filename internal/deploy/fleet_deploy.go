package deploy

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/words"
)

// Deploy releases m to every target: all hosts are prepared in parallel,
// then switched only if every one is ready, so a fleet never serves two
// releases because one host failed early. A failed switch or check puts
// every switched host back (with AutoRollback). A deploy that fails once
// the hosts are open runs the on-failure hook on them before letting go.
func Deploy(ctx context.Context, o Options, m *release.Manifest) (_ *Result, err error) {
	start := time.Now()
	r := newRunner(o)
	o = r.o
	w := rootWant{plan: true, shared: append(slices.Clone(o.Settings.SharedDirs), o.Settings.SharedFiles...)}
	if err := r.open(ctx, w, o.Settings.needShell()); err != nil {
		return r.result("deploy", "", start), err
	}
	// Cleanup must run even when ctx is cancelled (the job was cancelled).
	cleanup := context.WithoutCancel(ctx)
	defer r.closeAll(cleanup)
	defer func() {
		if err != nil {
			r.onFailure(cleanup, err)
		}
	}()
	if o.ManifestReady != nil {
		if err := o.ManifestReady(ctx); err != nil {
			return r.result("deploy", "", start), fmt.Errorf("release not prepared, nothing deployed: %w", err)
		}
	}
	id := r.chooseID()

	if len(r.hosts) == 1 && r.hosts[0].canSwitchInUpload() {
		// Nothing happens between this host's upload and its switch, so the
		// upload's command ends with the switch (a round trip less); when
		// nothing checks the release afterwards either, with its success
		// record too.
		h := r.hosts[0]
		h.inline = switchInUpload
		if o.Verify == nil && o.Settings.AfterActivate == "" {
			h.inline = switchAndRecord
		}
	}
	end := o.Groups(fmt.Sprintf("Upload and prepare release %s", id))
	err = r.each(ctx, o.Concurrency, func(ctx context.Context, i int) error {
		h := r.hosts[i]
		r.results[i].ReleaseID = id
		err := h.Prepare(ctx, m, id)
		r.results[i].Stats = h.Stats
		if err == nil {
			o.Log.Infof("%s: release %s ready: %s uploaded (%s), %d reused", h.Name, id, words.Count(int64(h.Stats.FilesUploaded), "file"), words.Bytes(h.Stats.BytesUploaded), h.Stats.FilesReused)
		}
		return err
	})
	if err == nil && o.Settings.BeforeActivateOnce != "" {
		// Once for the fleet, after every host is ready: a migration runs only
		// when the release can go live everywhere.
		if err = r.hosts[0].RunOnce(ctx); err != nil {
			r.results[0].Err = err
			err = fmt.Errorf("%s: %w", r.hosts[0].Name, err)
		}
	}
	end()
	if err != nil {
		if r.hosts[0].inline != switchLater {
			// Its upload ends with the switch: the error may come after it.
			back := r.switchedBack(cleanup)
			r.abortAll(cleanup, "upload and switch failed: "+err.Error())
			return r.result("deploy", id, start), fmt.Errorf("upload and switch to %s failed; %s: %w", id, back, err)
		}
		r.abortAll(cleanup, "prepare failed: "+err.Error())
		return r.result("deploy", id, start), fmt.Errorf("release %s was not switched on any host: %w", id, err)
	}

	end = o.Groups(fmt.Sprintf("Switch %s to %s", words.Count(int64(len(r.hosts)), "host"), id))
	err = r.each(ctx, len(r.hosts), func(ctx context.Context, i int) error {
		err := r.hosts[i].Activate(ctx)
		r.results[i].SwitchedAt = r.hosts[i].SwitchedAt
		return err
	})
	end()
	if err != nil {
		r.revertAll(cleanup, "switch failed: "+err.Error())
		r.abortAll(cleanup, "switch failed: "+err.Error())
		return r.result("deploy", id, start), fmt.Errorf("switch to %s failed; %s: %w", id, r.switchedBack(cleanup), err)
	}
	o.Log.Infof("current -> releases/%s on %s", id, words.Count(int64(len(r.hosts)), "host"))

	end = o.Groups("After activate and health check")
	err = r.each(ctx, o.Concurrency, func(ctx context.Context, i int) error { return r.hosts[i].AfterActivate(ctx) })
	if err == nil && o.Verify != nil {
		err = o.Verify(ctx, id, r.result("deploy", id, start).PreviousID, r.names())
	}
	end()
	if err != nil {
		res := r.result("deploy", id, start)
		if !o.AutoRollback {
			for i, h := range r.hosts {
				h.appendLog(cleanup, Record{ID: id, Status: StatusFailed, FinishedAt: time.Now().UTC(), Message: err.Error()})
				r.results[i].Outcome = OutcomeFailed
			}
			return res, fmt.Errorf("%w; release %s stays live because auto-rollback is false", err, id)
		}
		if rerr := r.revertAll(cleanup, err.Error()); rerr != nil {
			return res, fmt.Errorf("%w; rolling back also failed: %v", err, rerr)
		}
		res.RolledBack = true
		res.ReleaseID = res.PreviousID
		return res, fmt.Errorf("%w; rolled back to %s", err, orNone(res.PreviousID))
	}

	end = o.Groups("Finish: log, prune, unlock")
	r.each(cleanup, o.Concurrency, func(ctx context.Context, i int) error {
		r.results[i].Outcome = OutcomeDeployed
		return r.hosts[i].Finish(ctx)
	})
	end()
	return r.result("deploy", id, start), nil
}

// onFailure runs the on-failure hook on every open host that has a live
// release, in it (current), with the lock still held: whatever the failed
// deploy left undone there (php artisan up after a maintenance-mode
// deploy, a notification). Its own failure is only a warning.
func (r *runner) onFailure(ctx context.Context, cause error) {
	if r.o.Settings.OnFailure == "" {
		return
	}
	end := r.o.Groups("On failure")
	defer end()
	r.each(ctx, r.o.Concurrency, func(ctx context.Context, i int) error {
		h := r.hosts[i]
		if h == nil {
			return nil
		}
		if id, known := h.liveAtEnd(ctx); !known || id == "" {
			r.o.Log.Infof("%s: on-failure not run: no release is known to be live", h.Name)
			return nil
		}
		env := map[string]string{"DEPLOY_ERROR": cause.Error()}
		if err := h.runHookIn(ctx, "on-failure", h.L.Current(), h.S.OnFailure, env, finishing{}); err != nil {
			r.o.Log.Warnf("%s: %v", h.Name, err)
		}
		return nil
	})
}
