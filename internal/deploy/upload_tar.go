package deploy

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy/remote"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/klauspost/pgzip"
)

// Where the server has a shell and GNU tar, the whole release goes out as
// one compressed tar stream into one `tar -x`: directories, symlinks, new
// file contents, and hard-link entries that point at the previous release
// for every reused file. That is one round trip for the whole upload, and
// every file operation happens inside one server process, instead of a few
// SFTP requests per file. Servers without it use sftpUpload.

// probeGNUTar reports whether the target's tar is GNU tar (its -P for the
// absolute extras, hard links relative to -C and PAX headers are what the
// stream relies on).
func probeGNUTar(ctx context.Context, t transport.Transport) bool {
	if !t.CanExec() {
		return false
	}
	var out strings.Builder
	err := t.Exec(ctx, remote.TarVersion.Command(), nil, transport.LimitWriter(&out, 256), io.Discard)
	return err == nil && strings.Contains(out.String(), "GNU tar")
}

// tarUpload sends the release as one tar stream into remote/upload.sh,
// which also logs it as started and creates its directory.
type tarUpload struct{ h *Host }

// begin only notes the started record: upload.sh appends it to the log.
func (u tarUpload) begin(_ context.Context, started Record) error {
	u.h.mu.Lock()
	u.h.root.log.records = append(u.h.root.log.records, started)
	u.h.mu.Unlock()
	return nil
}

// send returns the mtime each file got (by entry): every mtime is known
// before anything is sent, so the manifest and the link for the switch
// travel in the same stream. With an inline switch the command also
// switches, and what came of that is settled here (settleInlineSwitch).
func (u tarUpload) send(ctx context.Context, plan *Plan, started Record, st *uploadStats) (map[*release.Entry]int64, error) {
	h := u.h
	now := time.Now().Truncate(time.Second) // what a tar header carries exactly
	mtimes := make(map[*release.Entry]int64, len(plan.Upload)+len(plan.Reuse))
	for _, e := range plan.Upload {
		mtimes[e] = now.UnixNano()
	}
	for _, r := range plan.Reuse {
		mtimes[r.Entry] = r.FromMTime
	}
	// The manifest goes last; it is encoded while the stream flows. With a
	// previous manifest on the server, only a delta against it goes.
	type encoded struct {
		data, delta []byte
		err         error
	}
	prevLines := h.root.live.lines
	useDelta := prevLines != nil
	manifest := make(chan encoded, 1)
	go func() {
		var enc encoded
		enc.data, enc.err = h.encodeManifest(func(e *release.Entry) int64 { return mtimes[e] })
		if enc.err == nil && useDelta {
			var d *manifestDelta
			if d, enc.err = makeManifestDelta(enc.data, prevLines); enc.err == nil {
				enc.delta = d.file()
			}
		}
		manifest <- enc
	}()
	encodedManifest := func() encoded { m := <-manifest; manifest <- m; return m }
	h.nextLink = path.Join(h.L.Root, tempLinkPrefix+randomToken())
	startedLine, _ := json.Marshal(started)
	// The arguments of upload.sh, in its order.
	args := []string{h.L.Releases(), h.L.Log(), string(startedLine), "", "", h.L.Manifest(h.ReleaseID), "", "", "", h.nextLink, h.L.Current(), ""}
	manifestExtra := tarExtra{Name: h.L.Manifest(h.ReleaseID), Load: func() ([]byte, error) { m := encodedManifest(); return m.data, m.err }}
	if useDelta {
		args[3], args[4] = h.L.ManifestDelta(h.ReleaseID), h.L.Manifest(h.root.currentID)
		manifestExtra = tarExtra{Name: args[3], Load: func() ([]byte, error) { m := encodedManifest(); return m.delta, m.err }}
	}
	if h.inline != switchLater {
		args[6], args[7], args[8], _ = h.lock.guard()
		if h.inline == switchAndRecord {
			line, _ := json.Marshal(Record{ID: h.ReleaseID, Status: StatusSuccess, FinishedAt: time.Now().UTC()})
			args[11] = string(line)
		}
	}
	dir := h.L.Release(h.ReleaseID)
	err := plan.executeTar(ctx, h.T, remote.Upload.Command(args...), dir, h.liveDir(), now, []tarExtra{
		manifestExtra,
		{Name: h.nextLink, Target: currentTarget(h.ReleaseID)},
	}, st)
	if h.inline != switchLater {
		err = h.settleInlineSwitch(ctx, err, st.streamed.Load())
	}
	var exit *transport.ExitError
	if errors.As(err, &exit) && exit.Status == remote.StatusManifestDelta {
		// Rebuilding the manifest from the delta went wrong (another
		// awk?): store it whole instead.
		if err = h.T.WriteFile(ctx, h.L.Manifest(h.ReleaseID), encodedManifest().data, 0o644); err != nil {
			err = fmt.Errorf("store manifest: %w", err)
		} else {
			h.Log.Infof("%s: stored the manifest whole (rebuilding it from the previous one on the server failed)", h.Name)
		}
	}
	return mtimes, err
}

// executeTar sends the plan as one tar stream into cmd, which extracts it
// in dir's parent, so that the stream also creates dir. New files get the
// modification time now and reused files keep their Reuse.FromMTime.
func (p *Plan) executeTar(ctx context.Context, t transport.Transport, cmd transport.Command, dir, prevDir string, now time.Time, extras []tarExtra, st *uploadStats) error {
	pr, pw := io.Pipe()
	writeErr := make(chan error, 1)
	go func() {
		err := p.writeTar(pw, path.Base(dir), prevDir, now, extras, st)
		st.streamed.Store(err == nil)
		pw.CloseWithError(err)
		writeErr <- err
	}()
	var stderr strings.Builder
	err := t.Exec(ctx, cmd, pr, io.Discard, transport.LimitWriter(&stderr, 4096))
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
