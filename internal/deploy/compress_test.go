package deploy

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
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

// The stream stays compressed where the link holds it back, even behind
// a buffer that takes the first megabytes at once, and goes stored where
// the compressor would; either way gzip -d gets the bytes back, one
// member after the other.
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
		name   string
		link   *slowLink
		size   int64 // the stream's estimated size
		stored bool
	}{
		{"fast link: stored once compressing holds it back", fastLink(), int64(src.Len()), true},
		{"fast link, a stream far larger than estimated: stored all the same", fastLink(), 10 << 10, true},
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
			if !measured || a.stored != c.stored {
				t.Errorf("stored %v, want %v (measured %v: %.0f%% of the probe waiting for the link)", a.stored, c.stored, measured, 100*share)
			}
			zr, err := gzip.NewReader(&c.link.buf)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(zr)
			if err != nil || !bytes.Equal(got, src.Bytes()) {
				t.Fatalf("gzip -d got %d bytes (%v), want the %d written", len(got), err, src.Len())
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
		zr, err := gzip.NewReader(&link)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(zr); err != nil || !bytes.Equal(got, src) {
			t.Fatalf("stream %d: gzip -d got %d bytes (%v), want %d", i, len(got), err, len(src))
		}
	}
}
