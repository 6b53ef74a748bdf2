package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
)

func encodeEntries(t *testing.T, entries []release.Entry) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := (&release.Manifest{Entries: entries}).Encode(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gunzip(t *testing.T, data []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// digestsOf reads a stored manifest the way the snapshot does.
func digestsOf(t *testing.T, stored []byte) []lineDigest {
	t.Helper()
	d := &lineDigester{r: bytes.NewReader(gunzip(t, stored))}
	io.Copy(io.Discard, d)
	return d.lines
}

func file(p, hash string, mtime int64) release.Entry {
	h, _ := release.ParseDigest(strings.Repeat(hash, 64))
	return release.Entry{Path: p, Type: release.TypeFile, Mode: 0o644, Size: 3, Hash: h, MTime: mtime}
}

func dir(p string) release.Entry { return release.Entry{Path: p, Type: release.TypeDir, Mode: 0o755} }

// TestManifestDeltaAppliedByAwk rebuilds manifests from deltas with the
// server's tools (sh, gzip, awk, sha256sum) and compares.
func TestManifestDeltaAppliedByAwk(t *testing.T) {
	base := []release.Entry{dir("app"), file("app/a.php", "a", 1), file("app/b.php", "b", 2), dir("vendor"), file("vendor/c.php", "c", 3), file("z.txt", "d", 4)}
	long := file("app/"+strings.Repeat("x", 100<<10)+".php", "e", 5)
	tests := []struct {
		name     string
		old, new []release.Entry
		copied   int // old lines reused, the header included
	}{
		{"same", base, base, 7},
		{"one changed", base, []release.Entry{base[0], file("app/a.php", "f", 9), base[2], base[3], base[4], base[5]}, 6},
		{"added and removed", base, []release.Entry{base[0], base[1], file("app/new.php", "f", 9), base[3], base[4]}, 5},
		{"moved content", base, []release.Entry{base[0], file("app/b.php", "a", 1), file("app/z.php", "b", 2), base[3], base[4], base[5]}, 5},
		{"reversed", base, []release.Entry{base[5], base[4], base[3], base[2], base[1], base[0]}, 2},
		{"everything new", base, []release.Entry{dir("x"), file("x/y", "f", 1)}, 1},
		{"a line longer than any buffer", append(base[:1:1], long), append(base[:1:1], long, file("app/zz", "f", 1)), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dirPath := t.TempDir()
			oldStored, newEncoded := encodeEntries(t, tt.old), encodeEntries(t, tt.new)
			d, err := makeManifestDelta(newEncoded, digestsOf(t, oldStored))
			if err != nil {
				t.Fatal(err)
			}
			if d.copied != tt.copied {
				t.Errorf("copied %d old lines, want %d; delta:\n%.2000s", d.copied, tt.copied, d.ops.String())
			}
			prev, delta, manifest := filepath.Join(dirPath, "old.json.gz"), filepath.Join(dirPath, "new.delta"), filepath.Join(dirPath, "new.json.gz")
			os.WriteFile(prev, oldStored, 0o644)
			os.WriteFile(delta, d.file(), 0o644)
			for _, sh := range shells(t) {
				os.WriteFile(delta, d.file(), 0o644)
				os.Remove(manifest)
				out, err := exec.Command(sh[0], append(sh[1:], "-c", applyDeltaCommand(prev, delta, manifest))...).CombinedOutput()
				if err != nil {
					t.Fatalf("apply with %s: %v: %s", sh, err, out)
				}
				got, _ := os.ReadFile(manifest)
				if !bytes.Equal(gunzip(t, got), gunzip(t, newEncoded)) {
					t.Errorf("%s: rebuilt manifest differs:\n%s\nwant:\n%s", sh, gunzip(t, got), gunzip(t, newEncoded))
				}
				if left, _ := filepath.Glob(filepath.Join(dirPath, "new.*")); len(left) != 1 {
					t.Errorf("%s: files left: %q", sh, left)
				}
			}
		})
	}
}

// A delta that does not rebuild the manifest it promises stores nothing
// and says so with its exit status.
func TestManifestDeltaMismatch(t *testing.T) {
	dirPath := t.TempDir()
	base := []release.Entry{dir("app"), file("app/a.php", "a", 1)}
	oldStored := encodeEntries(t, base)
	d, err := makeManifestDelta(encodeEntries(t, append(base, file("app/b.php", "b", 2))), digestsOf(t, oldStored))
	if err != nil {
		t.Fatal(err)
	}
	prev, delta, manifest := filepath.Join(dirPath, "old.json.gz"), filepath.Join(dirPath, "new.delta"), filepath.Join(dirPath, "new.json.gz")
	// The server's old manifest is not the one the delta was made against.
	os.WriteFile(prev, encodeEntries(t, []release.Entry{dir("app"), file("app/a.php", "c", 1)}), 0o644)
	for _, sh := range shells(t) {
		os.WriteFile(delta, d.file(), 0o644)
		err = exec.Command(sh[0], append(sh[1:], "-c", applyDeltaCommand(prev, delta, manifest))...).Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != exitManifestDelta {
			t.Fatalf("%s: exit %v, want %d", sh, err, exitManifestDelta)
		}
		if left, _ := filepath.Glob(filepath.Join(dirPath, "new.*")); len(left) != 0 {
			t.Errorf("%s: files left: %q", sh, left)
		}
	}
}

// shells are the /bin/sh of this machine and, where installed, busybox's
// (the shell of small server images).
func shells(t *testing.T) [][]string {
	t.Helper()
	s := [][]string{{"/bin/sh"}}
	if bb, err := exec.LookPath("busybox"); err == nil {
		s = append(s, []string{bb, "sh"})
	}
	return s
}

func BenchmarkManifestDelta(b *testing.B) {
	var entries []release.Entry
	for i := range 5000 {
		entries = append(entries, file(fmt.Sprintf("vendor/p%03d/f%04d.php", i/50, i), fmt.Sprint(i%10), int64(i)))
	}
	var buf bytes.Buffer
	(&release.Manifest{Entries: entries}).Encode(&buf)
	encoded := buf.Bytes()
	zr, _ := gzip.NewReader(bytes.NewReader(encoded))
	d := &lineDigester{r: zr}
	io.Copy(io.Discard, d)
	for b.Loop() {
		if _, err := makeManifestDelta(encoded, d.lines); err != nil {
			b.Fatal(err)
		}
	}
}
