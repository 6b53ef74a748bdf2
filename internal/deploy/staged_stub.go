package deploy

// BRANCH-ONLY PLACEHOLDER (helper branch `staged`): the lead implements
// Prepare and Activate on main and replaces this file when merging. Do
// not rely on their behaviour here; only on their signatures.

import (
	"context"
	"errors"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
)

// Prepare puts m on every host as a prepared release (upload, shared,
// writable, before-activate), records it as prepared, switches nothing.
func Prepare(ctx context.Context, o Options, m *release.Manifest) (*Result, error) {
	return nil, errors.New("Prepare: placeholder on this branch")
}

// Activate switches every host to the prepared release id (checks it is
// prepared and complete everywhere, before-activate-once, the rollout,
// after-activate, health, auto-rollback, record success, prune).
func Activate(ctx context.Context, o Options, id string) (*Result, error) {
	return nil, errors.New("Activate: placeholder on this branch")
}
