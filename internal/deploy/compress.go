package deploy

import (
	"io"
	"runtime"
	"time"

	"github.com/klauspost/pgzip"
)

// The upload stream is gzip'd while compressing pays: while the link,
// not this machine, holds the upload back. Once probeBytes have gone into
// it, the stream looks at how much of the time went waiting for the link
// (writes that block until the SSH session takes them): where that is
// little, the link waits for the compressor, and the rest of the stream
// goes as gzip members of stored blocks (no compression, a CRC only;
// gzip -d reads one member after the other as one stream). A fast link,
// or a far end on the same machine, then gets the bytes as fast as tar
// makes them, and a slow one still gets them compressed.
const (
	probeBytes = 8 << 20
	// linkBound is the share of the time spent waiting for the link above
	// which compressing is worth it.
	linkBound = 0.25
)

// adaptiveGzip is the stream's compressor (see above).
type adaptiveGzip struct {
	link    *timedWriter
	zw      *pgzip.Writer
	in      int64
	start   time.Time
	decided bool
	stored  bool // switched to stored blocks
}

func newAdaptiveGzip(w io.Writer) *adaptiveGzip {
	link := &timedWriter{w: w}
	return &adaptiveGzip{link: link, zw: newGzip(link, pgzip.BestSpeed), start: time.Now()}
}

// newGzip compresses blocks of 1 MB on every core at once (one gzip
// member, as gzip -d expects): compression is most of the runner's work.
func newGzip(w io.Writer, level int) *pgzip.Writer {
	zw, _ := pgzip.NewWriterLevel(w, level)
	zw.SetConcurrency(1<<20, runtime.GOMAXPROCS(0))
	return zw
}

func (a *adaptiveGzip) Write(p []byte) (int, error) {
	n, err := a.zw.Write(p)
	a.in += int64(n)
	if err != nil || a.decided || a.in < probeBytes {
		return n, err
	}
	a.decided = true
	// What was compressed so far goes out first, so that the waits are
	// those of the link.
	if err := a.zw.Flush(); err != nil {
		return n, err
	}
	if elapsed := time.Since(a.start); a.link.blocked < time.Duration(float64(elapsed)*linkBound) {
		if err := a.zw.Close(); err != nil {
			return n, err
		}
		a.zw, a.stored = newGzip(a.link, pgzip.NoCompression), true
	}
	return n, nil
}

func (a *adaptiveGzip) Close() error { return a.zw.Close() }

// timedWriter adds up the time its writes take: on a pipe to the SSH
// session, how long the stream waited for the link.
type timedWriter struct {
	w       io.Writer
	blocked time.Duration
}

func (t *timedWriter) Write(p []byte) (int, error) {
	start := time.Now()
	n, err := t.w.Write(p)
	t.blocked += time.Since(start)
	return n, err
}
