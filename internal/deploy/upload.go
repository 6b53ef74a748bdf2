package deploy

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
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
		mtimes, err = h.uploadTar(ctx, plan, dir, prevDir, started, &st)
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
