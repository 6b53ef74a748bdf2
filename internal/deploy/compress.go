package deploy

import (
	"bufio"
	"io"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/pgzip"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// The upload stream is gzip'd while compressing pays: while the link,
// not this machine, holds the upload back. What the link holds back shows
// as writes that wait until the SSH session takes them, but only once the
// buffers in between are full: the server's SSH window (2 MB at OpenSSH's
// default) takes the first megabytes at once however slow the link is.
// So the stream watches the compressed bytes after a fill, for a probe's
// more (long enough that a moment of CPU taken by something else, a login
// shell starting on the server, does not decide): where little of that
// time went waiting, the link waits for the compressor, and the rest of
// the stream goes raw. A fast link, or a far end on the
// same machine, then gets the bytes as fast as tar makes them, and a slow
// one still gets them compressed.
//
// The writes also wait where the far end's gzip -d is what holds the
// stream back (one core, shared there with sshd and tar: ~20 MB/s of
// compressed bytes on the bench's server, unshaped or at 1 Gbit), and raw
// bytes would go faster. So a compressed stream that went faster than a
// floor while it waited is probed again raw (a fill, then a probe), and
// the rest goes the way that moved more of the tar stream a second: the
// compressed bytes' rate times the compression ratio so far, or the raw
// bytes'. Below the floor the link is 100 Mbit
// or slower, where raw bytes cannot win and their probe would cost ~0.4 s.
//
// Where the link can say how busy it was (transport.LinkMeter: Linux's
// count of the time its socket had bytes to send or in flight), that
// decides sooner, over the second and third MB: a link busy for a share
// b of the time at this pace has room for the raw bytes (the compression
// ratio r times more) when b·r < 1, and the rest goes raw at once. Past
// the SSH window a slow link is busy all the time; an idle one with
// writes that wait is held back by the far end (its gzip -d, one core
// shared with sshd and tar), which raw bytes relieve. Where it has no
// such room by that count but was idle half the time or more, the raw
// bytes are probed at once, whatever the floor: the writes waited while
// the link was idle, so the far end held them back, and its acks wait
// for a CPU that its gzip -d keeps busy, which counts as busy time too
// (on the bench's two shared cores an unshaped link read 0.27–0.51 busy,
// the compressed bytes held to 7–11 MB/s, where raw went faster). Where
// it was busier, or nothing says, the probe goes on as above: a link of
// a long round trip is busy while it waits for acknowledgements, not
// only while it is full.
//
// Raw, not gzip's stored blocks: gzip -d takes ~5 ms of the server's CPU
// a MB even of stored blocks (its CRC), on one core, which held a fast
// link's initial deploy to ~200 MB/s. So the stream is framed for
// upload.sh (unframe) as segments, each a line naming its kind and then
// its body: "z", gzip members as chunks ("<n>\n" and n bytes, a chunk at
// least a MB but the last, so a chunk costs upload.sh one head(1) a MB at
// most) ended by "0\n"; "r", raw bytes in chunks the same way; "R",
// the rest of the stream as it is, to the end of the input.
const (
	// linkBound is the share of the time spent waiting for the link above
	// which compressing is worth it.
	linkBound = 0.25
	// farEndBound is the link's busy share under which the raw bytes are
	// probed at once where the busy time alone finds no room for them
	// (see above).
	farEndBound = 0.5
	// chunkBytes is a chunk's size.
	chunkBytes = 1 << 20
)

// linkProbe is how a stream times its link (see above): a value, so that
// tests can scale it down to links far slower than their compressor.
type linkProbe struct {
	fill, probe       int64   // compressed bytes before the timing, and timed
	rawFill, rawProbe int64   // the raw probe's, the same way
	rawFloor          float64 // compressed bytes a second above which raw is probed
	busyFrom, busyTo  int64   // compressed bytes over which the link's busy time counts
	chunk             int     // a chunk's size
}

// uploadProbe is the upload's. The raw fill passes the compressed bytes
// still in the buffers before three chunks are timed; the floor is a
// little over what 100 Mbit carries.
var uploadProbe = linkProbe{fill: 3 << 20, probe: 4 << 20, rawFill: 3 << 20, rawProbe: 3 << 20, rawFloor: 15e6, busyFrom: 1 << 20, busyTo: 3 << 20, chunk: chunkBytes}

// streamPhase is where an adaptiveGzip stream is.
type streamPhase int

const (
	gzipProbe streamPhase = iota // compressed, the link timed
	rawProbe                     // raw chunks, the link timed again
	gzipRest                     // compressed to the end
	rawRest                      // raw to the end
)

// adaptiveGzip is the stream's compressor and framer (see above).
type adaptiveGzip struct {
	link       *timedWriter
	chunks     *bufio.Writer // the segment's chunks, framed into link
	zw         io.WriteCloser
	pooled     *gzip.Writer // zw, when it came from fastGzips
	size       int64        // the stream's estimated size
	probe      linkProbe
	phase      streamPhase
	started    bool         // the first segment's kind is written
	head       int64        // gzip'd bytes written ahead of the stream (writeGzipped)
	compressed atomic.Int64 // what the compressor made of it (the link's timing reads it)
	written    atomic.Int64 // of the tar stream, by Write (the link's timing reads it)
	// gzipRate is the tar stream's bytes a second while it went
	// compressed, for the raw probe to beat (0: no raw probe).
	gzipRate float64
}

// newAdaptiveGzip compresses a stream of about size bytes into w, over a
// link that meter may say how busy it was (nil where nothing does).
func newAdaptiveGzip(w io.Writer, size int64, meter transport.LinkMeter) *adaptiveGzip {
	return newProbedGzip(w, size, meter, uploadProbe)
}

// newProbedGzip is newAdaptiveGzip timing the link with p.
func newProbedGzip(w io.Writer, size int64, meter transport.LinkMeter, p linkProbe) *adaptiveGzip {
	a := &adaptiveGzip{size: size, probe: p}
	a.link = &timedWriter{w: w, fill: p.fill, probe: p.probe, meter: meter, source: &a.written, made: &a.compressed, busyFrom: p.busyFrom, busyTo: p.busyTo, busyShare: -1}
	if p.chunk == chunkBytes {
		a.chunks = chunkBuffers.Get().(*bufio.Writer)
		a.chunks.Reset(chunkWriter{a.link})
	} else {
		a.chunks = bufio.NewWriterSize(chunkWriter{a.link}, p.chunk)
	}
	a.zw, a.pooled = newFastGzip(countingWriter{a.chunks, &a.compressed}, size)
	return a
}

// start writes the first segment's kind, before anything else.
func (a *adaptiveGzip) start() error {
	if a.started {
		return nil
	}
	a.started = true
	_, err := io.WriteString(a.link, "z\n")
	return err
}

// writeGzipped puts gzip members made ahead (the tar head) into the
// first segment, gzip'd, before anything is written.
func (a *adaptiveGzip) writeGzipped(members []byte) error {
	if err := a.start(); err != nil {
		return err
	}
	// A head larger than the fill (`reuse: hardlink` has a header for
	// every reused file there, megabytes compressed ahead) is not what the
	// link is timed by: the timing starts after it. A smaller one is in
	// the fill anyway, and moving the fill by it would move the timing a
	// whole chunk later.
	a.head = int64(len(members))
	if a.head >= a.probe.fill {
		a.link.after(a.head)
	}
	_, err := a.chunks.Write(members)
	return err
}

// chunkBuffers are the segments' buffers, reused: a fleet's client
// makes a stream per host, and a new MB per host was ~4 % of its CPU at
// 100 hosts (clearing fresh pages) and a third of its peak RSS
// (bench/scale.sh).
var chunkBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, chunkBytes) }}

