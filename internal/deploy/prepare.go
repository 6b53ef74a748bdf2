package deploy

import (
	"context"
	"fmt"
	"path"
	"slices"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
)

// Prepare puts release id on the host, complete and ready to switch to:
// upload (only what changed), shared links, writable dirs, before-activate.
func (h *Host) Prepare(ctx context.Context, m *release.Manifest, id string) error {
	h.ReleaseID = id
	if slices.Contains(h.root.releases, id) {
		return h.releaseExists()
	}
	// Logged before the directory exists, so a crash at any later point
	// leaves a release the next deploy knows to be unfinished.
	started := Record{ID: id, Status: StatusStarted, Revision: h.S.Revision, Actor: h.S.Actor, RunURL: h.S.RunURL, StartedAt: time.Now().UTC()}
	if err := h.upload.begin(ctx, started); err != nil {
		return err
	}
	h.state = created
	m, unseeded := h.withoutSeededShared(m)
	h.manifest = m
	plan := MakePlan(m, h.root.live.manifest, h.root.live.scan)
	h.root.live.manifest, h.root.live.scan = nil, nil // large on big releases; the plan has what it needs
	plan.uploadOnly(unseeded)
	mtimes, err := h.transfer(ctx, plan, started)
	if err != nil {
		return err
	}
	if err := h.linkShared(ctx, m); err != nil {
		return err
	}
	if err := h.recordState(ctx, mtimes); err != nil {
		return err
	}
	if err := h.makeWritable(ctx); err != nil {
		return err
	}
	if h.S.BeforeActivate != "" {
		if err := h.runHook(ctx, "before-activate", h.S.BeforeActivate); err != nil {
			return err
		}
	}
	// The new link is made now (the tar stream brought it already), so the
	// switch itself is one rename: across a fleet every host flips within
	// about one round trip.
	if h.nextLink == "" && !h.state.switched() {
		next := path.Join(h.L.Root, tempLinkPrefix+randomToken())
		if err := h.T.Symlink(ctx, currentTarget(id), next); err != nil {
			return fmt.Errorf("prepare the switch to %s: %w", id, err)
		}
		h.nextLink = next
	}
	return nil
}

func (h *Host) releaseExists() error {
	return fmt.Errorf("release %s already exists on %s; a release id is used once (choose another release-id or let it default to the time)", h.ReleaseID, h.Name)
}

// canSwitchInUpload reports whether nothing has to happen on this host
// between the upload and the switch: no hooks, no writable or shared
// paths, and the upload is one command whose server-side switch can check
// the lock (Deploy adds: one host).
func (h *Host) canSwitchInUpload() bool {
	_, tar := h.upload.(tarUpload)
	_, _, _, checkable := h.lock.guard()
	return tar && checkable && h.S.BeforeActivate == "" && h.S.BeforeActivateOnce == "" && len(h.S.WritableDirs) == 0 && len(h.sharedPaths()) == 0
}
