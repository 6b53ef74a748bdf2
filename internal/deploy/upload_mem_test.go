package deploy

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// A no-op deploy of a 100,000-file release holds two manifests and a scan
// of the live release while it plans; peak RSS must stay under 100 MB
// (bench/rss.sh). These guard what the plan and the manifests cost.

func TestEntryStaysSmall(t *testing.T) {
	if n := unsafe.Sizeof(release.Entry{}); n > 96 {
		t.Errorf("release.Entry is %d bytes; every manifest holds one per file (100,000 in a large release)", n)
	}
}

func TestMakePlanMemory(t *testing.T) {
	const files = 100_000
	mtime := time.Unix(1764112722, 123456789)
	m := &release.Manifest{Entries: make([]release.Entry, 0, files)}
	prev := &release.Manifest{Entries: make([]release.Entry, 0, files)}
	scan := make([]transport.Stat, 0, files)
	for i := range files {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(i))
		e := release.Entry{Path: fmt.Sprintf("vendor/pkg%03d/src/File%06d.php", i%500, i), Type: release.TypeFile, Mode: 0o644, Size: 100, Hash: sha256.Sum256(b[:])}
		m.Entries = append(m.Entries, e)
		e.Path = string([]byte(e.Path)) // the previous manifest has its own strings
		e.MTime = mtime.UnixNano()
		prev.Entries = append(prev.Entries, e)
		scan = append(scan, transport.Stat{Path: e.Path, Mode: 0o644, Size: 100, ModTime: mtime, Precise: true})
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	p := MakePlan(m, prev, scan)
	runtime.ReadMemStats(&after)
	if len(p.Reuse) != files {
		t.Fatalf("reused %d of %d", len(p.Reuse), files)
	}
	// The plan itself is 32 bytes a file (Reuse); the search adds about
	// 20 more while it runs.
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("MakePlan: %.1f MB for %d files", float64(alloc)/1e6, files)
	if alloc > 60*files {
		t.Errorf("MakePlan allocated %.1f MB for %d files, want < %.1f MB", float64(alloc)/1e6, files, 60*files/1e6)
	}
	// A reused path is the new manifest's string, so that the previous
	// manifest can go once the plan is made.
	for _, r := range p.Reuse {
		if unsafe.StringData(r.From) != unsafe.StringData(r.Entry.Path) {
			t.Fatalf("Reuse.From %q keeps the previous manifest's string", r.From)
		}
	}
}