// countingWriter counts what it passes on to w.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

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
		a.pooled.Reset(io.Discard) // the pool must not keep this stream alive
		fastGzips.Put(a.pooled)
		a.pooled = nil
	}
	a.zw = nil
	return err
}

func (a *adaptiveGzip) Write(p []byte) (int, error) {
	if err := a.start(); err != nil {
		return 0, err
	}
	switch a.phase {
	case rawRest:
		return a.link.Write(p)
	case rawProbe:
		n, err := a.chunks.Write(p)
		a.written.Add(int64(n))
		if err != nil {
			return n, err
		}
		if _, rate, measured := a.link.measured(); measured {
			return n, a.afterRawProbe(rate)
		}
		return n, nil
	}
	n, err := a.zw.Write(p)
	a.written.Add(int64(n))
	if err != nil || a.phase != gzipProbe {
		return n, err
	}
	switch busy, ratio, rate := a.link.busy(); {
	case busy < 0: // not known (yet)
	case busy*ratio < 1:
		return n, a.next(rawRest)
	case busy < farEndBound && rate > 0:
		a.gzipRate = rate
		return n, a.next(rawProbe)
	}
	if share, rate, measured := a.link.measured(); measured {
		return n, a.afterGzipProbe(share, rate)
	}
	return n, nil
}

