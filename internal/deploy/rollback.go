package deploy

import (
	"context"
	"fmt"
	"time"
)

// Revert puts `current` back on the release that was live before and
// marks the new release failed. Without a previous release it says so
// and leaves `current` as it is.
func (h *Host) Revert(ctx context.Context, reason string) error {
	if !h.state.switched() {
		return nil
	}
	if h.root.currentID == "" {
		return fmt.Errorf("no previous release on %s to roll back to; %s stays live", h.Name, h.ReleaseID)
	}
	if err := h.switchTo(ctx, h.root.currentID); err != nil {
		return err
	}
	h.state = maybeLive // it was live: requests may still use it, and the next deploy prunes it
	return h.appendLog(ctx, Record{ID: h.ReleaseID, Status: StatusFailed, FinishedAt: time.Now().UTC(), Message: reason})
}

// rollbackTarget is the newest successful release older than current.
func rollbackTarget(list []ReleaseInfo, currentID string) string {
	for i := len(list) - 1; i >= 0; i-- {
		r := list[i]
		if r.ID < currentID && r.Status == StatusSuccess {
			return r.ID
		}
	}
	return ""
}

// ResolveRollback checks a rollback target: id, or the previous successful
// release when id is empty. A release the log has no record of (unknown)
// is a target only when named, with force. It changes nothing.
func (h *Host) ResolveRollback(id string, force bool) (string, error) {
	// The lock is held: the directories Open found are all there is.
	list := releasesFromNames(h.root.releases, h.root.log, h.root.currentID)
	if id == "" {
		if id = rollbackTarget(list, h.root.currentID); id == "" {
			return "", fmt.Errorf("no earlier successful release on %s to roll back to (live: %s)", h.Name, orNone(h.root.currentID))
		}
		return id, nil
	}
	for _, r := range list {
		if r.ID != id {
			continue
		}
		switch {
		case r.Status == StatusFailed || r.Status == StatusStarted:
			return "", fmt.Errorf("release %s on %s is marked %s and cannot be a rollback target", id, h.Name, r.Status)
		case r.Status == StatusUnknown && !force:
			return "", fmt.Errorf("release %s on %s has no record in the releases log, though it is newer than the first release there: it may be half-written (a deploy of another tool that crashed). Check it on the server; to roll back to it anyway, set force: true (--force)", id, h.Name)
		}
		return id, nil
	}
	return "", fmt.Errorf("release %s does not exist on %s", id, h.Name)
}

// RollbackTo switches `current` to a target checked by ResolveRollback. The
// change is logged as the lock is let go (FinishRollback): the release
// that was live is marked rolled-back, so an automatic rollback never
// picks it again.
func (h *Host) RollbackTo(ctx context.Context, id string) error {
	h.ReleaseID = id
	if id == h.root.currentID {
		return nil
	}
	h.state = maybeLive // until switchTo has said how it went
	if err := h.switchTo(ctx, id); err != nil {
		return err
	}
	h.state = live
	now := time.Now().UTC()
	prev := h.root.currentID
	if prev != "" {
		h.rolledBack = append(h.rolledBack, Record{ID: prev, Status: StatusRolledBack, FinishedAt: now, Message: "rolled back to " + id})
	}
	h.rolledBack = append(h.rolledBack, Record{ID: id, Status: StatusSuccess, FinishedAt: now, Message: "rollback from " + orNone(prev), Actor: h.S.Actor, RunURL: h.S.RunURL})
	return nil
}

// FinishRollback logs what RollbackTo did and lets go of the lock: the
// lock holder appends the records as its input ends (no request of their
// own), a lease writes the log once. A host put back because another
// failed to switch logs nothing.
func (h *Host) FinishRollback(ctx context.Context) {
	if h.lock == nil || len(h.rolledBack) == 0 {
		return // Close lets go
	}
	h.letGo(ctx, h.rolledBack, nil)
	h.rolledBack = nil
}

// Releases lists the releases on the host (oldest first).
func (h *Host) Releases(ctx context.Context) ([]ReleaseInfo, error) {
	return listReleases(ctx, h.T, h.L, h.root.log, h.root.currentID)
}
