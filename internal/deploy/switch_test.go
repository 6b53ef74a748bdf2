package deploy

import (
	"context"
	"errors"
	"testing"
)

// lostLock is a lock whose loss is known here.
type lostLock struct {
	hostLock
	err error
}

func (l lostLock) lost() error                { return l.err }
func (l lostLock) Held(context.Context) error { return l.err }

// A confirmed host still refuses to switch when its lock was lost after
// the confirmation (its holder ended while the step waited on others):
// the rename is never sent (the host has no transport to send it on).
func TestActivateAfterConfirmationStillChecksTheLock(t *testing.T) {
	gone := errors.New("the lock holder ended")
	h := &Host{lock: lostLock{err: gone}, confirmed: true, state: prepared, nextLink: "/site/.current-next", ReleaseID: "r2"}
	if err := h.Activate(context.Background()); !errors.Is(err, gone) {
		t.Fatalf("Activate = %v, want the lost lock's error", err)
	}
	if h.state.switched() {
		t.Error("the host counts as switched")
	}
}
