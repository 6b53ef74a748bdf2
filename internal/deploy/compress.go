package deploy

import (
	"bufio"
	"io"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/pgzip"
)

// The upload stream is gzip'd while compressing pays: while the link,
// not this machine, holds the upload back. What the link holds back shows
// as writes that wait until the SSH session takes them, but only once the
// buffers in between are full: the server's SSH window (2 MB at OpenSSH's
// default) takes the first megabytes at once however slow the link is.
// So the stream watches the compressed bytes after fillBytes, for
// probeBytes more (long enough that a moment of CPU taken by something
// else, a login shell starting on the server, does not decide): where little of that time went waiting, the link waits
// for the compressor, and the rest of the stream goes raw. A fast link,
// or a far end on the same machine, then gets the bytes as fast as tar
// makes them, and a slow one still gets them compressed.
//
// Raw, not gzip's stored blocks: gzip -d takes ~5 ms of the server's CPU
// a MB even of stored blocks (its CRC), on one core, which held a fast
// link's initial deploy to ~200 MB/s. So the stream is framed for
// upload.sh: the gzip'd part as chunks ("<n>\n" and n bytes of gzip
// members, a chunk at least chunkBytes but the last, so a chunk costs
// upload.sh one head(1) a MB at most), "0\n" to end it, then the rest of
// the tar stream as it is, to the end of the input.
const (
	fillBytes  = 3 << 20
	probeBytes = 4 << 20
	// linkBound is the share of the time spent waiting for the link above
	// which compressing is worth it.
	linkBound = 0.25
	// chunkBytes is the gzip'd part's chunk size.
	chunkBytes = 1 << 20
)

// adaptiveGzip is the stream's compressor and framer (see above).
type adaptiveGzip struct {
	link    *timedWriter
	chunks  *bufio.Writer // the gzip'd part, framed into link
	zw      io.WriteCloser
	pooled  *gzip.Writer // zw, when it came from fastGzips
	decided bool
	raw     bool // compressing did not pay: the rest goes as it is
}

// newAdaptiveGzip compresses a stream of about size bytes into w.
func newAdaptiveGzip(w io.Writer, size int64) *adaptiveGzip {
	link := &timedWriter{w: w, fill: fillBytes, probe: probeBytes}
	chunks := chunkBuffers.Get().(*bufio.Writer)
	chunks.Reset(chunkWriter{link})
	zw, pooled := newFastGzip(chunks, size)
	return &adaptiveGzip{link: link, chunks: chunks, zw: zw, pooled: pooled}
}

// writeGzipped puts gzip members made ahead (the tar head) into the
// gzip'd part, before anything is written.
func (a *adaptiveGzip) writeGzipped(members []byte) error {
	_, err := a.chunks.Write(members)
	return err
}

// chunkBuffers are the gzip'd part's buffers, reused: a fleet's client
// makes a stream per host, and a new MB per host was ~4 % of its CPU at
// 100 hosts (clearing fresh pages) and a third of its peak RSS
// (bench/scale.sh).
var chunkBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, chunkBytes) }}

// chunkWriter frames what it is given as one chunk.
type chunkWriter struct{ w io.Writer }

func (c chunkWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if _, err := io.WriteString(c.w, strconv.Itoa(len(p))+"\n"); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// newFastGzip compresses about size bytes into w at BestSpeed: with a
// pooled writer (also returned, for fastGzips.Put after Close) for one
// block, on every core for more. One block has nothing to spread over
// cores: a deploy that changes a few files sends little, and a new
// parallel compressor's buffers and state per host were a tenth of a
// fleet's client's CPU (bench/scale.sh).
func newFastGzip(w io.Writer, size int64) (zw io.WriteCloser, pooled *gzip.Writer) {
	if size < gzipBlock {
		pooled = fastGzips.Get().(*gzip.Writer)
		pooled.Reset(w)
		return pooled, pooled
	}
	return newGzip(w, pgzip.BestSpeed), nil
}

// gzipBlock is what one core compresses at a time in a large stream.
const gzipBlock = 1 << 20

// newGzip compresses blocks on every core at once (one gzip member, as
// gzip -d expects): compression is most of the runner's work.
func newGzip(w io.Writer, level int) *pgzip.Writer {
	zw, _ := pgzip.NewWriterLevel(w, level)
	zw.SetConcurrency(gzipBlock, runtime.GOMAXPROCS(0))
	return zw
}

// fastGzips are gzip writers at BestSpeed for small streams and lists,
// reused: each holds a few hundred KB of compressor state.
var fastGzips = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return zw
}}

// closeGzip closes the compressor and returns a pooled one to its pool.
func (a *adaptiveGzip) closeGzip() error {
	err := a.zw.Close()
	if a.pooled != nil {
		fastGzips.Put(a.pooled)
		a.pooled = nil
	}
	return err
}

func (a *adaptiveGzip) Write(p []byte) (int, error) {
	if a.raw {
		return a.link.Write(p)
	}
	n, err := a.zw.Write(p)
	if err != nil || a.decided {
		return n, err
	}
	waited, measured := a.link.waited()
	if !measured {
		return n, nil
	}
	a.decided = true
	if waited < linkBound {
		a.raw = true
		return n, a.endGzipped()
	}
	return n, nil
}

// endGzipped ends the gzip'd part: what follows goes raw.
func (a *adaptiveGzip) endGzipped() error {
	err := a.closeGzip()
	if err == nil {
		err = a.chunks.Flush()
	}
	if err == nil {
		_, err = io.WriteString(a.link, "0\n")
	}
	if err == nil {
		a.chunks.Reset(nil)
		chunkBuffers.Put(a.chunks)
	}
	a.zw, a.chunks = nil, nil
	return err
}

// Close ends the stream; the compressor is not used again.
func (a *adaptiveGzip) Close() error {
	if a.raw {
		return nil
	}
	return a.endGzipped()
}

// timedWriter measures, over the probe bytes written after the fill
// bytes, the share of the time its writes spent waiting: on a pipe to the
// SSH session, waiting for the link. The compressor writes from its own
// goroutine, hence the lock.
type timedWriter struct {
	w           io.Writer
	fill, probe int64

	mu      sync.Mutex
	written int64
	start   time.Time     // when written passed fill
	blocked time.Duration // time in writes since start
	share   float64       // blocked / elapsed once the probe is done
	done    bool
}

func (t *timedWriter) Write(p []byte) (int, error) {
	begin := time.Now()
	n, err := t.w.Write(p)
	end := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.done:
	case t.start.IsZero():
		if t.written+int64(n) >= t.fill {
			t.start = end
		}
	default:
		t.blocked += end.Sub(begin)
		if t.written+int64(n) >= t.fill+t.probe {
			t.share, t.done = float64(t.blocked)/float64(end.Sub(t.start)), true
		}
	}
	t.written += int64(n)
	return n, err
}

// waited is the share of the probe's time spent waiting for the link,
// once the probe is done.
func (t *timedWriter) waited() (share float64, done bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.share, t.done
}
