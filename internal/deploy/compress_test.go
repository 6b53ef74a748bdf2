package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
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

// unframe is what upload.sh makes of a stream (unchunk | gzip -dc && cat):
// the gzip'd chunks up to "0", decompressed, then the rest as it is.
func unframe(t *testing.T, stream io.Reader) []byte {
	t.Helper()
	br := bufio.NewReader(stream)
	var gz bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("the gzip'd part has no end (%v)", err)
		}
		n, err := strconv.Atoi(strings.TrimSuffix(line, "\n"))
		if err != nil || n < 0 {
			t.Fatalf("a chunk's size is %q", line)
		}
		if n == 0 {
			break
		}
		if _, err := io.CopyN(&gz, br, int64(n)); err != nil {
			t.Fatalf("a chunk is cut short: %v", err)
		}
	}
	var out bytes.Buffer
	if gz.Len() > 0 {
		zr, err := gzip.NewReader(&gz) // reads member after member
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(&out, zr); err != nil {
			t.Fatal(err)
		}
	}
	io.Copy(&out, br)
	return out.Bytes()
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
	for _, c := range []struct {
		name string
		link *slowLink
		size int64 // the stream's estimated size
		raw  bool
	}{
		{"fast link: raw once compressing holds it back", fastLink(), int64(src.Len()), true},
		{"fast link, a stream far larger than estimated: raw all the same", fastLink(), 10 << 10, true},
		{"slow link: compressed throughout", &slowLink{bytesPerMs: 16 << 10}, int64(src.Len()), false},
		{"slow link behind an SSH window: compressed throughout", &slowLink{buffered: 2 << 20, bytesPerMs: 16 << 10}, int64(src.Len()), false},
		{"slow link, a stream far larger than estimated: compressed throughout", &slowLink{bytesPerMs: 16 << 10}, 10 << 10, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newAdaptiveGzip(c.link, c.size)
			for p := src.Bytes(); len(p) > 0; p = p[min(len(p), 64<<10):] {
				if _, err := a.Write(p[:min(len(p), 64<<10)]); err != nil {
					t.Fatal(err)
				}
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			share, measured := a.link.waited()
			if !measured || a.raw != c.raw {
				t.Errorf("raw %v, want %v (measured %v: %.0f%% of the probe waiting for the link)", a.raw, c.raw, measured, 100*share)
			}
			if got := unframe(t, &c.link.buf); !bytes.Equal(got, src.Bytes()) {
				t.Fatalf("upload.sh would get %d bytes, want the %d written", len(got), src.Len())
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
		a := newAdaptiveGzip(&link, int64(len(src)))
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
