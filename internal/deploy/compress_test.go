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
	fast := &slowLink{bytesPerMs: 1 << 40}
	fast.buf.Grow(src.Len() + src.Len()/8)
	for _, c := range []struct {
		name   string
		link   *slowLink
		size   int64 // the stream's estimated size
		stored bool
	}{
		{"fast link: stored once compressing holds it back", fast, int64(src.Len()), true},
		{"slow link: compressed throughout", &slowLink{bytesPerMs: 16 << 10}, int64(src.Len()), false},
		{"slow link behind an SSH window: compressed throughout", &slowLink{buffered: 2 << 20, bytesPerMs: 16 << 10}, int64(src.Len()), false},
		{"a stream far larger than estimated: smaller blocks, the same decision", &slowLink{bytesPerMs: 16 << 10}, 10 << 10, false},
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

func TestGzipBlock(t *testing.T) {
	for _, c := range []struct {
		size int64
		want int
	}{
		{0, 64 << 10},
		{64 << 10, 64 << 10},
		{64<<10 + 1, 128 << 10},
		{300 << 10, 512 << 10},
		{1 << 20, 1 << 20},
		{1 << 40, 1 << 20},
	} {
		if got := gzipBlock(c.size); got != c.want {
			t.Errorf("gzipBlock(%d) = %d, want %d", c.size, got, c.want)
		}
	}
}