// afterGzipProbe goes on from the compressed probe: raw where the link
// waited for the compressor, raw for a probe where the compressed bytes
// went fast all the same, compressed to the end otherwise.
func (a *adaptiveGzip) afterGzipProbe(share, rate float64) error {
	switch {
	case share < linkBound:
		return a.next(rawRest)
	case rate < a.probe.rawFloor:
		a.phase = gzipRest
		return nil
	}
	if err := a.next(rawProbe); err != nil {
		return err
	}
	// The compression ratio, now that all of it is out of the compressor
	// (the head's members and the framing are a few KB of it).
	a.gzipRate = rate * float64(a.written.Load()) / float64(max(1, a.link.total()-a.head))
	return nil
}

// afterRawProbe goes on raw or compressed, whichever moved the tar
// stream faster.
func (a *adaptiveGzip) afterRawProbe(rate float64) error {
	if rate >= a.gzipRate {
		return a.next(rawRest)
	}
	return a.next(gzipRest)
}

// next ends the segment and starts the phase's.
func (a *adaptiveGzip) next(phase streamPhase) error {
	if err := a.endSegment(); err != nil {
		return err
	}
	a.phase = phase
	switch phase {
	case rawProbe:
		a.link.restart(a.probe.rawFill, a.probe.rawProbe)
		_, err := io.WriteString(a.link, "r\n")
		return err
	case gzipRest:
		// Past two probes, the rest is large whatever the estimate says.
		a.zw, a.pooled = newFastGzip(countingWriter{a.chunks, &a.compressed}, max(a.size-a.written.Load(), gzipBlock))
		_, err := io.WriteString(a.link, "z\n")
		return err
	}
	a.releaseChunks()
	_, err := io.WriteString(a.link, "R\n")
	return err
}

// releaseChunks gives a pooled chunk buffer back, once the stream is past
// its chunks.
func (a *adaptiveGzip) releaseChunks() {
	if a.chunks.Size() == chunkBytes {
		a.chunks.Reset(nil)
		chunkBuffers.Put(a.chunks)
	}
	a.chunks = nil
}

// endSegment ends a chunked segment: the compressor's last bytes, the
// buffer's, and the end of the chunks.
func (a *adaptiveGzip) endSegment() error {
	if a.zw != nil {
		if err := a.closeGzip(); err != nil {
			return err
		}
	}
	if err := a.chunks.Flush(); err != nil {
		return err
	}
	_, err := io.WriteString(a.link, "0\n")
	return err
}

// Close ends the stream; the compressor is not used again.
func (a *adaptiveGzip) Close() error {
	if err := a.start(); err != nil {
		return err
	}
	if a.phase == rawRest {
		return nil
	}
	if err := a.endSegment(); err != nil {
		return err
	}
	a.releaseChunks()
	return nil
}
