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
// releases because one host failed early (see activate for the switch).
// A deploy that fails once the hosts are open runs the on-failure hook on
// them before letting go.
func Deploy(ctx context.Context, o Options, m *release.Manifest) (_ *Result, err error) {
	start := time.Now()
	r := newRunner(o)
	o = r.o
	w := rootWant{plan: true, shared: append(slices.Clone(o.Settings.SharedDirs), o.Settings.SharedFiles...), copies: o.Settings.copiesAhead()}
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
	id, err := r.prepareAll(ctx, m, false)
	if err != nil {
		return r.result("deploy", id, start), err
	}
	return r.activate(ctx, id, "deploy", start)
}

// Prepare puts m on every target as a prepared release, switching none:
// uploaded, shared paths linked, writable dirs made, before-activate run,
// sealed, and recorded as prepared, for Activate to switch to later (from
// another job, once a person approved, or for a fleet prepared by many
// runners). A host that fails leaves nothing of it.
func Prepare(ctx context.Context, o Options, m *release.Manifest) (*Result, error) {
	start := time.Now()
	r := newRunner(o)
	o = r.o
	w := rootWant{plan: true, shared: append(slices.Clone(o.Settings.SharedDirs), o.Settings.SharedFiles...), copies: o.Settings.copiesAhead()}
	if err := r.open(ctx, w, o.Settings.needShell()); err != nil {
		return r.result("prepare", "", start), err
	}
	cleanup := context.WithoutCancel(ctx)
	defer r.closeAll(cleanup)
	id, err := r.prepareAll(ctx, m, true)
	if err != nil {
		return r.result("prepare", id, start), err
	}
	end := o.Groups(fmt.Sprintf("Record release %s as prepared", id))
	r.each(cleanup, o.Concurrency, func(ctx context.Context, i int) error {
		r.results[i].Outcome = OutcomePrepared
		r.hosts[i].FinishPrepared(ctx)
		return nil
	})
	end()
	return r.result("prepare", id, start), nil
}

// prepareAll chooses the release id and prepares it on every host (for
// mode: prepare, without a link for a switch), then, for a deploy, runs
// before-activate-once; on any failure no host keeps the release.
func (r *runner) prepareAll(ctx context.Context, m *release.Manifest, only bool) (string, error) {
	o := r.o
	if o.ManifestReady != nil {
		if err := o.ManifestReady(ctx); err != nil {
			return "", fmt.Errorf("release not prepared, nothing deployed: %w", err)
		}
	}
	id := r.chooseID()
	if !only && len(r.hosts) == 1 && r.hosts[0].canSwitchInline() {
		// Nothing happens between this host's last step of Prepare (the
		// upload, or before-activate) and its switch, so that step's
		// command ends with the switch (a round trip less); when nothing
		// checks the release afterwards either, with its success record
		// too (the lock holder need not confirm one: a round trip less).
		h := r.hosts[0]
		h.inline = switchInline
		if o.Verify == nil && o.Settings.AfterActivate == "" {
			h.inline = switchAndRecord
		}
	}
	end := o.Groups(fmt.Sprintf("Upload and prepare release %s", id))
	err := r.each(ctx, o.Concurrency, func(ctx context.Context, i int) error {
		h := r.hosts[i]
		h.linkless = only
		h.resealed = !only && i == 0 && o.Settings.BeforeActivateOnce != ""
		r.results[i].ReleaseID = id
		err := h.Prepare(ctx, m, id)
		r.results[i].Stats = h.Stats
		if err == nil {
			o.Log.Infof("%s: release %s ready: %s uploaded (%s), %d reused", h.Name, id, words.Count(int64(h.Stats.FilesUploaded), "file"), words.Bytes(h.Stats.BytesUploaded), h.Stats.FilesReused)
		}
		return err
	})
	end()
	if err == nil {
		return id, nil
	}
	cleanup := context.WithoutCancel(ctx)
	if h := r.hosts[0]; h.inline != switchLater && h.switchStep() != "before-activate-once" {
		return id, r.switchingStepFailed(cleanup, h.switchStep(), id, err)
	}
	r.abortAll(cleanup, "prepare failed: "+err.Error())
	if only {
		return id, fmt.Errorf("release %s was not prepared on every host, and is on none now: %w", id, err)
	}
	return id, fmt.Errorf("release %s was not switched on any host: %w", id, err)
}

// switchingStepFailed ends a run whose one host failed in step, the
// command that also switches (h.inline): the error may come after the
// switch, so it says where the host is now.
func (r *runner) switchingStepFailed(ctx context.Context, step, id string, err error) error {
	back := r.switchedBack(ctx, nil)
	r.abortAll(ctx, step+" and switch failed: "+err.Error())
	return fmt.Errorf("%s and switch to %s failed; %s: %w", step, id, back, err)
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
		if err := h.runHookIn(ctx, "on-failure", h.L.Current(), h.S.OnFailure, env, finishing{}, false); err != nil {
			r.o.Log.Warnf("%s: %v", h.Name, err)
		}
		return nil
	})
}
