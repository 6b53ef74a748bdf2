package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// rootState is what Open read of the deploy root, under the lock. It has
// two sources: the lock holder's printout (snapshot.go), one command for
// all of it, and requests, one by one (complete), for what the printout
// lacked or where there is none. The steps after Open read it without
// asking where it came from.
type rootState struct {
	currentID string   // the live release; "" when current does not exist
	releases  []string // the directories in releases/
	log       *releaseLog
	// shared says, for each of a deploy's shared paths, what
	// shared/<path> is (nil until read).
	shared map[string]sharedKind
	// What a deploy plans against (nil until read, and nil where there is
	// nothing to read: no live release, or its manifest is unreadable).
	live liveRelease
	// The release activate checks (rootWant.prepared): the files that are
	// not as sealed, where the lock holder sent its listing and seal
	// (preparedChecked); AdoptPrepared reads them itself otherwise. Only
	// the result is kept: a fleet's listings, held until every host is
	// open, would be most of the client's memory.
	preparedChecked bool
	preparedChanged []string
	// preparedLink is the link for the switch to the prepared release
	// that the lock holder made ("" when it made none).
	preparedLink string
}

// liveRelease is the live release as a deploy plans against it.
type liveRelease struct {
	manifest *release.Manifest // its stored manifest: nil when there is none or it is unreadable
	lines    []lineDigest      // the stored manifest's lines, where the server can rebuild from a delta
	scan     []transport.Stat  // its files as they are now
	seal     []transport.Stat  // its files as they were when it was finished (seal.go); nil: no seal
	// haveManifest, haveScan and haveSeal say that manifest, scan and seal
	// hold what could be read (after a warning, when that was nothing).
	haveManifest, haveScan, haveSeal bool
}

// rootWant says what to read of a root beyond the releases and the log:
// plan asks for the live release a deploy plans against, shared lists the
// shared paths whose existence a deploy needs to know, and prepared names
// the release activate checks: the lock holder lists it and sends its
// seal, which saves the check its own round trips. known, with plan, is
// a stored manifest the client already holds (knownManifest).
type rootWant struct {
	plan     bool
	shared   []string
	prepared string
	known    *knownManifest
	copies   bool // releases get private copies: the holder copies the live release ahead and makes the spare (Settings.copiesAhead)
}

// fromSnapshot takes what the lock holder printed. The live release's
// manifest and files are taken only where current is written the way a
// deploy writes it (releases/<id>): the holder reads them only then, and
// complete reads them otherwise.
func (r *rootState) fromSnapshot(l Layout, s *snapshot, w rootWant, warn func(string, ...any)) error {
	if err := r.setCurrent(l, s.current, nil); err != nil {
		return err
	}
	r.releases, r.log = s.releases, s.log
	r.shared = map[string]sharedKind{}
	for i, p := range w.shared {
		r.shared[p] = s.shared[i]
	}
	if w.prepared != "" {
		// Only from what arrived whole: otherwise AdoptPrepared reads
		// again, and says what is wrong.
		switch {
		case s.asSealed:
			r.preparedChecked, r.preparedLink = true, s.nextLink
		case s.scan != nil && s.seal != nil:
			r.preparedChecked, r.preparedChanged = true, changedSinceSeal(s.scan, s.seal)
		}
		return nil
	}
	if !w.plan || s.current != currentTarget(r.currentID) {
		return nil
	}
	if s.manifestErr != nil {
		warn("cannot read the manifest of release %s, uploading everything: %v", r.currentID, s.manifestErr)
	}
	r.live = liveRelease{manifest: s.manifest, scan: s.scan, haveManifest: true, haveScan: s.scan != nil, seal: s.seal, haveSeal: !s.sealUnsent}
	if s.asSealed {
		r.live.seal = nil // the listing is the seal: every file is as sealed, none to compare
	}
	if s.sealErr != nil {
		warn("cannot read the seal of release %s, reusing its files by size and mtime: %v", r.currentID, s.sealErr)
	}
	if s.deltaTools && s.manifest != nil {
		r.live.lines = s.manifestLines
	}
	return nil
}

