package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
)

// sharedKind is what shared/<path> is on a server, as the lock holder's
// snapshot says (remote/holder.sh) or Lstat does.
type sharedKind byte

const (
	sharedAbsent sharedKind = '0'
	sharedDir    sharedKind = 'd' // a directory, not a link to one
	sharedFile   sharedKind = 'f' // a regular file, not a link to one
	sharedOther  sharedKind = '1' // anything else there: a link, a device...
)

func sharedKindOf(mode fs.FileMode) sharedKind {
	switch {
	case mode.IsDir():
		return sharedDir
	case mode.IsRegular():
		return sharedFile
	}
	return sharedOther
}

// seeded reports whether the shared path exists (of whatever kind).
func (k sharedKind) seeded() bool { return k != sharedAbsent && k != 0 }

// sharedPaths lists shared-dirs, then shared-files.
func (h *Host) sharedPaths() []string {
	return append(append([]string{}, h.S.SharedDirs...), h.S.SharedFiles...)
}

// withoutSeededShared drops manifest entries at or below shared paths whose
// shared copy already exists: the release links to shared/ there, so
// uploading them would be wasted. It returns the shared paths still to seed.
func (h *Host) withoutSeededShared(m *release.Manifest) (*release.Manifest, []string) {
	shared := h.sharedPaths()
	if len(shared) == 0 {
		return m, nil
	}
	var seeded, unseeded []string
	for _, p := range shared {
		if h.root.shared[p].seeded() {
			seeded = append(seeded, p)
		} else {
			unseeded = append(unseeded, p)
		}
	}
	out := &release.Manifest{Entries: make([]release.Entry, 0, len(m.Entries))}
	for _, e := range m.Entries {
		if !under(e.Path, seeded) {
			out.Entries = append(out.Entries, e)
		}
	}
	return out, unseeded
}

// under reports whether p is one of roots or below one.
func under(p string, roots []string) bool {
	for _, r := range roots {
		if p == r || strings.HasPrefix(p, r+"/") {
			return true
		}
	}
	return false
}

// streamedSharedLinks are the shared paths whose links into shared/ the
// tar stream brings (tarUpload): those seeded already as linkShared would
// take them, a directory (not a link to one) for shared-dirs, anything but
// a directory for shared-files. Made by linkShared instead, each would
// cost a few requests of a round trip each; it also says what is wrong
// with the others.
func (h *Host) streamedSharedLinks() []string {
	if _, tar := h.upload.(tarUpload); !tar {
		return nil
	}
	var streamed []string
	for _, p := range h.S.SharedDirs {
		if h.root.shared[p] == sharedDir {
			streamed = append(streamed, p)
		}
	}
	for _, p := range h.S.SharedFiles {
		if k := h.root.shared[p]; k.seeded() && k != sharedDir {
			streamed = append(streamed, p)
		}
	}
	return streamed
}

// linkShared replaces shared paths in the release with relative symlinks
// into shared/, seeding shared/ from the release the first time; not
// those the upload's stream linked already.
func (h *Host) linkShared(ctx context.Context, m *release.Manifest) error {
	streamed := h.streamedSharedLinks()
	dir := h.L.Release(h.ReleaseID)
	link := func(rel string, wantDir bool) error {
		sharedPath := path.Join(h.L.Shared(), rel)
		inRelease := path.Join(dir, rel)
		info, err := h.T.Lstat(ctx, sharedPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := h.T.MkdirAll(ctx, path.Dir(sharedPath), 0o755); err != nil {
				return fmt.Errorf("create %s: %w", path.Dir(sharedPath), err)
			}
			e := m.Entry(rel) // only where shared/ is seeded: no index of every file for every host
			switch {
			case e != nil && (e.Type == release.TypeDir) == wantDir && e.Type != release.TypeSymlink:
				if err := h.T.Rename(ctx, inRelease, sharedPath); err != nil {
					return fmt.Errorf("seed %s from the release: %w", sharedPath, err)
				}
				h.Log.Infof("%s: seeded shared/%s from the release", h.Name, rel)
			case wantDir:
				if err := h.T.MkdirAll(ctx, sharedPath, 0o755); err != nil {
					return fmt.Errorf("create %s: %w", sharedPath, err)
				}
			default:
				return fmt.Errorf("shared file %s does not exist on %s and the release has no %s to seed it from; put it there before deploying (a .env: copy your production .env to %s; every release links to it) — an empty file would hide the mistake", sharedPath, h.Name, rel, sharedPath)
			}
		case err != nil:
			return fmt.Errorf("inspect %s: %w", sharedPath, err)
		case wantDir && !info.IsDir():
			return fmt.Errorf("%s should be a directory (shared-dirs) but is not", sharedPath)
		case !wantDir && info.IsDir():
			return fmt.Errorf("%s should be a file (shared-files) but is a directory", sharedPath)
		}
		if err := h.T.RemoveAll(ctx, inRelease); err != nil {
			return fmt.Errorf("replace %s with a link: %w", inRelease, err)
		}
		if err := h.T.MkdirAll(ctx, path.Dir(inRelease), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", path.Dir(inRelease), err)
		}
		if err := h.T.Symlink(ctx, sharedLinkTarget(rel), inRelease); err != nil {
			return fmt.Errorf("link %s: %w", inRelease, err)
		}
		return nil
	}
	for _, d := range h.S.SharedDirs {
		if slices.Contains(streamed, d) {
			continue
		}
		if err := link(d, true); err != nil {
			return err
		}
	}
	for _, f := range h.S.SharedFiles {
		if slices.Contains(streamed, f) {
			continue
		}
		if err := link(f, false); err != nil {
			return err
		}
	}
	return nil
}
