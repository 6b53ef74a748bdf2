package deploy

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy/remote"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/klauspost/compress/gzip"
)

// Where the server has a shell and GNU tar, the whole release goes out as
// one compressed tar stream into one `tar -x`: directories, symlinks and
// new file contents. Every reused file becomes a private copy of the live
// release's, made on the server by GNU cp (a reflink where the filesystem
// has them) from a list that comes before the stream, while the stream is
// still arriving; with reuse: hardlink, a hard-link entry in the stream
// instead. That is one round trip for the whole upload, and every file
// operation happens on the server, instead of a few SFTP requests per
// file. Servers without GNU tar (or GNU cp, to copy) use sftpUpload.

// probeGNUTools reports whether the target's tar and cp are GNU's (what
// the stream relies on: PAX headers, names relative to -C; cp --parents
// and --reflink for the copies of reused files).
func probeGNUTools(ctx context.Context, t transport.Transport) (tar, cp bool) {
	if !t.CanExec() {
		return false, false
	}
	var out strings.Builder
	if err := t.Exec(ctx, remote.GNUTools.Command(), nil, transport.LimitWriter(&out, 512), io.Discard); err != nil {
		return false, false
	}
	return strings.Contains(out.String(), "GNU tar"), strings.Contains(out.String(), "GNU coreutils")
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

// send stores the manifest too: every mtime is known before anything is
// sent, so the manifest and the link for the switch travel in the same
// stream. With an inline switch the command also switches, and what came
// of that is settled here (settleInlineSwitch).
func (u tarUpload) send(ctx context.Context, plan *Plan, started Record, st *uploadStats) (manifestStored bool, err error) {
	h := u.h
	now := h.uploadMTime
	if now.IsZero() {
		now = time.Now().Truncate(time.Second) // what a tar header carries exactly
	}
	recorded := h.streamedMTimes(plan, now)
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
		key := newManifestKey{manifest: h.manifest, mtimes: recorded.digest, delta: useDelta}
		if len(prevLines) > 0 {
			key.prev, key.prevLen = &prevLines[0], len(prevLines)
		}
		enc, err := newManifests.get(key, func() (newManifest, error) {
			var buf bytes.Buffer
			if err := h.manifest.EncodeMTimes(&buf, recorded.mtimes); err != nil {
				return newManifest{}, err
			}
			enc := newManifest{data: buf.Bytes()}
			if useDelta {
				d, err := makeManifestDelta(enc.data, prevLines)
				if err != nil {
					return newManifest{}, err
				}
				enc.delta = d.file()
			}
			return enc, nil
		})
		manifest <- encoded{data: enc.data, delta: enc.delta, err: err}
	}()
	encodedManifest := func() encoded { m := <-manifest; manifest <- m; return m }
	// The links into shared/ go before the manifest, which says the
	// stream came whole (upload.sh).
	var extras []tarExtra
	for _, rel := range h.streamedSharedLinks() {
		extras = append(extras, tarExtra{Name: h.L.relative(path.Join(h.L.Release(h.ReleaseID), rel)), Target: sharedLinkTarget(rel)})
	}
	var nextLink []tarExtra
	if !h.linkless {
		h.nextLink = path.Join(h.L.Root, tempLinkPrefix+randomToken())
		nextLink = append(nextLink, tarExtra{Name: h.L.relative(h.nextLink), Target: currentTarget(h.ReleaseID)})
	}
	startedLine, _ := json.Marshal(started)
	// The arguments of upload.sh, in its order.
	args := []string{h.L.Root, h.L.Log(), string(startedLine), "", "", h.L.Manifest(h.ReleaseID), "", "", "", h.nextLink, h.L.Current(), "",
		h.liveDir(), h.L.Release(h.ReleaseID), "", ""}
	if pid, _, _, ok := h.lock.guard(); ok && h.S.copiesAhead() {
		args[15] = h.L.aheadCopy(pid)
	}
	if len(h.S.WritableDirs) > 0 && h.writableInUpload() {
		args = append(args, h.writableArgs()...)
	}
	manifestExtra := tarExtra{Name: h.L.relative(h.L.Manifest(h.ReleaseID)), Load: func() ([]byte, error) { m := encodedManifest(); return m.data, m.err }}
	if useDelta {
		args[3], args[4] = h.L.ManifestDelta(h.ReleaseID), h.L.Manifest(h.root.currentID)
		manifestExtra = tarExtra{Name: h.L.relative(args[3]), Load: func() ([]byte, error) { m := encodedManifest(); return m.delta, m.err }}
	}
	if h.sealsInUpload() {
		// Nothing runs in the release after this command: it is finished
		// once the stream is in, and sealed there.
		args[14] = h.L.Seal(h.ReleaseID)
	}
	if h.switchesInUpload() {
		// Nothing happens between upload and switch either: the command
		// switches once it has sealed.
		sw := h.inlineSwitching()
		args[6], args[7], args[8], args[11] = sw.pid, sw.token, sw.owner, sw.success
	}
	// Reused files are copied by upload.sh from the lists before the
	// stream, or, with reuse: hardlink, linked by entries in it. The delta
	// comes before the stream too, so that the manifest is rebuilt while
	// the reused files are copied.
	lists, linkFrom := plan.reuseLists(), ""
	if h.S.Reuse == ReuseHardlink {
		lists, linkFrom = reuseLists{}, h.L.relative(h.liveDir())
	}
	var delta []byte
	if useDelta {
		m := encodedManifest()
		if m.err != nil {
			return false, fmt.Errorf("encode the manifest of %s: %w", h.ReleaseID, m.err)
		}
		delta = m.delta
	}
	err = plan.executeTar(ctx, h.T, remote.Upload.Command(args...), h.L.Release(h.ReleaseID), h.warmAhead(bytes.NewReader(uploadHead(lists, delta)), h.execsAfterUpload()), tarShape{
		top: h.L.relative(h.L.Release(h.ReleaseID)), linkFrom: linkFrom, now: now,
		extras: slices.Concat(extras, []tarExtra{manifestExtra}, nextLink),
	}, st)
	var exit *transport.ExitError
	pastSeal := err == nil || errors.As(err, &exit) && (exit.Status == remote.StatusNotSwitched || exit.Status == remote.StatusSwitchedNotRecorded)
	h.sealed = args[14] != "" && pastSeal
	if h.switchesInUpload() {
		err = h.settleInlineSwitch(ctx, err, st.streamed.Load())
	}
	if errors.As(err, &exit) && exit.Status == remote.StatusWritable {
		return true, h.writableError(err)
	}
	if errors.As(err, &exit) && exit.Status == remote.StatusManifestDelta {
		// Rebuilding the manifest from the delta went wrong (another
		// awk?): store it whole instead.
		if err = h.T.WriteFile(ctx, h.L.Manifest(h.ReleaseID), encodedManifest().data, 0o644); err != nil {
			err = fmt.Errorf("store manifest: %w", err)
		} else {
			h.Log.Infof("%s: stored the manifest whole (rebuilding it from the previous one on the server failed)", h.Name)
		}
	}
	return true, err
}

