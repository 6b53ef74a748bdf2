package deploy

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
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

// uploader is how a release's files reach the server, chosen by Open from
// what the server can do: one tar stream (tarUpload, upload_tar.go) or
// pipelined requests (sftpUpload, upload_sftp.go).
type uploader interface {
	// begin logs the release as started and creates its directory, unless
	// send does both itself (one round trip less).
	begin(ctx context.Context, started Record) error
	// send writes plan into the release directory. It reports whether it
	// stored the release's manifest too (every mtime was known before it
	// sent anything); if not, a scan finds them.
	send(ctx context.Context, plan *Plan, started Record, st *uploadStats) (manifestStored bool, err error)
}

// transfer sends the plan with the host's uploader and reports progress
// while it runs.
func (h *Host) transfer(ctx context.Context, plan *Plan, started Record) (manifestStored bool, err error) {
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
	manifestStored, err = h.upload.send(ctx, plan, started, &st)
	close(stop)
	wg.Wait()
	h.Stats = Stats{FilesUploaded: int(st.files.Load()), FilesReused: int(st.reused.Load()), BytesUploaded: st.bytes.Load(), BytesReused: st.reusedBytes.Load()}
	if err != nil {
		return false, fmt.Errorf("upload to %s: %w", h.L.Release(h.ReleaseID), err)
	}
	return manifestStored, nil
}

// liveDir is the live release's directory, which reused files come from
// ("" when there is none).
func (h *Host) liveDir() string {
	if h.root.currentID == "" {
		return ""
	}
	return h.L.Release(h.root.currentID)
}
