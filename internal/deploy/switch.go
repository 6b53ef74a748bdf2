package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy/remote"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// Activate switches `current` to the prepared release: one rename of the
// link made by Prepare.
func (h *Host) Activate(ctx context.Context) error {
	if h.state.switched() {
		return nil // the upload's command switched
	}
	defer h.timed(PhaseSwitch)()
	// A loss found since ConfirmSwitch asked the server (the holder
	// ended, a renewal failed) still stops the switch; unconfirmed, ask.
	err := h.lock.lost()
	if err == nil && !h.confirmed {
		err = h.lock.Held(ctx)
	}
	if err != nil {
		return err
	}
	if err := h.T.Rename(ctx, h.nextLink, h.L.Current()); err != nil {
		// The rename may have happened with only its answer lost (a
		// dropped connection, a cancelled mv): look, so that a release
		// that went live is rolled back, never removed by Abort.
		if live, lerr := h.liveID(context.WithoutCancel(ctx)); lerr == nil && live == h.ReleaseID {
			h.switchedNow()
		}
		return fmt.Errorf("switch to %s: %w", h.ReleaseID, err)
	}
	// rename(2) put the prepared link in place whole; no read-back needed.
	h.switchedNow()
	return nil
}

// ConfirmSwitch asks the host, before any host of a step of several is
// switched, whether it can switch: its lock is held and the link Activate
// renames is in place. A host that stopped answering while the others
// waited (on before-activate-once, on the slowest upload) is then found
// while every host is still on its previous release, not after some
// switched. It also gives every connection one exchange right before the
// renames: connections that sat idle answered their rename far apart
// (the activate spread in bench/README.md, 2026-12-06).
func (h *Host) ConfirmSwitch(ctx context.Context) error {
	if h.state.switched() {
		return nil
	}
	if err := h.lock.Held(ctx); err != nil {
		return err
	}
	info, err := h.T.Lstat(ctx, h.nextLink)
	switch {
	case errors.Is(err, fs.ErrNotExist), err == nil && info.Mode()&fs.ModeSymlink == 0:
		return fmt.Errorf("the link to switch to %s (%s) is gone", h.ReleaseID, h.nextLink)
	case err != nil:
		return fmt.Errorf("before the switch to %s: %w", h.ReleaseID, err)
	}
	h.confirmed = true
	return nil
}

func (h *Host) switchedNow() {
	h.confirmed = false
	h.nextLink = ""
	h.state = live
	h.SwitchedAt = time.Now()
}

// settleInlineSwitch reads how the upload's command that also switches
// ended (err, and whether the whole stream went out) and returns the
// upload's error. The command switched only if it says so; otherwise it
// stopped before the switch (tar, the manifest) or at it, and Activate
// then switches as it would have.
func (h *Host) settleInlineSwitch(ctx context.Context, err error, streamed bool) error {
	var exit *transport.ExitError
	switch {
	case err == nil:
		h.switchedNow()
		if h.inline == switchAndRecord {
			h.state = recorded
		}
		return nil
	case errors.As(err, &exit):
		switch exit.Status {
		case remote.StatusSwitchedNotRecorded:
			h.switchedNow()
			return nil
		case remote.StatusNotSwitched:
			return nil
		}
		return err
	case !streamed:
		// tar cannot have finished, so the command cannot have switched.
		return err
	}
	// The answer was lost (a dropped connection, a cancelled job): the
	// command may have switched, or may still, while the lock holder
	// lives. Its release is complete by then, and it stays (Abort keeps
	// it: it may have served requests, or be about to); where it is live
	// and there is a previous release, that goes back, so the deploy fails
	// as a whole.
	h.state = maybeLive
	ctx = context.WithoutCancel(ctx)
	live, lerr := h.liveID(ctx)
	switch {
	case lerr != nil || live != h.ReleaseID:
		return err
	case h.root.currentID == "":
		h.switchedNow()
		return fmt.Errorf("%w; %s went live before that, and there is no previous release to go back to", err, h.ReleaseID)
	}
	if rerr := h.switchTo(ctx, h.root.currentID); rerr != nil {
		h.switchedNow()
		return fmt.Errorf("%w; it switched to %s before that, and switching back failed: %v", err, h.ReleaseID, rerr)
	}
	return fmt.Errorf("%w; it had switched to %s, and current is back on %s", err, h.ReleaseID, h.root.currentID)
}

// liveAtEnd says which release current points at once the run is over:
// known from what this run did, read back only where it is not.
func (h *Host) liveAtEnd(ctx context.Context) (id string, known bool) {
	switch h.state {
	case live, recorded:
		return h.ReleaseID, true
	case notCreated, created:
		return h.root.currentID, true // what Open read; the lock kept it still
	}
	id, err := h.liveID(ctx)
	return id, err == nil
}

// liveID reads which release `current` points at ("" when it does not exist).
func (h *Host) liveID(ctx context.Context) (string, error) {
	target, err := h.T.Readlink(ctx, h.L.Current())
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	id, _ := h.L.releaseIDFromTarget(target)
	return id, nil
}

// switchTo is the one place `current` changes: a new symlink under a
// temporary name is renamed over `current`. rename(2) replaces the link in
// one step, so every request sees the old release or the new one, never a
// missing link (ln -sfn unlinks first on many systems).
//
// The lock is held, so the release directories Open found are all there
// is, and rename(2) puts the link in place whole: no request checks the
// target before or reads the link back after.
func (h *Host) switchTo(ctx context.Context, id string) error {
	if !slices.Contains(h.root.releases, id) {
		return fmt.Errorf("release %s is not on %s", id, h.Name)
	}
	tmp := path.Join(h.L.Root, tempLinkPrefix+randomToken())
	if err := h.T.Symlink(ctx, currentTarget(id), tmp); err != nil {
		return fmt.Errorf("switch to %s: %w", id, err)
	}
	if err := h.T.Rename(ctx, tmp, h.L.Current()); err != nil {
		h.T.Remove(ctx, tmp)
		return fmt.Errorf("switch to %s: %w", id, err)
	}
	return nil
}
