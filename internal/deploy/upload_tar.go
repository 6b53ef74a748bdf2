package deploy

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/shell"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/klauspost/pgzip"
)

// Where the server has a shell and GNU tar, the whole release goes out as
// one compressed tar stream into one `tar -x`: directories, symlinks, new
// file contents, and hard-link entries that point at the previous release
// for every reused file. That is one round trip for the whole upload, and
// every file operation happens inside one server process, instead of a few
// SFTP requests per file. SFTP-only servers use Plan.execute.

// probeGNUTar reports whether the target's tar is GNU tar (its -P for the
// absolute extras, hard links relative to -C and PAX headers are what the
// stream relies on).
func probeGNUTar(ctx context.Context, t transport.Transport) bool {
	if !t.CanExec() {
		return false
	}
	var out strings.Builder
	err := t.Exec(ctx, transport.Command{Name: "tar-version", Script: "tar --version 2>/dev/null | head -n 1"}, nil, &limitedWriter{w: &out, n: 256}, io.Discard)
	return err == nil && strings.Contains(out.String(), "GNU tar")
}

// tarExtractCommand extracts a gzip-compressed stream from stdin into dir:
// -p keeps modes exactly (no umask), -P keeps the absolute names of the
// entries outside the release (manifest, switch link), --no-same-owner
// leaves files owned by the deploy user even when that user is root.
func tarExtractCommand(dir string) string {
	return shell.Command("tar", "-x", "-z", "-p", "-P", "--no-same-owner", "-C", dir, "-f", "-")
}

// executeTar sends the plan as one tar stream, extracted in dir's parent
// so that the stream also creates dir. New files get the
// modification time now and reused files keep their Reuse.FromMTime, so the
// caller knows every mtime without a scan. run runs a one-line command
// with the stream as its input; before is shell (ending in ";") run first,
// after runs when tar succeeded.
func (p *Plan) executeTar(ctx context.Context, t transport.Transport, dir, prevDir string, now time.Time, before, after string, extras []tarExtra, st *uploadStats) error {
	pr, pw := io.Pipe()
	writeErr := make(chan error, 1)
	go func() {
		err := p.writeTar(pw, path.Base(dir), prevDir, now, extras, st)
		st.streamed.Store(err == nil)
		pw.CloseWithError(err)
		writeErr <- err
	}()
	command := before + " " + tarExtractCommand(path.Dir(dir))
	if after != "" {
		command += " || exit $?; " + after
	}
	var stderr strings.Builder
	err := t.Exec(ctx, transport.Command{Name: "upload", Script: command}, pr, io.Discard, &limitedWriter{w: &stderr, n: 4096})
	pr.CloseWithError(errTarEnded)
	werr := <-writeErr
	if werr != nil && !errors.Is(werr, errTarEnded) && err != nil {
		// tar failed because the stream broke off (a file changed or
		// could not be read on the runner): that is the cause.
		return fmt.Errorf("upload to %s: %w", dir, werr)
	}
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("extract into %s: %w: %s", dir, err, msg)
		}
		return fmt.Errorf("extract into %s: %w", dir, err)
	}
	if werr != nil {
		return fmt.Errorf("upload to %s: %w", dir, werr)
	}
	return nil
}

// errTarEnded is what the stream's writer sees when the command stopped
// reading first.
var errTarEnded = errors.New("tar ended")

// tarExtra is a file or symlink outside the release that rides along at
// the end of the stream (absolute name, -P): the release's manifest (or its
// delta) and the link the switch will rename, which saves their round trips.
type tarExtra struct {
	Name   string                 // absolute path
	Load   func() ([]byte, error) // a regular file's content, when Target is empty
	Target string                 // a symlink's target
}

// writeTar writes directories first (in manifest order, parents before
// children), then symlinks, hard links and files.
func (p *Plan) writeTar(w io.Writer, top, prevDir string, now time.Time, extras []tarExtra, st *uploadStats) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	// Blocks of 1 MB are compressed on every core at once (one gzip
	// stream, as gzip -d expects): compression is most of the runner's
	// work on a fast link.
	zw, _ := pgzip.NewWriterLevel(bw, pgzip.BestSpeed)
	zw.SetConcurrency(1<<20, runtime.GOMAXPROCS(0))
	tw := tar.NewWriter(zw)
	// No format is forced: plain USTAR headers wherever a name fits (PAX
	// only for long or non-ASCII names), which is most of a stream of
	// hard-link entries. Modification times are whole seconds for that.
	hdr := func(h *tar.Header) error {
		h.Uname, h.Gname = "", ""
		return tw.WriteHeader(h)
	}
	// The release directory itself is the first entry: the stream creates it.
	if err := hdr(&tar.Header{Typeflag: tar.TypeDir, Name: top + "/", Mode: 0o755, ModTime: now}); err != nil {
		return err
	}
	for _, d := range p.Dirs {
		if err := hdr(&tar.Header{Typeflag: tar.TypeDir, Name: top + "/" + d.Path + "/", Mode: int64(d.Mode), ModTime: now}); err != nil {
			return err
		}
	}
	for _, s := range p.Symlinks {
		if err := hdr(&tar.Header{Typeflag: tar.TypeSymlink, Name: top + "/" + s.Path, Linkname: s.Target, Mode: 0o777, ModTime: now}); err != nil {
			return err
		}
	}
	for _, r := range p.Reuse {
		// Relative to the extraction directory (releases/): short names.
		link := path.Join(path.Base(prevDir), r.From)
		if err := hdr(&tar.Header{Typeflag: tar.TypeLink, Name: top + "/" + r.Entry.Path, Linkname: link, Mode: int64(r.Entry.Mode), ModTime: now}); err != nil {
			return err
		}
		st.reused.Add(1)
		st.reusedBytes.Add(r.Entry.Size)
	}
	for _, e := range p.Upload {
		if err := writeTarFile(tw, top+"/"+e.Path, e, now, &st.bytes); err != nil {
			return err
		}
		st.files.Add(1)
	}
	for _, x := range extras {
		if x.Target != "" {
			if err := hdr(&tar.Header{Typeflag: tar.TypeSymlink, Name: x.Name, Linkname: x.Target, Mode: 0o777, ModTime: now}); err != nil {
				return err
			}
			continue
		}
		data, err := x.Load()
		if err != nil {
			return err
		}
		if err := hdr(&tar.Header{Typeflag: tar.TypeReg, Name: x.Name, Size: int64(len(data)), Mode: 0o644, ModTime: now}); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

func writeTarFile(tw *tar.Writer, name string, e *release.Entry, mtime time.Time, counter *atomic.Int64) error {
	r, err := e.Open()
	if err != nil {
		return fmt.Errorf("read %s: %w", e.Path, err)
	}
	defer r.Close()
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: e.Size, Mode: int64(e.Mode), ModTime: mtime}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	n, err := io.Copy(tw, &countingReader{r: io.LimitReader(r, e.Size), n: counter})
	if err != nil {
		return fmt.Errorf("read %s: %w", e.Path, err)
	}
	if n != e.Size {
		return fmt.Errorf("upload %s: the file changed on the runner while deploying (%d bytes, expected %d)", e.Path, n, e.Size)
	}
	return nil
}
