package deploy

import (
	"context"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// Plan says, for each file of the new release, whether its bytes cross the
// wire or an identical file already on the server is hard-linked.
type Plan struct {
	Dirs     []*release.Entry
	Symlinks []*release.Entry
	Upload   []*release.Entry
	Reuse    []Reuse

	UploadBytes int64
	ReuseBytes  int64
}

// Reuse links an existing server file into the new release.
type Reuse struct {
	Entry     *release.Entry
	From      string // path relative to the previous release
	FromMTime int64  // its modification time (unix ns), which a hard link keeps
}

// MakePlan compares the new manifest with the previous release's manifest
// and with what the previous release holds now (prevScan). A file is reused
// only when its content hash matches, its permission bits match (a hard link
// shares them), and the server copy still has the size and modification time
// recorded right after it was deployed, so a file edited on the server since
// is never carried into the new release. Matching is by content, not by
// path: a fresh CI checkout with new mtimes still reuses everything that did
// not change. Each server file is used at most once, so no two paths of the
// new release share an inode with each other.
func MakePlan(m *release.Manifest, prev *release.Manifest, prevScan []transport.Stat) *Plan {
	p := &Plan{}
	// Reusable files of the previous release, chained by content. Indexes
	// instead of pointers and maps of structs keep a 100,000-file plan small.
	type content struct {
		hash release.Digest
		mode uint32
	}
	type candidate struct {
		path  string
		mtime int64
		next  int32 // next candidate with the same content, or -1
		used  bool
	}
	var cands []candidate
	first := map[content]int32{}
	if prev != nil {
		sort.Slice(prevScan, func(i, j int) bool { return prevScan[i].Path < prevScan[j].Path })
		for i := range prev.Entries {
			e := &prev.Entries[i]
			if e.Type != release.TypeFile || e.MTime == 0 {
				continue
			}
			j, ok := sort.Find(len(prevScan), func(j int) int { return strings.Compare(e.Path, prevScan[j].Path) })
			if !ok {
				continue
			}
			s := &prevScan[j]
			if !s.Mode.IsRegular() || s.Size != e.Size || !sameTime(*s, e.MTime) || uint32(s.Mode.Perm()) != e.Mode&0o777 {
				continue
			}
			k := content{e.Hash, e.Mode}
			next, ok := first[k]
			if !ok {
				next = -1
			}
			cands = append(cands, candidate{path: e.Path, mtime: s.ModTime.UnixNano(), next: next})
			first[k] = int32(len(cands) - 1)
		}
	}
	pick := func(e *release.Entry) *candidate {
		head, ok := first[content{e.Hash, e.Mode}]
		if !ok {
			return nil
		}
		var any *candidate
		for i := head; i >= 0; i = cands[i].next {
			c := &cands[i]
			if c.used {
				continue
			}
			if c.path == e.Path {
				return c // the same path first: the likeliest to stay untouched
			}
			if any == nil {
				any = c
			}
		}
		return any
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		switch e.Type {
		case release.TypeDir:
			p.Dirs = append(p.Dirs, e)
		case release.TypeSymlink:
			p.Symlinks = append(p.Symlinks, e)
		case release.TypeFile:
			if c := pick(e); c != nil && e.Size > 0 {
				c.used = true
				p.Reuse = append(p.Reuse, Reuse{Entry: e, From: c.path, FromMTime: c.mtime})
				p.ReuseBytes += e.Size
			} else {
				p.Upload = append(p.Upload, e)
				p.UploadBytes += e.Size
			}
		}
	}
	return p
}

// sameTime compares a scanned mtime with a recorded one at the precision
// both sides have.
func sameTime(s transport.Stat, recorded int64) bool {
	if !s.Precise {
		return s.ModTime.Unix() == time.Unix(0, recorded).Unix()
	}
	return s.ModTime.UnixNano() == recorded
}

// Progress is a snapshot of an upload.
type Progress struct {
	Host                  string
	FilesDone, FilesTotal int64
	BytesDone, BytesTotal int64
	Elapsed               time.Duration
}

// uploadStats are updated from many goroutines.
type uploadStats struct {
	files, bytes, reused, reusedBytes atomic.Int64
}

// execute writes the plan into dir with up to `parallel` operations in
// flight. Directories are made level by level (a level's mkdirs go out
// together), then every file, link and symlink at once. Over SFTP each
// operation is a round trip, so this pipelining is what makes a deploy over
// a long link fast.
func (p *Plan) execute(ctx context.Context, t transport.Transport, dir, prevDir string, parallel int, st *uploadStats) error {
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

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for _, e := range p.Upload {
		g.Go(func() error { return uploadFile(gctx, t, dir, e, st) })
	}
	for _, r := range p.Reuse {
		g.Go(func() error {
			err := t.Link(gctx, path.Join(prevDir, r.From), path.Join(dir, r.Entry.Path))
			if err == nil {
				st.reused.Add(1)
				st.reusedBytes.Add(r.Entry.Size)
				return nil
			}
			if gctx.Err() != nil {
				return gctx.Err()
			}
			// Too many links, another filesystem, no hardlink support: send it.
			return uploadFile(gctx, t, dir, r.Entry, st)
		})
	}
	for _, s := range p.Symlinks {
		g.Go(func() error {
			if err := t.Symlink(gctx, s.Target, path.Join(dir, s.Path)); err != nil {
				return fmt.Errorf("symlink %s: %w", s.Path, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
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

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// forEach runs fn for every item with bounded parallelism; the first error wins.
func forEach[T any](ctx context.Context, parallel int, items []T, fn func(context.Context, T) error) error {
	if len(items) == 0 {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for _, it := range items {
		g.Go(func() error { return fn(gctx, it) })
	}
	return g.Wait()
}
