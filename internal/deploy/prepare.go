package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// Prepare puts release id on the host, complete and ready to switch to:
// upload (only what changed), shared links, writable dirs, before-activate.
func (h *Host) Prepare(ctx context.Context, m *release.Manifest, id string) error {
	h.ReleaseID = id
	dir := h.L.Release(id)
	if slices.Contains(h.existing, id) {
		return fmt.Errorf("release %s already exists on %s; a release id is used once (choose another release-id or let it default to the time)", id, h.Name)
	}
	// What the plan needs is read while the log is written.
	started := Record{ID: id, Status: StatusStarted, Revision: h.S.Revision, Actor: h.S.Actor, RunURL: h.S.RunURL, StartedAt: time.Now().UTC()}
	var (
		unseeded []string
		prev     *release.Manifest
		prevScan []transport.Stat
	)
	err := parallel(ctx,
		func(ctx context.Context) error {
			// Logged before the directory exists, so a crash at any later
			// point leaves a release the next deploy knows to be unfinished.
			// The tar command appends it itself (one round trip less).
			if h.gnuTar {
				h.mu.Lock()
				h.rlog.records = append(h.rlog.records, started)
				h.mu.Unlock()
				return nil
			}
			if err := h.appendLog(ctx, started); err != nil {
				return fmt.Errorf("write %s: %w", h.L.Log(), err)
			}
			return nil
		},
		func(ctx context.Context) error {
			var err error
			m, unseeded, err = h.withoutSeededShared(ctx, m)
			return err
		},
		func(ctx context.Context) error { prev = h.previousManifest(ctx); return nil },
		func(ctx context.Context) error { prevScan = h.previousScan(ctx); return nil },
	)
	if err != nil {
		return err
	}
	// The tar stream creates the directory itself (one round trip less);
	// the lock guarantees nobody else made it since Open listed releases/.
	if !h.gnuTar {
		if err := h.T.Mkdir(ctx, dir, 0o755); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("release %s already exists on %s; a release id is used once (choose another release-id or let it default to the time)", id, h.Name)
			}
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	h.created = true
	h.manifest = m
	plan := MakePlan(m, prev, prevScan)
	if h.snap != nil && h.snap.deltaTools && h.snap.manifest != nil {
		h.prevLines = h.snap.manifestLines
	}
	prev, prevScan, h.prefetchedScan, h.snap = nil, nil, nil, nil // large on big releases; the plan has what it needs
	plan.uploadOnly(unseeded)
	mtimes, err := h.upload(ctx, plan, dir, started)
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
	if err := h.protectOlderReleases(ctx); err != nil {
		return err
	}
	// The new link is made now (the tar stream brought it already), so the
	// switch itself is one rename: across a fleet every host flips within
	// about one round trip.
	if h.nextLink == "" && !h.switched {
		next := path.Join(h.L.Root, tempLinkPrefix+randomToken())
		if err := h.T.Symlink(ctx, currentTarget(id), next); err != nil {
			return fmt.Errorf("prepare the switch to %s: %w", id, err)
		}
		h.nextLink = next
	}
	return nil
}

// canSwitchInUpload reports whether nothing has to happen on this host
// between the upload and the switch: no hooks, no writable or shared
// paths, and the upload is one command (Deploy adds: one host).
func (h *Host) canSwitchInUpload() bool {
	_, _, _, checkable := h.lock.guard() // the command switches only once it knows the lock is ours
	return checkable && h.gnuTar && h.S.BeforeActivate == "" && h.S.BeforeActivateOnce == "" && !h.runsInRelease() && len(h.sharedPaths()) == 0
}

// previousManifest is the stored manifest of the live release, or nil.
func (h *Host) previousManifest(ctx context.Context) *release.Manifest {
	if h.CurrentID == "" {
		return nil
	}
	if h.snap != nil && h.snapManifest {
		if h.snap.manifestErr != nil {
			h.Log.Warnf("%s: cannot read the manifest of release %s, uploading everything: %v", h.Name, h.CurrentID, h.snap.manifestErr)
		}
		return h.snap.manifest
	}
	data, err := h.T.ReadFile(ctx, h.L.Manifest(h.CurrentID))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			h.Log.Warnf("%s: cannot read the manifest of release %s, uploading everything: %v", h.Name, h.CurrentID, err)
		}
		return nil
	}
	m, err := release.DecodeManifest(strings.NewReader(string(data)))
	if err != nil {
		h.Log.Warnf("%s: the manifest of release %s is damaged, uploading everything: %v", h.Name, h.CurrentID, err)
		return nil
	}
	return m
}

func (h *Host) previousScan(ctx context.Context) []transport.Stat {
	if h.CurrentID == "" {
		return nil
	}
	s, err := h.prefetchedScan, h.prefetchErr
	if !h.prefetched {
		s, err = h.T.Scan(ctx, h.L.Release(h.CurrentID))
	}
	if err != nil {
		h.Log.Warnf("%s: cannot scan release %s, uploading everything: %v", h.Name, h.CurrentID, err)
		return nil
	}
	return s
}
