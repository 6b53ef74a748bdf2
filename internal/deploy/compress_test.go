package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// slowLink takes bytes at bytesPerMs, after taking the first buffered
// bytes at once (as the server's SSH window does).
type slowLink struct {
	buf        bytes.Buffer
	buffered   int
	bytesPerMs int
}

func (s *slowLink) Write(p []byte) (int, error) {
	free := max(0, min(len(p), s.buffered-s.buf.Len()))
	time.Sleep(time.Duration((len(p)-free)*1000/s.bytesPerMs) * time.Microsecond)
	return s.buf.Write(p)
}

// farEnd takes the stream as upload.sh would where its gzip -d, not the
// link, holds it back: gzip'd chunks at zBytesPerMs, raw bytes at
// rawBytesPerMs (it reads the framing as it comes).
type farEnd struct {
	buf                        bytes.Buffer
	zBytesPerMs, rawBytesPerMs int
	kind                       byte // the segment's: 'z', 'r' or 'R'; 0 between segments
	line                       []byte
	body                       int // what is left of the chunk
}

func (f *farEnd) Write(p []byte) (int, error) {
	var z, raw int
	for i := 0; i < len(p); {
		switch {
		case f.kind == 'R':
			raw += len(p) - i
			i = len(p)
		case f.body > 0:
			n := min(f.body, len(p)-i)
			if f.kind == 'z' {
				z += n
			} else {
				raw += n
			}
			f.body -= n
			i += n
		case p[i] != '\n':
			f.line = append(f.line, p[i])
			i++
		default:
			i++
			switch line := string(f.line); {
			case f.kind == 0:
				f.kind = line[0]
			case line == "0":
				f.kind = 0
			default:
				f.body, _ = strconv.Atoi(line)
			}
			f.line = f.line[:0]
		}
	}
	time.Sleep(time.Duration(z*1000/f.zBytesPerMs+raw*1000/f.rawBytesPerMs) * time.Microsecond)
	return f.buf.Write(p)
}

// busyLink is a link meter that finds the link busy for that share of
// the time.
func busyLink(share float64) transport.LinkMeter {
	return &shareMeter{start: time.Now(), share: share}
}

type shareMeter struct {
	start time.Time
	share float64
}

func (m *shareMeter) LinkBusy() (time.Duration, bool) {
	return time.Duration(float64(time.Since(m.start)) * m.share), true
}

// unframe is what upload.sh makes of a stream (its unframe): the
// segments' bytes, the gzip'd ones decompressed.
func unframe(t *testing.T, stream io.Reader) []byte {
	t.Helper()
	br := bufio.NewReader(stream)
	var out bytes.Buffer
	for {
		kind, err := br.ReadString('\n')
		switch {
		case err == io.EOF && kind == "":
			return out.Bytes()
		case kind == "R\n":
			io.Copy(&out, br)
			return out.Bytes()
		case kind == "r\n":
			out.Write(readChunks(t, br))
		case kind == "z\n":
			zr, err := gzip.NewReader(bytes.NewReader(readChunks(t, br))) // member after member
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(&out, zr); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("a segment's kind is %q (%v)", kind, err)
		}
	}
}

// readChunks reads a segment's chunks, up to "0".
func readChunks(t *testing.T, br *bufio.Reader) []byte {
	t.Helper()
	var body bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("a segment has no end (%v)", err)
		}
		n, err := strconv.Atoi(strings.TrimSuffix(line, "\n"))
		if err != nil || n < 0 {
			t.Fatalf("a chunk's size is %q", line)
		}
		if n == 0 {
			return body.Bytes()
		}
		if _, err := io.CopyN(&body, br, int64(n)); err != nil {
			t.Fatalf("a chunk is cut short: %v", err)
		}
	}
}

