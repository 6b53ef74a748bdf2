package deploy

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy/remote"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
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
			l := Layout{Root: dirPath}
			for _, sh := range shells(t) {
				writeFiles(t, "/", map[string]string{l.Manifest("old"): string(oldStored)})
				r := sh.run(t, deltaUpload(t, l, d), bytes.NewReader(deltaStream(t, l, d)))
				if r.status != 0 {
					t.Fatalf("%s: status %d: %s", sh.name, r.status, r.stderr)
				}
				got, _ := os.ReadFile(l.Manifest("new"))
				if !bytes.Equal(gunzip(t, got), gunzip(t, newEncoded)) {
					t.Errorf("%s: rebuilt manifest differs:\n%s\nwant:\n%s", sh.name, gunzip(t, got), gunzip(t, newEncoded))
				}
				// No mtime in the header: hosts that rebuild one manifest
				// at different times store the same bytes.
				if len(got) < 10 || !bytes.Equal(got[4:8], []byte{0, 0, 0, 0}) {
					t.Errorf("%s: the rebuilt manifest's gzip header carries an mtime: % x", sh.name, got[:min(len(got), 10)])
				}
				if left, _ := filepath.Glob(filepath.Join(l.Manifests(), "new.*")); len(left) != 1 {
					t.Errorf("%s: files left: %q", sh.name, left)
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
	l := Layout{Root: dirPath}
	// The server's old manifest is not the one the delta was made against.
	writeFiles(t, "/", map[string]string{l.Manifest("old"): string(encodeEntries(t, []release.Entry{dir("app"), file("app/a.php", "c", 1)}))})
	sealing := deltaUpload(t, l, d)
	sealing.Args = append(sealing.Args, l.Seal("new"))
	for _, sh := range shells(t) {
		// Also where the release is sealed meanwhile: the rebuild's status
		// is the command's.
		for _, cmd := range []transport.Command{deltaUpload(t, l, d), sealing} {
			r := sh.run(t, cmd, bytes.NewReader(deltaStream(t, l, d)))
			if r.status != remote.StatusManifestDelta {
				t.Fatalf("%s: status %d, want %d", sh.name, r.status, remote.StatusManifestDelta)
			}
			os.Remove(l.Seal("new")) // a seal of a release that failed is pruned with it
			os.Remove(l.SealShape("new"))
			if left, _ := filepath.Glob(filepath.Join(l.Manifests(), "new.*")); len(left) != 0 {
				t.Errorf("%s: files left: %q", sh.name, left)
			}
		}
	}
}

// The delta comes at the head too: the manifest is rebuilt before the
// tar stream has arrived (while the reused files are copied), and the
// stream's own delta, the proof it came whole, is then removed.
func TestManifestDeltaRebuiltBeforeTheStream(t *testing.T) {
	base := []release.Entry{dir("app"), file("app/a.php", "a", 1)}
	oldStored := encodeEntries(t, base)
	newEncoded := encodeEntries(t, append(base, file("app/b.php", "b", 2)))
	d, err := makeManifestDelta(newEncoded, digestsOf(t, oldStored))
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range shells(t) {
		l := Layout{Root: t.TempDir()}
		writeFiles(t, "/", map[string]string{l.Manifest("old"): string(oldStored)})
		input := deltaStream(t, l, d)
		head := uploadHead(encodeReuseLists(&Plan{}), d.file())
		pr, pw := io.Pipe()
		done := make(chan ran, 1)
		go func() { done <- sh.run(t, deltaUpload(t, l, d), pr) }()
		pw.Write(input[:len(head)])
		waitUntil(t, 5*time.Second, func() bool { return exists(l.Manifest("new")) }, sh.name+": no manifest before the stream")
		pw.Write(input[len(head):])
		pw.Close()
		if r := <-done; r.status != 0 {
			t.Fatalf("%s: status %d: %s", sh.name, r.status, r.stderr)
		}
		if got, _ := os.ReadFile(l.Manifest("new")); !bytes.Equal(gunzip(t, got), gunzip(t, newEncoded)) {
			t.Errorf("%s: rebuilt manifest differs", sh.name)
		}
		if left, _ := filepath.Glob(filepath.Join(l.Manifests(), "new.*")); len(left) != 1 {
			t.Errorf("%s: files left: %q", sh.name, left)
		}
	}
}

// deltaUpload is upload.sh bringing release "new" of l with delta d
// against release "old", and nothing else to do.
func deltaUpload(t *testing.T, l Layout, d *manifestDelta) transport.Command {
	os.MkdirAll(l.Releases(), 0o755)
	return remote.Upload.Command(l.Root, l.Log(), `{"id":"new","status":"started"}`, l.ManifestDelta("new"), l.Manifest("old"), l.Manifest("new"), "", "", "", filepath.Join(l.Root, "next"), l.Current(), "", l.Release("old"), l.Release("new"), "", "")
}

// deltaStream is an upload stream of an empty release "new" with d.
func deltaStream(t *testing.T, l Layout, d *manifestDelta) []byte {
	b := bytes.NewBuffer(uploadHead(encodeReuseLists(&Plan{}), d.file()))
	extras := []tarExtra{{Name: l.relative(l.ManifestDelta("new")), Load: func() ([]byte, error) { return d.file(), nil }}}
	if err := (&Plan{}).writeTar(b, nil, tarShape{top: "releases/new", now: time.Now(), extras: extras}, &uploadStats{}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
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
