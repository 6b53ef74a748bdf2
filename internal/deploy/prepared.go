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
	"github.com/atomic-deploy/atomic-deploy/internal/words"
)

// A prepared release (mode: prepare) is complete, sealed and recorded as
// prepared, with no link for a switch; mode: activate adopts it on every
// host and switches to it. It is never pruned before the time its record
// keeps it until (the prepared TTL of the run that prepared it), and never
// a default rollback target.

// FinishPrepared records the release as prepared and lets go of the lock.
func (h *Host) FinishPrepared(ctx context.Context) {
	lock := h.lock
	h.lock = nil
	h.state = prepared
	now := time.Now().UTC()
	rec := Record{ID: h.ReleaseID, Status: StatusPrepared, Revision: h.S.Revision, Actor: h.S.Actor, RunURL: h.S.RunURL, FinishedAt: now, KeepUntil: now.Add(h.preparedTTL)}
	for _, w := range lock.finish(ctx, h.root.log, []Record{rec}, nil) {
		h.Log.Warnf("%s: %s", h.Name, w)
	}
}

// AdoptPrepared makes release id, prepared earlier, this run's release:
// it checks that it is a prepared release, still whole and as sealed, and
// that no newer release went live since (unless force), and makes the
// link for the switch. It changes nothing else.
func (h *Host) AdoptPrepared(ctx context.Context, id string, force bool) error {
	h.ReleaseID = id
	// Abort removes it if this host does not switch.
	h.nextLink = h.root.preparedLink
	if !slices.Contains(h.root.releases, id) {
		return fmt.Errorf("release %s is not on %s: prepare it there first (mode: prepare with this release-id)", id, h.Name)
	}
	rec := h.root.log.latest()[id]
	h.adopted = rec
	switch {
	case rec.Status == StatusSuccess && h.root.currentID == id:
		h.state = recorded // live here already: nothing to switch
		if h.nextLink != "" {
			h.T.Remove(ctx, h.nextLink)
			h.nextLink = ""
		}
		return nil
	case rec.Status != StatusPrepared:
		return fmt.Errorf("release %s on %s is %s, not prepared: only a release that mode: prepare finished can be activated", id, h.Name, orNone(rec.Status))
	case h.root.currentID > id && !force:
		return fmt.Errorf("a newer release, %s, went live on %s after %s was prepared: activating %s would go back; set force: true to do it anyway", h.root.currentID, h.Name, id, id)
	}
	if err := h.checkWhole(ctx); err != nil {
		return err
	}
	if h.nextLink != "" {
		h.state = prepared
		return nil
	}
	next := path.Join(h.L.Root, tempLinkPrefix+randomToken())
	if err := h.T.Symlink(ctx, currentTarget(id), next); err != nil {
		return fmt.Errorf("prepare the switch to %s: %w", id, err)
	}
	h.nextLink, h.state = next, prepared
	return nil
}

// checkWhole says where the prepared release is not as it was finished:
// every file of its seal still there and untouched, or, without a seal
// (an SFTP-only server), every file of its manifest there with its size.
// Where the lock holder sent its listing and seal, Open compared them
// already (rootState.preparedChanged).
func (h *Host) checkWhole(ctx context.Context) error {
	id, dir := h.ReleaseID, h.L.Release(h.ReleaseID)
	problems, err := h.root.preparedChanged, error(nil)
	if !h.root.preparedChecked {
		problems, err = h.readPreparedChanges(ctx, dir)
		if err != nil {
			return err
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("release %s on %s is not as it was prepared (%s missing or changed since: %s); prepare it again", id, h.Name, words.Count(int64(len(problems)), "file"), listed(problems, 10))
	}
	return nil
}

// readPreparedChanges lists the prepared release in dir and reads its seal
// (or its manifest) to name the files not as it was finished.
func (h *Host) readPreparedChanges(ctx context.Context, dir string) ([]string, error) {
	id := h.ReleaseID
	scan, err := h.T.Scan(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("check release %s: %w", id, err)
	}
	if seal := readSeal(ctx, h.T, h.L, id, func(f string, a ...any) { h.Log.Warnf("%s: "+f, append([]any{h.Name}, a...)...) }); seal != nil {
		return changedSinceSeal(scan, seal), nil
	}
	m, err := h.readOwnManifest(ctx)
	if err != nil {
		return nil, err
	}
	var problems []string
	for _, e := range m.Entries {
		i, ok := slices.BinarySearchFunc(scan, e.Path, func(st transport.Stat, p string) int { return strings.Compare(st.Path, p) })
		if !ok || e.Type == release.TypeFile && !under(e.Path, h.S.SharedDirs) && !under(e.Path, h.S.SharedFiles) && scan[i].Size != e.Size {
			problems = append(problems, e.Path)
		}
	}
	return problems, nil
}

// changedSinceSeal names the files of seal that scan (a listing of the
// same release now, sorted by path) lacks or shows changed.
func changedSinceSeal(scan, seal []transport.Stat) []string {
	var problems []string
	for _, s := range seal {
		i, ok := slices.BinarySearchFunc(scan, s.Path, func(st transport.Stat, p string) int { return strings.Compare(st.Path, p) })
		if !ok || s.Mode.IsRegular() && !sameFile(scan[i], s) {
			problems = append(problems, s.Path)
		}
	}
	return problems
}

// readOwnManifest reads the stored manifest of this run's release.
func (h *Host) readOwnManifest(ctx context.Context) (*release.Manifest, error) {
	data, err := h.T.ReadFile(ctx, h.L.Manifest(h.ReleaseID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("release %s on %s has no manifest: it was not finished; prepare it again", h.ReleaseID, h.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("read the manifest of %s: %w", h.ReleaseID, err)
	}
	return release.DecodeManifest(strings.NewReader(string(data)))
}
