package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/shell"
)

// Activate switches `current` to the prepared release: one rename of the
// link made by Prepare.
func (h *Host) Activate(ctx context.Context) error {
	if h.switched {
		return nil // the upload's command switched
	}
	if err := h.lock.Held(ctx); err != nil {
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

func (h *Host) switchedNow() {
	h.nextLink = ""
	h.switched = true
	h.SwitchedAt = time.Now()
}

// Exit statuses of the upload's command when it also switches.
const (
	exitNotSwitched         = 87 // the release is complete; mv failed
	exitSwitchedNotRecorded = 88 // live, but the log could not be appended to
)

// switchCommand is the switch as the last step of the upload's command
// (Deploy decides when nothing has to happen in between): once it is sure
// the lock is still ours, as Activate would be, the link the stream
// brought is renamed over `current` with mv -T, rename(2); with
// recordInUpload the success record follows.
func (h *Host) switchCommand() string {
	held := h.lock.(*sessionLock).stillHeld()
	cmd := "{ " + held + " && " + shell.Command("mv", "-T", "--", h.nextLink, h.L.Current()) + "; } || exit " + strconv.Itoa(exitNotSwitched)
	if h.recordInUpload {
		line, _ := json.Marshal(Record{ID: h.ReleaseID, Status: StatusSuccess, FinishedAt: time.Now().UTC()})
		cmd += "; " + shell.Command("printf", `%s\n`, string(line)) + " >> " + shell.Quote(h.L.Log()) + " || exit " + strconv.Itoa(exitSwitchedNotRecorded)
	}
	return cmd
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
func (h *Host) switchTo(ctx context.Context, id string) error {
	info, err := h.T.Lstat(ctx, h.L.Release(id))
	switch {
	case errors.Is(err, fs.ErrNotExist), err == nil && !info.IsDir():
		return fmt.Errorf("release %s is not on %s", id, h.Name)
	case err != nil: // a lost connection is not a missing release
		return fmt.Errorf("switch to %s: %w", id, err)
	}
	tmp := path.Join(h.L.Root, tempLinkPrefix+randomToken())
	if err := h.T.Symlink(ctx, currentTarget(id), tmp); err != nil {
		return fmt.Errorf("switch to %s: %w", id, err)
	}
	if err := h.T.Rename(ctx, tmp, h.L.Current()); err != nil {
		h.T.Remove(ctx, tmp)
		return fmt.Errorf("switch to %s: %w", id, err)
	}
	got, err := h.T.Readlink(ctx, h.L.Current())
	if err != nil || got != currentTarget(id) {
		return fmt.Errorf("switch to %s: %s reads %q afterwards (%v)", id, h.L.Current(), got, err)
	}
	return nil
}