// The stream stays compressed where the link holds it back, even behind
// a buffer that takes the first megabytes at once, and goes raw where
// the compressor would; either way upload.sh gets the bytes back.
func TestAdaptiveGzip(t *testing.T) {
	// Like PHP source: gzip -1 takes it to a third.
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"namespace ", "function ", "return ", "$this->", "array(", "public ", "static ", "\n", "if (", ") {\n"}
	var src bytes.Buffer
	for src.Len() < 32<<20 {
		src.WriteString(words[rng.IntN(len(words))])
		if rng.IntN(4) == 0 {
			fmt.Fprintf(&src, "%x", rng.Uint32())
		}
	}
	// The fast link has its room from the start: growing a buffer of
	// megabytes while the clock runs would count as waiting for the link.
	fastLink := func() *slowLink {
		l := &slowLink{bytesPerMs: 1 << 40}
		l.buf.Grow(src.Len() + src.Len()/8)
		return l
	}
	// The raw probe's cases time links a tenth as fast as the upload's
	// probe is made for, for a tenth as long: so much slower than the
	// compressor, even on a machine busy with other tests, that only the
	// link is measured.
	// They send 4 MB, estimated below a MB: one compressor, whose output
	// follows its input (the parallel one's blocks of a MB would hold most
	// of so small a stream until it ends).
	slowProbe := linkProbe{fill: 300 << 10, probe: 400 << 10, rawFill: 300 << 10, rawProbe: 300 << 10, rawFloor: 1.5e6, busyFrom: 100 << 10, busyTo: 300 << 10, chunk: 100 << 10}
	// A tar head larger than the probe at that scale, compressed ahead (reuse:
	// hardlink has a header for every reused file there): incompressible,
	// as gzip'd headers are.
	noise := make([]byte, 2<<20)
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	var bigHead bytes.Buffer
	hw, _ := gzip.NewWriterLevel(&bigHead, gzip.NoCompression)
	hw.Write(noise)
	hw.Close()
	for _, c := range []struct {
		name      string
		link      interface{ Write([]byte) (int, error) }
		size      int64      // the stream's estimated size
		probe     *linkProbe // the upload's when nil
		head      []byte
		probedRaw bool
		end       streamPhase
		meter     transport.LinkMeter // nil: the link's busy time is not known
	}{
		{"fast link: raw once compressing holds it back", fastLink(), int64(src.Len()), nil, nil, false, rawRest, nil},
		{"fast link, a stream far larger than estimated: raw all the same", fastLink(), 10 << 10, nil, nil, false, rawRest, nil},
		{"slow link: compressed throughout", &slowLink{bytesPerMs: 10 << 10}, int64(src.Len()), nil, nil, false, gzipRest, nil},
		{"slow link behind an SSH window: compressed throughout", &slowLink{buffered: 2 << 20, bytesPerMs: 10 << 10}, int64(src.Len()), nil, nil, false, gzipRest, nil},
		{"slow link, a stream far larger than estimated: compressed throughout", &slowLink{bytesPerMs: 10 << 10}, 10 << 10, nil, nil, false, gzipRest, nil},
		{"gzip -d holds the stream back and raw bytes go faster: raw after a raw probe", &farEnd{zBytesPerMs: 2 << 10, rawBytesPerMs: 20 << 10}, 512 << 10, &slowProbe, nil, true, rawRest, nil},
		{"a link a little faster than the floor: compressed again after a raw probe", &slowLink{buffered: 200 << 10, bytesPerMs: 1800}, 512 << 10, &slowProbe, nil, true, gzipRest, nil},
		{"the same after a large head: the link is timed after it", &slowLink{buffered: 200 << 10, bytesPerMs: 1800}, 512 << 10, &slowProbe, bigHead.Bytes(), true, gzipRest, nil},
		// Where the link says how busy it was, that decides, early: raw
		// where it has room for the raw bytes, and nothing else changes.
		{"gzip -d holds the stream back, the link idle: raw once the link says so", &farEnd{zBytesPerMs: 1 << 10, rawBytesPerMs: 20 << 10}, 512 << 10, &slowProbe, nil, false, rawRest, busyLink(0.1)},
		{"the same, the link busy: compressed throughout", &farEnd{zBytesPerMs: 1 << 10, rawBytesPerMs: 20 << 10}, 512 << 10, &slowProbe, nil, false, gzipRest, busyLink(0.9)},
		{"the same, the link's busy time not known: compressed throughout", &farEnd{zBytesPerMs: 1 << 10, rawBytesPerMs: 20 << 10}, 512 << 10, &slowProbe, nil, false, gzipRest, nil},
		{"a slow link behind an SSH window, busy: compressed throughout", &slowLink{buffered: 200 << 10, bytesPerMs: 1 << 10}, 512 << 10, &slowProbe, nil, false, gzipRest, busyLink(1)},
		{"a kernel that does not count the busy time (0 after megabytes): compressed throughout", &farEnd{zBytesPerMs: 1 << 10, rawBytesPerMs: 20 << 10}, 512 << 10, &slowProbe, nil, false, gzipRest, busyLink(0)},
		{"a large head, then a link a little faster than the floor that says it is busy: as without the meter", &slowLink{buffered: 200 << 10, bytesPerMs: 1800}, 512 << 10, &slowProbe, bigHead.Bytes(), true, gzipRest, busyLink(0.9)},
		// Idle half the time, with no room by the count (acks that wait for
		// a busy CPU count as busy time): a raw probe at once, whatever the
		// floor, and the faster way after it.
		{"gzip -d holds the stream back, the link idle half the time: raw after an early raw probe", &farEnd{zBytesPerMs: 1 << 10, rawBytesPerMs: 20 << 10}, 512 << 10, &slowProbe, nil, true, rawRest, busyLink(0.45)},
		{"a link a little faster than the floor, idle half the time by the count: compressed again after the early raw probe", &slowLink{buffered: 200 << 10, bytesPerMs: 1800}, 512 << 10, &slowProbe, nil, true, gzipRest, busyLink(0.45)},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, data := newAdaptiveGzip(c.link, c.size, c.meter), src.Bytes()
			if c.probe != nil {
				a, data = newProbedGzip(c.link, c.size, c.meter, *c.probe), data[:4<<20]
			}
			if err := a.writeGzipped(c.head); err != nil {
				t.Fatal(err)
			}
			for p := data; len(p) > 0; p = p[min(len(p), 64<<10):] {
				if _, err := a.Write(p[:min(len(p), 64<<10)]); err != nil {
					t.Fatal(err)
				}
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if probedRaw := a.gzipRate > 0; a.phase != c.end || probedRaw != c.probedRaw {
				t.Errorf("ended in phase %d (raw probe %v), want %d (%v); compressed, the tar stream went %.0f MB/s", a.phase, probedRaw, c.end, c.probedRaw, a.gzipRate/1e6)
			}
			var sent *bytes.Buffer
			switch l := c.link.(type) {
			case *slowLink:
				sent = &l.buf
			case *farEnd:
				sent = &l.buf
			}
			want := data
			if c.head != nil {
				want = append(slices.Clone(noise), data...)
			}
			if got := unframe(t, sent); !bytes.Equal(got, want) {
				t.Fatalf("upload.sh would get %d bytes, want the %d written", len(got), len(want))
			}
		})
	}
}

// Small streams share pooled compressors: one after the other, each
// stream is whole and only its own.
func TestAdaptiveGzipSmallStreams(t *testing.T) {
	for i := range 3 {
		src := bytes.Repeat([]byte(fmt.Sprintf("stream %d\n", i)), 1000*(i+1))
		var link bytes.Buffer
		a := newAdaptiveGzip(&link, int64(len(src)), nil)
		if a.pooled == nil {
			t.Fatal("a small stream got a parallel compressor")
		}
		if _, err := a.Write(src); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if got := unframe(t, &link); !bytes.Equal(got, src) {
			t.Fatalf("stream %d: upload.sh would get %d bytes, want %d", i, len(got), len(src))
		}
	}
}
