package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// sftpUpload makes the release request by request, many in flight at
// once: servers without a shell or GNU tar.
type sftpUpload struct{ h *Host }

func (u sftpUpload) begin(ctx context.Context, started Record) error {
	h := u.h
	if err := h.appendLog(ctx, started); err != nil {
		return fmt.Errorf("write %s: %w", h.L.Log(), err)
	}
	// The lock guarantees nobody else made it since Open listed releases/.
	dir := h.L.Release(h.ReleaseID)
	if err := h.T.Mkdir(ctx, dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return h.releaseExists()
		}
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return nil
}

// send stores no manifest: recordState's scan finds the mtimes.
func (u sftpUpload) send(ctx context.Context, plan *Plan, _ Record, st *uploadStats) (manifestStored bool, err error) {
	parallel := u.h.S.Parallel
	if parallel < 1 {
		parallel = 64
	}
	reuse := u.h.T.Copy
	if u.h.S.Reuse == ReuseHardlink {
		reuse = u.h.T.Link
	}
	return false, plan.execute(ctx, u.h.T, u.h.L.Release(u.h.ReleaseID), u.h.liveDir(), reuse, parallel, st)
}

// execute writes the plan into dir with up to `parallel` operations in
// flight, reused files with reuse (a copy, or a link). Directories are made
// level by level (a level's mkdirs go out together), then every file and
// symlink at once. Over SFTP each
// operation is a round trip, so this pipelining is what makes a deploy over
// a long link fast.
func (p *Plan) execute(ctx context.Context, t transport.Transport, dir, prevDir string, reuse func(ctx context.Context, from, to string) error, parallel int, st *uploadStats) error {
	// Parents are made writable by us until the end, whatever their final mode.
	levels := map[int][]*release.Entry{}
	maxDepth := 0
	for _, d := range p.Dirs {
		depth := strings.Count(d.Path, "/")
		levels[depth] = append(levels[depth], d)
		maxDepth = max(maxDepth, depth)
	}
	for depth := 0; depth <= maxDepth; depth++ {
		err := forEach(ctx, parallel, levels[depth], func(ctx context.Context, d *release.Entry) error {
			if err := t.Mkdir(ctx, path.Join(dir, d.Path), release.FileMode(d.Mode|0o700)); err != nil {
				return fmt.Errorf("mkdir %s: %w", d.Path, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}

	ops := make([]func(context.Context) error, 0, len(p.Upload)+len(p.Reuse)+len(p.Symlinks))
	for _, e := range p.Upload {
		ops = append(ops, func(ctx context.Context) error { return uploadFile(ctx, t, dir, e, st) })
	}
	for _, r := range p.Reuse {
		ops = append(ops, func(ctx context.Context) error {
			err := reuse(ctx, path.Join(prevDir, r.From), path.Join(dir, r.Entry.Path))
			if err == nil {
				st.reused.Add(1)
				st.reusedBytes.Add(r.Entry.Size)
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// Too many links, another filesystem, no copy or link on the
			// server: send it.
			return uploadFile(ctx, t, dir, r.Entry, st)
		})
	}
	for _, s := range p.Symlinks {
		ops = append(ops, func(ctx context.Context) error {
			if err := t.Symlink(ctx, s.Target, path.Join(dir, s.Path)); err != nil {
				return fmt.Errorf("symlink %s: %w", s.Path, err)
			}
			return nil
		})
	}
	if err := forEach(ctx, parallel, ops, run); err != nil {
		return err
	}

	// Directory modes last, deepest first, so a read-only directory is
	// closed only after everything inside it exists.
	var fix []*release.Entry
	for _, d := range p.Dirs {
		if d.Mode&0o700 != 0o700 {
			fix = append(fix, d)
		}
	}
	sort.Slice(fix, func(i, j int) bool { return strings.Count(fix[i].Path, "/") > strings.Count(fix[j].Path, "/") })
	for _, d := range fix {
		if err := t.Chmod(ctx, path.Join(dir, d.Path), release.FileMode(d.Mode)); err != nil {
			return fmt.Errorf("chmod %s: %w", d.Path, err)
		}
	}
	return nil
}

func uploadFile(ctx context.Context, t transport.Transport, dir string, e *release.Entry, st *uploadStats) error {
	r, err := e.Open()
	if err != nil {
		return fmt.Errorf("read %s: %w", e.Path, err)
	}
	defer r.Close()
	w, err := t.Create(ctx, path.Join(dir, e.Path), release.FileMode(e.Mode))
	if err != nil {
		return fmt.Errorf("upload %s: %w", e.Path, err)
	}
	// Count bytes as they go, for progress. The LimitedReader tells an SFTP
	// writer the size up front, so large files go out as concurrent writes.
	n, err := io.Copy(w, &io.LimitedReader{R: &countingReader{r: r, n: &st.bytes}, N: e.Size})
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("upload %s: %w", e.Path, err)
	}
	if n != e.Size {
		return fmt.Errorf("upload %s: the file changed on the runner while deploying (%d bytes, expected %d)", e.Path, n, e.Size)
	}
	st.files.Add(1)
	return nil
}
