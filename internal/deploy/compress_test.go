package deploy

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
)

// slowLink takes bytes at a fixed rate.
type slowLink struct {
	buf          bytes.Buffer
	bytesPerTick int
}

func (s *slowLink) Write(p []byte) (int, error) {
	time.Sleep(time.Duration(len(p)/s.bytesPerTick) * time.Millisecond)
	return s.buf.Write(p)
}

// The stream stays compressed where the link holds it back, and goes
// stored where the compressor would; either way gzip -d gets the bytes
// back, one member after the other.
func TestAdaptiveGzip(t *testing.T) {
	// Text-like data: compressible, not trivially.
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"namespace ", "function ", "return ", "$this->", "array(", "public ", "static ", "\n", "if (", ") {\n"}
	var src bytes.Buffer
	for src.Len() < 24<<20 {
		src.WriteString(words[rng.IntN(len(words))])
	}
	// The fast link has its room from the start: growing a buffer of
	// megabytes while the clock runs would count as waiting for the link.
	fast := &bytes.Buffer{}
	fast.Grow(src.Len() + src.Len()/8)
	for _, c := range []struct {
		name   string
		link   io.Writer
		stored bool
	}{
		{"fast link: stored once compressing holds it back", fast, true},
		{"slow link: compressed throughout", &slowLink{bytesPerTick: 50 << 10}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newAdaptiveGzip(c.link)
			for p := src.Bytes(); len(p) > 0; p = p[min(len(p), 64<<10):] {
				if _, err := a.Write(p[:min(len(p), 64<<10)]); err != nil {
					t.Fatal(err)
				}
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if a.stored != c.stored {
				t.Errorf("stored %v, want %v (waited %v for the link)", a.stored, c.stored, a.link.blocked)
			}
			var out bytes.Buffer
			switch l := c.link.(type) {
			case *bytes.Buffer:
				out = *l
			case *slowLink:
				out = l.buf
			}
			zr, err := gzip.NewReader(&out)
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
