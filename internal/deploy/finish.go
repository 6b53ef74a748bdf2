package deploy

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// Abort undoes a release that is not live: one that never was is removed
// with its files, one that may be or have been live stays (the next
// deploy prunes it); either is logged as failed, and the lock is released.
func (h *Host) Abort(ctx context.Context, reason string) error {
	var errs []error
	if h.nextLink != "" {
		h.T.Remove(ctx, h.nextLink)
		h.nextLink = ""
	}
	if h.state == created || h.state == maybeLive {
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
		if h.state == created {
			if err := h.T.RemoveAll(ctx, h.L.Release(h.ReleaseID)); err != nil {
				errs = append(errs, fmt.Errorf("remove unfinished release %s: %w", h.ReleaseID, err))
			}
			for _, p := range h.L.ReleaseFiles(h.ReleaseID) {
				h.T.Remove(ctx, p)
			}
		}
		if h.root.log != nil {
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
	h.root.currentID = h.ReleaseID
	// Decided before the log changes; deleting and logging then go together.
	old := h.pruneCandidates()
	var records []Record
	if h.state != recorded {
		records = append(records, Record{ID: h.ReleaseID, Status: StatusSuccess, FinishedAt: time.Now().UTC()})
	}
	for _, id := range old {
		if h.root.log.status(id) == StatusUnknown {
			h.Log.Infof("%s: removing release %s: it has no record in the releases log and is newer than the first one there (left half-written by a crashed deploy of another tool?)", h.Name, id)
		}
	}
	h.state = recorded
	h.letGo(ctx, records, old)
	return nil
}

// letGo lets go of the lock once it has appended records to the releases
// log and deleted the releases in prune (lock.finish), and warns of what
// did not go through.
func (h *Host) letGo(ctx context.Context, records []Record, prune []string) {
	lock := h.lock
	h.lock = nil
	for _, w := range lock.finish(ctx, h.root.log, records, prune) {
		h.Log.Warnf("%s: %s", h.Name, w)
	}
}

// Close releases the lock if it is still held (cleanup after any failure).
func (h *Host) Close(ctx context.Context) error {
	if h.nextLink != "" {
		// A host that did not switch, with no abort: one that adopted a
		// prepared release when another refused it.
		h.T.Remove(ctx, h.nextLink)
		h.nextLink = ""
	}
	return h.unlock(ctx)
}

func (h *Host) unlock(ctx context.Context) error {
	if h.lock == nil {
		return nil
	}
	err := h.lock.release(ctx)
	h.lock = nil
	return err
}

// pruneCandidates lists the releases beyond keep-releases. Kept: the
// newest successful releases (the one just deployed among them), the live
// one, the one a rollback would go to, and prepared ones younger than the
// prepared TTL. Failed, rolled-back and
// abandoned releases never count. The lock is held, so the directories
// found by Open plus the new release are all there is.
func (h *Host) pruneCandidates() []string {
	names := append(slices.Clone(h.root.releases), h.ReleaseID)
	list := releasesFromNames(names, h.root.log, h.root.currentID)
	for i := range list {
		if list[i].ID == h.ReleaseID {
			list[i].Status = StatusSuccess
		}
	}
	keep := map[string]bool{h.root.currentID: true}
	if t := rollbackTarget(list, h.root.currentID); t != "" {
		keep[t] = true
	}
	for _, r := range list {
		// A prepared release waits for its activation, until it is stale.
		if r.Status == StatusPrepared && time.Now().Before(r.KeepUntil) {
			keep[r.ID] = true
		}
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

// pruneByRequests deletes old releases request by request and returns
// what it could not do. Trouble deleting is only a warning: the new
// release is live by now.
//
// A release is first renamed out of releases/ into the trash, so it is
// either whole and listed or gone: one that cannot be deleted completely
// (a read-only directory, another user's files) never stays half deleted
// where a rollback could switch to it. One that cannot be moved stays as
// it is; what the trash keeps is deleted again by the next prune.
func pruneByRequests(ctx context.Context, t transport.Transport, l Layout, ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	trash := l.Trash()
	if err := t.MkdirAll(ctx, trash, 0o755); err != nil {
		return []string{fmt.Sprintf("could not remove old releases %s: %v", strings.Join(ids, ", "), err)}
	}
	var leftovers []string
	if entries, err := t.ReadDir(ctx, trash); err == nil {
		for _, e := range entries {
			leftovers = append(leftovers, path.Join(trash, e.Name()))
		}
	}
	forEach(ctx, 4, leftovers, func(ctx context.Context, p string) error {
		t.RemoveAll(ctx, p) // reported when it was put there
		return nil
	})
	var mu sync.Mutex
	var warnings []string
	forEach(ctx, 4, ids, func(ctx context.Context, id string) error {
		aside := path.Join(trash, id+"-"+randomToken())
		var warning string
		if err := t.Rename(ctx, l.Release(id), aside); err != nil {
			warning = fmt.Sprintf("could not remove old release %s; it stays as it is: %v", id, err)
		} else {
			for _, p := range l.ReleaseFiles(id) {
				t.Remove(ctx, p)
			}
			if err := t.RemoveAll(ctx, aside); err != nil {
				warning = fmt.Sprintf("old release %s is out of releases/, but %s could not be deleted completely (the next deploy tries again): %v", id, aside, err)
			}
		}
		if warning != "" {
			mu.Lock()
			warnings = append(warnings, warning)
			mu.Unlock()
		}
		return nil
	})
	return warnings
}

// safePathElement reports whether name can be handed to the lock holder's
// shell as one line and used as one path element.
func safePathElement(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\n\x00")
}