// executeTar sends head (uploadHead), then the plan as one tar stream,
// into cmd, which extracts it in the deploy root (the stream creates dir).
func (p *Plan) executeTar(ctx context.Context, t transport.Transport, cmd transport.Command, dir string, head io.Reader, shape tarShape, st *uploadStats) error {
	pr, pw := io.Pipe()
	writeErr := make(chan error, 1)
	go func() {
		meter, _ := t.(transport.LinkMeter)
		err := p.writeTar(pw, meter, shape, st)
		st.streamed.Store(err == nil)
		pw.CloseWithError(err)
		writeErr <- err
	}()
	var stderr strings.Builder
	err := t.Exec(ctx, cmd, io.MultiReader(head, pr), io.Discard, transport.LimitWriter(&stderr, 4096))
	pr.CloseWithError(errTarEnded)
	werr := <-writeErr
	if werr != nil && !errors.Is(werr, errTarEnded) && err != nil {
		// tar failed because the stream broke off (a file changed or
		// could not be read on the runner): that is the cause.
		return fmt.Errorf("upload to %s: %w", dir, werr)
	}
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		var exit *transport.ExitError
		if errors.As(err, &exit) && exit.Status == remote.StatusWritable {
			return err // the caller says what failed
		}
		return fmt.Errorf("extract into %s: %w", dir, err)
	}
	if werr != nil {
		return fmt.Errorf("upload to %s: %w", dir, werr)
	}
	return nil
}

