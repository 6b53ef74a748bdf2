package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/klauspost/compress/gzip"
)

func TestMemo(t *testing.T) {
	var m memo[int, string]
	var calls atomic.Int32
	slow := func() (string, error) {
		calls.Add(1)
		time.Sleep(20 * time.Millisecond)
		return "v", nil
	}
	// Hosts asking at once wait for one computation.
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if v, err := m.get(1, slow); v != "v" || err != nil {
				t.Errorf("get: %q, %v", v, err)
			}
		})
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("computed %d times, want once", n)
	}
	// An error is a result too: the same input fails the same way.
	boom := errors.New("boom")
	if _, err := m.get(2, func() (string, error) { return "", boom }); err != boom {
		t.Errorf("err %v", err)
	}
	if _, err := m.get(2, slow); err != boom {
		t.Errorf("second get: %v, want the first one's error", err)
	}
	// Only the last memoSize keys are kept.
	for k := 3; k < 3+memoSize; k++ {
		m.get(k, slow)
	}
	before := calls.Load()
	m.get(1, slow)
	if calls.Load() != before+1 {
		t.Error("the oldest key was not forgotten")
	}
}

// Hosts that hold the same manifest, each gzip'd by its server at its own
// time (GNU gzip stamps the input file's mtime), share one decode.
func TestLiveManifestDecodedOnceForAlikeHosts(t *testing.T) {
	entries := []release.Entry{{Path: "index.php", Type: release.TypeFile, Size: 1, Hash: release.Digest{1}}}
	stamped := func(entries []release.Entry, mtime time.Time) []byte {
		t.Helper()
		plain := gunzip(t, encodeEntries(t, entries))
		p := filepath.Join(t.TempDir(), "manifest.plain.tmp")
		if err := os.WriteFile(p, plain, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sh", "-c", `gzip -1 < "$1"`, "sh", p)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	read := func(data []byte) liveManifest {
		t.Helper()
		br := bufio.NewReader(io.MultiReader(strings.NewReader(fmt.Sprintf("manifest %d\n", len(data))), bytes.NewReader(data)))
		live, err := manifestSection(br)
		if err != nil {
			t.Fatal(err)
		}
		return live
	}
	a, b := stamped(entries, time.Unix(1e9, 0)), stamped(entries, time.Unix(2e9, 0))
	if bytes.Equal(a, b) {
		t.Fatal("gzip wrote the same bytes for both mtimes; this test no longer shows anything")
	}
	if first, second := read(a), read(b); first.m != second.m {
		t.Error("the same manifest, stamped at another time, was decoded again")
	}
	entries[0].Size = 2
	if read(stamped(entries, time.Unix(1e9, 0))).m == read(a).m {
		t.Error("another manifest was taken for the one decoded before")
	}
}

// Hosts that plan with the same manifests and the same listing share one
// plan and its reuse lists; a host that must upload some reused files
// (paths seeded into shared/) gets a plan of its own, and the shared one
// stays as it was.
func TestPlanSharedByAlikeHosts(t *testing.T) {
	const mtime = int64(1700000000e9)
	prev := &release.Manifest{}
	var scan []transport.Stat
	for _, p := range []string{"a.php", "storage/b.php", "storage/c.php"} {
		e := newFile(p, p, 0o644)
		e.MTime = mtime
		prev.Entries = append(prev.Entries, e)
		scan = append(scan, transport.Stat{Path: p, Mode: 0o644, Size: e.Size, ModTime: time.Unix(0, mtime), Precise: true})
	}
	m := &release.Manifest{Entries: slices.Clone(prev.Entries)}
	first, second := sharedPlan(m, prev, scan), sharedPlan(m, prev, scan)
	if first != second || len(first.Reuse) != 3 {
		t.Fatalf("alike hosts: plans %p and %p, %d reused", first, second, len(first.Reuse))
	}
	if lists := first.reuseLists(); &lists.same[0] != &second.reuseLists().same[0] {
		t.Error("the reuse lists were encoded again")
	}
	if other := sharedPlan(m, prev, slices.Clone(scan)); other == first {
		t.Error("another listing was given the plan of the first")
	}
	// The mtimes the new manifest records: once for the plan and the
	// run's upload time.
	now := time.Unix(1800000000, 0)
	h0, h1 := &Host{manifest: m, S: &Settings{}}, &Host{manifest: m, S: &Settings{}}
	if a, b := h0.streamedMTimes(first, now), h1.streamedMTimes(second, now); &a.mtimes[0] != &b.mtimes[0] || a.mtimes[0] != mtime {
		t.Errorf("recorded mtimes made again, or not the source's: %v", a.mtimes)
	}
	if later := h1.streamedMTimes(first, now.Add(time.Second)); &later.mtimes[0] == &h0.streamedMTimes(first, now).mtimes[0] {
		t.Error("another upload time was given the mtimes recorded for the first")
	}
	own := first.uploadOnly([]string{"storage"})
	if own == first || len(own.Reuse) != 1 || len(own.Upload) != 2 || own.UploadBytes != scan[1].Size+scan[2].Size {
		t.Errorf("upload only below storage: %d reused, %d uploaded (%d bytes)", len(own.Reuse), len(own.Upload), own.UploadBytes)
	}
	if len(first.Reuse) != 3 || len(first.Upload) != 0 || first.UploadBytes != 0 {
		t.Errorf("the shared plan changed: %d reused, %d uploaded", len(first.Reuse), len(first.Upload))
	}
}

// The memo of decoded gzip data finds an entry by a hash, and takes it
// only where the bytes are the same, the header's mtime aside.
func TestGzipMemoComparesTheBytes(t *testing.T) {
	gz := func(s string, mtime time.Time) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.ModTime = mtime
		zw.Write([]byte(s))
		zw.Close()
		return b.Bytes()
	}
	one, oneLater, two := gz("one", time.Unix(1e9, 0)), gz("one", time.Unix(2e9, 0)), gz("two", time.Unix(1e9, 0))
	var g gzipMemo[string]
	decodes := 0
	decode := func(s string) func() (string, error) { return func() (string, error) { decodes++; return s, nil } }
	if v, _ := g.get(one, decode("one")); v != "one" || decodes != 1 {
		t.Fatalf("first: %q, %d decodes", v, decodes)
	}
	if v, _ := g.get(oneLater, decode("one")); v != "one" || decodes != 1 {
		t.Errorf("the same content at another mtime: %q, %d decodes", v, decodes)
	}
	// Other bytes under the hash of the first: decoded, not taken.
	a, b := gzipContent(two)
	g.m.get(gzipContentHash(a, b), func() (gzipDecoded[string], error) { return gzipDecoded[string]{data: one, val: "one"}, nil })
	if v, _ := g.get(two, decode("two")); v != "two" || decodes != 2 {
		t.Errorf("a collision: %q, %d decodes", v, decodes)
	}
}
