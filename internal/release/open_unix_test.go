//go:build unix

package release

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
)

// A source file reads whole whatever size the walk saw: the same, less
// (it grew since) or more (it shrank), at the copy buffer's edges too.
func TestOpenFileReadsToTheEnd(t *testing.T) {
	dir := t.TempDir()
	const buf = 64 << 10
	for _, size := range []int{0, 1, 4000, buf - 1, buf, buf + 1, 3*buf + 5} {
		data := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
		p := filepath.Join(dir, fmt.Sprint(size))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, seen := range []int64{int64(size), int64(size) / 2, int64(size) + 100, -1} {
			f, err := openFile(p, seen)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			_, err = io.CopyBuffer(&got, struct{ io.Reader }{f}, make([]byte, buf))
			f.Close()
			if err != nil || !bytes.Equal(got.Bytes(), data) {
				t.Errorf("%d bytes, the walk saw %d: read %d bytes (%v)", size, seen, got.Len(), err)
			}
			d, n, err := hashFile(p, seen)
			if err != nil || n != int64(size) || d != sha256.Sum256(data) {
				t.Errorf("%d bytes, the walk saw %d: hashed %d bytes (%v)", size, seen, n, err)
			}
		}
	}
}

// A regular file the walk saw, swapped since for a symlink, is an error:
// not followed. One swapped for a FIFO reads as empty at once: not waited
// on for a writer.
func TestOpenFileRefusesWhatIsNoLongerAFile(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, _, err := hashFile(link, 6); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("hashing a symlink: %v, want ELOOP", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("no FIFO here: %v", err)
	}
	done := make(chan int64, 1)
	go func() {
		_, n, _ := hashFile(fifo, 6)
		done <- n
	}()
	select {
	case n := <-done:
		if n != 0 {
			t.Errorf("a FIFO without a writer read as %d bytes", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("hashing a FIFO waits for a writer")
	}
}

// The hash of 2,000 small files, as Build reads them (go test -bench
// BenchmarkHash ./internal/release).
func BenchmarkHash(b *testing.B) {
	src := b.TempDir()
	testutil.SmallPHPFiles(b, src, 2000)
	m, err := walk(src, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		for i := range m.Entries {
			m.Entries[i].Hash = Digest{}
		}
		if err := m.Hash(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}
