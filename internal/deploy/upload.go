package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/shell"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

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
	streamed                          atomic.Bool // the whole tar stream was handed to the command
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

// upload writes the plan into dir, as one tar stream where the server has
// GNU tar (returning the mtime each file got, by entry) or over pipelined
// SFTP (returning nil: a scan finds the mtimes).
func (h *Host) upload(ctx context.Context, plan *Plan, dir string, started Record) (map[*release.Entry]int64, error) {
	var st uploadStats
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if h.S.ProgressEvery > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(h.S.ProgressEvery)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					h.Log.Progress(Progress{Host: h.Name,
						FilesDone: st.files.Load() + st.reused.Load(), FilesTotal: int64(len(plan.Upload) + len(plan.Reuse)),
						BytesDone: st.bytes.Load(), BytesTotal: plan.UploadBytes, Elapsed: time.Since(start)})
				}
			}
		}()
	}
	prevDir := ""
	if h.CurrentID != "" {
		prevDir = h.L.Release(h.CurrentID)
	}
	parallel := h.S.Parallel
	if parallel < 1 {
		parallel = 64
	}
	var mtimes map[*release.Entry]int64
	var err error
	if h.gnuTar {
		// Every mtime is known before anything is sent, so the manifest and
		// the link for the switch travel in the same stream.
		now := time.Now().Truncate(time.Second) // what a tar header carries exactly
		mtimes = make(map[*release.Entry]int64, len(plan.Upload)+len(plan.Reuse))
		for _, e := range plan.Upload {
			mtimes[e] = now.UnixNano()
		}
		for _, r := range plan.Reuse {
			mtimes[r.Entry] = r.FromMTime
		}
		// The manifest goes last; it is encoded while the stream flows. With
		// a previous manifest on the server, only a delta against it goes.
		type encoded struct {
			data, delta []byte
			err         error
		}
		useDelta := h.prevLines != nil
		manifest := make(chan encoded, 1)
		go func() {
			var enc encoded
			enc.data, enc.err = h.encodeManifest(func(e *release.Entry) int64 { return mtimes[e] })
			if enc.err == nil && useDelta {
				var d *manifestDelta
				if d, enc.err = makeManifestDelta(enc.data, h.prevLines); enc.err == nil {
					enc.delta = d.file()
				}
			}
			manifest <- enc
		}()
		h.nextLink = path.Join(h.L.Root, tempLinkPrefix+randomToken())
		line, _ := json.Marshal(started)
		logFirst := shell.Command("printf", `%s\n`, string(line)) + " >> " + shell.Quote(h.L.Log()) + " || exit 1;"
		manifestExtra := tarExtra{Name: h.L.Manifest(h.ReleaseID), Load: func() ([]byte, error) { m := <-manifest; manifest <- m; return m.data, m.err }}
		after := ""
		if useDelta {
			delta := path.Join(h.L.Manifests(), h.ReleaseID+".delta")
			manifestExtra = tarExtra{Name: delta, Load: func() ([]byte, error) { m := <-manifest; manifest <- m; return m.delta, m.err }}
			after = applyDeltaCommand(h.L.Manifest(h.CurrentID), delta, h.L.Manifest(h.ReleaseID))
		}
		switchCmd := ""
		if h.switchInUpload {
			switchCmd = h.switchCommand()
			if after != "" {
				after += "; "
			}
			after += switchCmd
		}
		err = plan.executeTar(ctx, h.T, dir, prevDir, now, logFirst, after, []tarExtra{
			manifestExtra,
			{Name: h.nextLink, Target: currentTarget(h.ReleaseID)},
		}, &st)
		exit := (*transport.ExitError)(nil)
		switch {
		case switchCmd == "":
		case err == nil:
			h.switchedNow()
			h.recorded = h.recordInUpload
		case errors.As(err, &exit):
			// The command ended on the server: it switched only if it says
			// so; otherwise it stopped before (tar, the manifest: 86) or at
			// the switch (87), which Activate then makes as it would have.
			switch exit.Status {
			case exitSwitchedNotRecorded:
				h.switchedNow()
				err = nil
			case exitNotSwitched:
				err = nil
			}
		case !st.streamed.Load():
			// The stream did not go out whole: tar cannot have finished,
			// so the command cannot have switched.
		default:
			// The answer was lost (a dropped connection, a cancelled job):
			// the command may have switched, or may still, while the lock
			// holder lives. Its release is complete by then, and it stays
			// (Abort keeps it: it may have served requests, or be about
			// to); where it is live and there is a previous release, that
			// goes back, so the deploy fails as a whole.
			h.keep = true
			live, lerr := h.liveID(context.WithoutCancel(ctx))
			switch {
			case lerr != nil || live != h.ReleaseID:
			case h.CurrentID == "":
				h.switchedNow()
				err = fmt.Errorf("%w; %s went live before that, and there is no previous release to go back to", err, h.ReleaseID)
			default:
				if rerr := h.switchTo(context.WithoutCancel(ctx), h.CurrentID); rerr != nil {
					h.switchedNow()
					err = fmt.Errorf("%w; it switched to %s before that, and switching back failed: %v", err, h.ReleaseID, rerr)
				} else {
					err = fmt.Errorf("%w; it had switched to %s, and current is back on %s", err, h.ReleaseID, h.CurrentID)
				}
			}
		}
		if errors.As(err, &exit) && exit.Status == exitManifestDelta {
			// Rebuilding the manifest from the delta went wrong (another
			// awk?): store it whole instead.
			m := <-manifest
			if err = h.T.WriteFile(ctx, h.L.Manifest(h.ReleaseID), m.data, 0o644); err != nil {
				err = fmt.Errorf("store manifest: %w", err)
			} else {
				h.Log.Infof("%s: stored the manifest whole (rebuilding it from the previous one on the server failed)", h.Name)
			}
		}
	} else {
		err = plan.execute(ctx, h.T, dir, prevDir, parallel, &st)
	}
	close(stop)
	wg.Wait()
	h.Stats = Stats{FilesUploaded: int(st.files.Load()), FilesReused: int(st.reused.Load()), BytesUploaded: st.bytes.Load(), BytesReused: st.reusedBytes.Load()}
	if err != nil {
		return nil, fmt.Errorf("upload to %s: %w", dir, err)
	}
	return mtimes, nil
}