// reuseLists are the plan's two lists of reused files, gzip'd. The first
// holds the paths of the files reused from the same path of the live
// release, NUL-terminated (cp --parents copies them in one go); the
// second, pairs of paths where the content moved (from, then to).
type reuseLists struct{ same, moved []byte }

// reuseLists are made once a plan; the result is shared, never changed.
func (p *Plan) reuseLists() reuseLists {
	p.lists.Do(func() { p.encodedLists = encodeReuseLists(p) })
	return p.encodedLists
}

func encodeReuseLists(p *Plan) reuseLists {
	var same, moved bytes.Buffer
	for _, r := range p.Reuse {
		if r.From == r.Entry.Path {
			same.WriteString(r.From + "\x00")
		} else {
			moved.WriteString(r.From + "\x00" + r.Entry.Path + "\x00")
		}
	}
	return reuseLists{gzipList(same.Bytes()), gzipList(moved.Bytes())}
}

// uploadHead is what upload.sh reads before the stream: a line with the
// byte counts of the two lists and of the manifest's delta (nil for none),
// then each.
func uploadHead(l reuseLists, delta []byte) []byte {
	return slices.Concat(fmt.Appendf(nil, "%d %d %d\n", len(l.same), len(l.moved), len(delta)), l.same, l.moved, delta)
}

// gzipList compresses a list of names for upload.sh (nothing stays
// nothing): tens of bytes a name, most of them repeated, are a fifth of
// what an incremental deploy of a large release sends, uncompressed.
func gzipList(list []byte) []byte {
	if len(list) == 0 {
		return nil
	}
	var b bytes.Buffer
	zw := fastGzips.Get().(*gzip.Writer) // compress.go
	defer fastGzips.Put(zw)
	zw.Reset(&b)
	zw.Write(list)
	zw.Close()
	return b.Bytes()
}

// tarShape says what a stream's names are, relative to the deploy root
// where it is extracted: top is the new release (releases/<id>); linkFrom
// the live release that hard-link entries point into ("": reused files
// are not in the stream); extras ride along at the end.
type tarShape struct {
	top, linkFrom string
	now           time.Time
	extras        []tarExtra
}

// errTarEnded is what the stream's writer sees when the command stopped
// reading first.
var errTarEnded = errors.New("tar ended")

// tarExtra is a file or symlink that rides along at the end of the
// stream: the links of seeded shared paths in the release, the release's
// manifest (or its delta) and the link the switch will rename, which
// saves their round trips.
type tarExtra struct {
	Name   string                 // relative to the deploy root
	Load   func() ([]byte, error) // a regular file's content, when Target is empty
	Target string                 // a symlink's target
}

// tarSize is about the size of the tar stream after its head, before
// compression: a header a member, and the uploaded files' content.
func (p *Plan) tarSize(shape tarShape) int64 {
	return int64(len(p.Upload)+len(shape.extras))*512 + p.UploadBytes
}

// streamBuffers batch the stream's small writes (tar headers, small
// files) into SSH packets; reused, as chunkBuffers (compress.go).
var streamBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 256<<10) }}

// writeTar writes the head (tarHead), then the files and the extras.
func (p *Plan) writeTar(w io.Writer, meter transport.LinkMeter, shape tarShape, st *uploadStats) error {
	now := shape.now
	head, err := p.tarHead(shape)
	if err != nil {
		return err
	}
	bw := streamBuffers.Get().(*bufio.Writer)
	bw.Reset(w)
	for _, r := range p.Reuse {
		st.reused.Add(1)
		st.reusedBytes.Add(r.Entry.Size)
	}
	// The head's gzip members first, then the rest: gzip'd or raw, as the
	// link shows (compress.go).
	zw := newAdaptiveGzip(bw, p.tarSize(shape), meter)
	if err := zw.writeGzipped(head); err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	// One copy buffer for the stream: io.Copy's own, new for each file,
	// was 32 KB to allocate and clear per file (160 MB for 5,000).
	buf := make([]byte, 32<<10)
	for _, e := range p.Upload {
		if err := writeTarFile(tw, shape.top+"/"+e.Path, e, now, &st.bytes, buf); err != nil {
			return err
		}
		st.files.Add(1)
	}
	for _, x := range shape.extras {
		if x.Target != "" {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: x.Name, Linkname: x.Target, Mode: 0o777, ModTime: now}); err != nil {
				return err
			}
			continue
		}
		data, err := x.Load()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: x.Name, Size: int64(len(data)), Mode: 0o644, ModTime: now}); err != nil {
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
	if err := bw.Flush(); err != nil {
		return err
	}
	// Only a stream that ended well gives its buffer back: after an error
	// the compressor's goroutines may still write to it.
	bw.Reset(nil)
	streamBuffers.Put(bw)
	return nil
}