// complete reads request by request what r does not hold yet. warn says
// what could not be read of the live release: the deploy then uploads
// everything, which is slower, never wrong.
func (r *rootState) complete(ctx context.Context, t transport.Transport, l Layout, w rootWant, warn func(string, ...any)) error {
	var scanErr error
	err := parallel(ctx,
		func(ctx context.Context) error {
			// The manifest's name needs the live release's id.
			if r.log == nil {
				if err := r.read(ctx, t, l); err != nil {
					return err
				}
			}
			return parallel(ctx,
				func(ctx context.Context) error {
					if w.plan && !r.live.haveManifest {
						r.live.manifest, r.live.haveManifest = readManifest(ctx, t, l, r.currentID, warn), true
					}
					return nil
				},
				func(ctx context.Context) error {
					if w.plan && !r.live.haveSeal {
						r.live.seal, r.live.haveSeal = readSeal(ctx, t, l, r.currentID, warn), true
					}
					return nil
				})
		},
		func(ctx context.Context) error {
			// The longest read starts at once, through current, which the
			// lock keeps still.
			if w.plan && !r.live.haveScan {
				r.live.scan, scanErr = t.Scan(ctx, l.Current())
				r.live.haveScan = true
			}
			return nil
		},
		func(ctx context.Context) error {
			if r.shared != nil || len(w.shared) == 0 {
				return nil
			}
			kinds := make([]sharedKind, len(w.shared))
			err := forEach(ctx, len(w.shared), indexes(w.shared), func(ctx context.Context, i int) error {
				info, err := t.Lstat(ctx, path.Join(l.Shared(), w.shared[i]))
				switch {
				case err == nil:
					kinds[i] = sharedKindOf(info.Mode())
				case errors.Is(err, fs.ErrNotExist):
					kinds[i] = sharedAbsent
				default:
					return fmt.Errorf("inspect shared %s: %w", w.shared[i], err)
				}
				return nil
			})
			r.shared = map[string]sharedKind{}
			for i, p := range w.shared {
				r.shared[p] = kinds[i]
			}
			return err
		})
	if r.currentID == "" {
		r.live.scan = nil // there is no live release to reuse from
	} else if scanErr != nil {
		warn("cannot scan release %s, uploading everything: %v", r.currentID, scanErr)
	}
	return err
}

func indexes[T any](s []T) []int {
	out := make([]int, len(s))
	for i := range s {
		out[i] = i
	}
	return out
}

// read reads where current points, the release directories and the log.
func (r *rootState) read(ctx context.Context, t transport.Transport, l Layout) error {
	var target string
	var linkErr error
	var entries []fs.FileInfo
	err := parallel(ctx,
		func(ctx context.Context) error {
			rl, err := readReleaseLog(ctx, t, l)
			if err != nil {
				return fmt.Errorf("read %s: %w", l.Log(), err)
			}
			r.log = rl
			return nil
		},
		func(ctx context.Context) error {
			target, linkErr = t.Readlink(ctx, l.Current())
			return nil
		},
		func(ctx context.Context) error {
			var err error
			if entries, err = t.ReadDir(ctx, l.Releases()); err != nil {
				return fmt.Errorf("list %s: %w", l.Releases(), err)
			}
			return nil
		},
	)
	if err != nil {
		return err
	}
	if err := r.setCurrent(l, target, linkErr); err != nil {
		return err
	}
	r.releases = r.releases[:0]
	for _, e := range entries {
		if e.IsDir() {
			r.releases = append(r.releases, e.Name())
		}
	}
	return nil
}

// setCurrent sets currentID from the target of `current` ("" or
// fs.ErrNotExist when there is none).
func (r *rootState) setCurrent(l Layout, target string, linkErr error) error {
	switch {
	case errors.Is(linkErr, fs.ErrNotExist), linkErr == nil && target == "":
		r.currentID = ""
	case linkErr != nil:
		return fmt.Errorf("read %s: %w", l.Current(), linkErr)
	default:
		id, ok := l.releaseIDFromTarget(target)
		if !ok {
			return fmt.Errorf("%s points to %s, outside %s; point it at a release or remove it", l.Current(), target, l.Releases())
		}
		r.currentID = id
	}
	return nil
}

// readManifest reads the stored manifest of release id; nil when there is
// none (a release deployed another way) or it cannot be read.
func readManifest(ctx context.Context, t transport.Transport, l Layout, id string, warn func(string, ...any)) *release.Manifest {
	if id == "" {
		return nil
	}
	data, err := t.ReadFile(ctx, l.Manifest(id))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		warn("cannot read the manifest of release %s, uploading everything: %v", id, err)
		return nil
	}
	m, err := release.DecodeManifest(strings.NewReader(string(data)))
	if err != nil {
		warn("the manifest of release %s is damaged, uploading everything: %v", id, err)
		return nil
	}
	return m
}

// removeTempLinks deletes temporary `current` links a crashed switch left
// (the lock holder does it itself).
func removeTempLinks(ctx context.Context, t transport.Transport, l Layout) {
	entries, err := t.ReadDir(ctx, l.Root)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempLinkPrefix) && e.Mode()&fs.ModeSymlink != 0 {
			t.Remove(ctx, path.Join(l.Root, e.Name()))
		}
	}
}
