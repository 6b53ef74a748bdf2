package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

// Abort undoes a release that never went live: its directory and manifest
// are removed, it is logged as failed, and the lock is released.
func (h *Host) Abort(ctx context.Context, reason string) error {
	var errs []error
	if h.nextLink != "" {
		h.T.Remove(ctx, h.nextLink)
		h.nextLink = ""
	}
	if h.created && !h.switched {
		// Never remove what `current` points at, or may point at (it
		// cannot be read): the next deploy prunes it once it is not live.
		if live, err := h.liveID(ctx); err != nil || live == h.ReleaseID {
			why := "current points at it"
			if err != nil {
				why = fmt.Sprintf("cannot tell whether current points at it: %v", err)
			}
			errs = append(errs, fmt.Errorf("release %s left in place: %s", h.ReleaseID, why))
			return errors.Join(append(errs, h.unlock(ctx))...)
		}
		if !h.keep {
			if err := h.T.RemoveAll(ctx, h.L.Release(h.ReleaseID)); err != nil {
				errs = append(errs, fmt.Errorf("remove unfinished release %s: %w", h.ReleaseID, err))
			}
			for _, p := range []string{h.L.Manifest(h.ReleaseID), path.Join(h.L.Manifests(), h.ReleaseID+".delta")} {
				h.T.Remove(ctx, p)
			}
		}
		if h.rlog != nil {
			if err := h.appendLog(ctx, Record{ID: h.ReleaseID, Status: StatusFailed, FinishedAt: time.Now().UTC(), Message: reason}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := h.unlock(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Finish records success, prunes old releases and releases the lock.
func (h *Host) Finish(ctx context.Context) error {
	h.CurrentID, h.switched = h.ReleaseID, false
	// Decided before the log changes; deleting and logging then go together.
	old := h.pruneCandidates()
	done := Record{ID: h.ReleaseID, Status: StatusSuccess, FinishedAt: time.Now().UTC()}
	if sl, ok := h.lock.(*sessionLock); ok {
		// The lock holder appends the record and deletes the old releases
		// as it lets go: no round trips for them, and both are done before
		// the next deploy can take the lock.
		var byHolder, byRequests []string
		for _, id := range old {
			if safePathElement(id) {
				byHolder = append(byHolder, id)
			} else {
				byRequests = append(byRequests, id)
			}
		}
		h.prune(ctx, byRequests)
		h.lock = nil
		var line []byte
		if !h.recorded {
			line, _ = json.Marshal(done)
		}
		if line == nil && len(byHolder) == 0 {
			// Nothing left to confirm: the holder ends when its input
			// does, and the lock goes with it.
			sl.releaseUnconfirmed()
			return nil
		}
		said, err := sl.releaseWithLog(ctx, line, byHolder)
		if err != nil {
			h.Log.Warnf("%s: could not write the releases log: %v", h.Name, err)
		}
		for _, msg := range strings.Split(said, "\n") {
			if msg != "" {
				h.Log.Warnf("%s: %s", h.Name, msg)
			}
		}
		return nil
	}
	parallel(ctx,
		func(ctx context.Context) error {
			if err := h.appendLog(ctx, done); err != nil {
				h.Log.Warnf("%s: could not write the releases log: %v", h.Name, err)
			}
			return nil
		},
		func(ctx context.Context) error { h.prune(ctx, old); return nil },
	)
	return h.unlock(ctx)
}

// Close releases the lock if it is still held (cleanup after any failure).
func (h *Host) Close(ctx context.Context) error {
	return h.unlock(ctx)
}

func (h *Host) unlock(ctx context.Context) error {
	if h.lock == nil {
		return nil
	}
	err := h.lock.Release(ctx)
	h.lock = nil
	return err
}

// pruneCandidates lists the releases beyond keep-releases. Kept: the
// newest successful releases (the one just deployed among them), the live
// one and the one a rollback would go to. Failed, rolled-back and
// abandoned releases never count. The lock is held, so the directories
// found by Open plus the new release are all there is.
func (h *Host) pruneCandidates() []string {
	names := append(slices.Clone(h.existing), h.ReleaseID)
	list := releasesFromNames(names, h.rlog, h.CurrentID)
	for i := range list {
		if list[i].ID == h.ReleaseID {
			list[i].Status = StatusSuccess
		}
	}
	keep := map[string]bool{h.CurrentID: true}
	if t := rollbackTarget(list, h.CurrentID); t != "" {
		keep[t] = true
	}
	kept := 0
	for i := len(list) - 1; i >= 0 && kept < h.S.KeepReleases; i-- {
		if list[i].Status == StatusSuccess {
			keep[list[i].ID] = true
			kept++
		}
	}
	var old []string
	for _, r := range list {
		if !keep[r.ID] {
			old = append(old, r.ID)
		}
	}
	return old
}

// prune deletes old releases. Trouble deleting is a warning: the new
// release is live by now.
//
// A release is first renamed out of releases/ into .atomic-deploy/trash,
// so it is either whole and listed or gone: one that cannot be deleted
// completely (a read-only directory, another user's files) never stays
// half deleted where a rollback could switch to it. One that cannot be
// moved stays as it is, with a warning; what the trash keeps is deleted
// again by the next prune.
func (h *Host) prune(ctx context.Context, ids []string) {
	if len(ids) == 0 {
		return
	}
	trash := h.L.Trash()
	if err := h.T.MkdirAll(ctx, trash, 0o755); err != nil {
		h.Log.Warnf("%s: could not remove old releases %s: %v", h.Name, strings.Join(ids, ", "), err)
		return
	}
	var leftovers []string
	if entries, err := h.T.ReadDir(ctx, trash); err == nil {
		for _, e := range entries {
			leftovers = append(leftovers, path.Join(trash, e.Name()))
		}
	}
	forEach(ctx, 4, leftovers, func(ctx context.Context, p string) error {
		h.T.RemoveAll(ctx, p) // reported when it was put there
		return nil
	})
	forEach(ctx, 4, ids, func(ctx context.Context, id string) error {
		aside := path.Join(trash, id+"-"+randomToken())
		if err := h.T.Rename(ctx, h.L.Release(id), aside); err != nil {
			h.Log.Warnf("%s: could not remove old release %s; it stays as it is: %v", h.Name, id, err)
			return nil
		}
		h.T.Remove(ctx, h.L.Manifest(id))
		if err := h.T.RemoveAll(ctx, aside); err != nil {
			h.Log.Warnf("%s: old release %s is out of releases/, but %s could not be deleted completely (the next deploy tries again): %v", h.Name, id, aside, err)
		}
		return nil
	})
}

// safePathElement reports whether name can be handed to the lock holder's
// shell as one line and used as one path element.
func safePathElement(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\n\x00")
}