// tarHeadKey is what a plan's tar head depends on besides the plan.
type tarHeadKey struct {
	top, linkFrom string
	now           int64
}

// tarHead is the start of the stream as a gzip member of its own: the
// release directory, its directories (in manifest order, parents before
// children), symlinks and, with linkFrom, hard links. It is the same for
// every host that shares the plan, so it is made once: compressing a
// large release's directory headers was a tenth of a fleet deploy's
// client CPU per host (bench/scale.sh).
func (p *Plan) tarHead(shape tarShape) ([]byte, error) {
	key := tarHeadKey{top: shape.top, linkFrom: shape.linkFrom, now: shape.now.UnixNano()}
	return p.head.get(key, func() ([]byte, error) {
		members := 1 + len(p.Dirs) + len(p.Symlinks)
		if shape.linkFrom != "" {
			members += len(p.Reuse)
		}
		var b bytes.Buffer
		zw, pooled := newFastGzip(&b, int64(members)*512) // compress.go
		if pooled != nil {
			defer fastGzips.Put(pooled)
		}
		tw := tar.NewWriter(zw)
		// No format is forced: plain USTAR headers wherever a name fits
		// (PAX only for long or non-ASCII names), which is most of a
		// stream of hard-link entries. Modification times are whole
		// seconds for that.
		hdr := func(h *tar.Header) error {
			h.ModTime = shape.now
			return tw.WriteHeader(h)
		}
		top := shape.top
		if err := hdr(&tar.Header{Typeflag: tar.TypeDir, Name: top + "/", Mode: 0o755}); err != nil {
			return nil, err
		}
		for _, d := range p.Dirs {
			if err := hdr(&tar.Header{Typeflag: tar.TypeDir, Name: top + "/" + d.Path + "/", Mode: int64(d.Mode)}); err != nil {
				return nil, err
			}
		}
		for _, s := range p.Symlinks {
			if err := hdr(&tar.Header{Typeflag: tar.TypeSymlink, Name: top + "/" + s.Path, Linkname: s.Target, Mode: 0o777}); err != nil {
				return nil, err
			}
		}
		if shape.linkFrom != "" {
			for _, r := range p.Reuse {
				link := shape.linkFrom + "/" + r.From
				if err := hdr(&tar.Header{Typeflag: tar.TypeLink, Name: top + "/" + r.Entry.Path, Linkname: link, Mode: int64(r.Entry.Mode)}); err != nil {
					return nil, err
				}
			}
		}
		// Flush, not Close: the end-of-archive blocks come after the rest.
		if err := tw.Flush(); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	})
}

func writeTarFile(tw *tar.Writer, name string, e *release.Entry, mtime time.Time, counter *atomic.Int64, buf []byte) error {
	r, err := e.Open()
	if err != nil {
		return fmt.Errorf("read %s: %w", e.Path, err)
	}
	defer r.Close()
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: e.Size, Mode: int64(e.Mode), ModTime: mtime}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	n, err := io.CopyBuffer(tw, &countingReader{r: io.LimitReader(r, e.Size), n: counter}, buf)
	if err != nil {
		return fmt.Errorf("read %s: %w", e.Path, err)
	}
	if n != e.Size {
		return fmt.Errorf("upload %s: the file changed on the runner while deploying (%d bytes, expected %d)", e.Path, n, e.Size)
	}
	return nil
}
