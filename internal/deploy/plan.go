package deploy

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// uploadOnly is p with reuse turned into upload below paths that will be
// moved into shared/: a shared file must not share an inode with an older
// release. p itself is left as it is: hosts alike share it (sharedPlan).
func (p *Plan) uploadOnly(roots []string) *Plan {
	if len(roots) == 0 {
		return p
	}
	q := &Plan{Dirs: p.Dirs, Symlinks: p.Symlinks, Upload: slices.Clip(p.Upload), UploadBytes: p.UploadBytes, ReuseBytes: p.ReuseBytes}
	for _, r := range p.Reuse {
		if under(r.Entry.Path, roots) {
			q.Upload = append(q.Upload, r.Entry)
			q.UploadBytes += r.Entry.Size
			q.ReuseBytes -= r.Entry.Size
			continue
		}
		q.Reuse = append(q.Reuse, r)
	}
	return q
}

// Plan says, for each file of the new release, whether its bytes cross the
// wire or an identical file already on the server is reused (copied there,
// or hard-linked with reuse: hardlink).
type Plan struct {
	Dirs     []*release.Entry
	Symlinks []*release.Entry
	Upload   []*release.Entry
	Reuse    []Reuse

	UploadBytes int64
	ReuseBytes  int64

	// Made once for the hosts that share the plan: its reuse lists, and
	// the mtimes a release it uploads records (streamedMTimes), the head
	// of its tar stream.
	lists        sync.Once
	encodedLists reuseLists
	recorded     memo[recordedKey, recordedMTimes]
	head         memo[tarHeadKey, []byte]
}

// recordedKey is what else the mtimes recorded for a plan depend on: the
// manifest, the mtime of uploaded files, and the shared paths, which
// record none.
type recordedKey struct {
	manifest *release.Manifest
	now      int64
	shared   string
}

// recordedMTimes are mtimes recorded for a manifest, and their digest.
type recordedMTimes struct {
	mtimes []int64
	digest [sha256.Size]byte
}

// Reuse links an existing server file into the new release.
type Reuse struct {
	Entry     *release.Entry
	From      string // path relative to the previous release
	FromMTime int64  // its modification time (unix ns), which a hard link keeps
}

// MakePlan compares the new manifest with the previous release's manifest
// and with what the previous release holds now (prevScan). A file is reused
// only when its content hash matches, its permission bits match (a hard link
// shares them), and the server copy still has the size and modification time
// recorded right after it was deployed, so a file edited on the server since
// is never carried into the new release. Matching is by content, not by
// path: a fresh CI checkout with new mtimes still reuses everything that did
// not change. Each server file is used at most once, so no two paths of the
// new release share an inode with each other.
func MakePlan(m *release.Manifest, prev *release.Manifest, prevScan []transport.Stat) *Plan {
	p := &Plan{}
	// Reusable files of the previous release, sorted by content so that the
	// files with one content are neighbours. A slice and binary search
	// instead of a map keyed by content keep a 100,000-file plan small.
	var cands []candidate
	var prevEntries []release.Entry
	if prev != nil {
		prevEntries = prev.Entries
		if !slices.IsSortedFunc(prevScan, byStatPath) {
			slices.SortFunc(prevScan, byStatPath)
		}
		n := 0
		for i := range prevEntries {
			if prevEntries[i].Type == release.TypeFile && prevEntries[i].MTime != 0 {
				n++
			}
		}
		cands = make([]candidate, 0, n)
		for i := range prevEntries {
			e := &prevEntries[i]
			if e.Type != release.TypeFile || e.MTime == 0 {
				continue
			}
			j, ok := sort.Find(len(prevScan), func(j int) int { return strings.Compare(e.Path, prevScan[j].Path) })
			if !ok {
				continue
			}
			s := &prevScan[j]
			if !s.Mode.IsRegular() || s.Size != e.Size || !sameTime(*s, e.MTime) || uint32(s.Mode.Perm()) != e.Mode&0o777 {
				continue
			}
			cands = append(cands, candidate{h0: hashPrefix(e.Hash), prev: int32(i), scan: int32(j)})
		}
	}
	// byContent orders candidates by hash, then permission bits; the
	// prefix kept in the candidate decides almost every comparison.
	byContent := func(c candidate, hash *release.Digest, h0 uint64, mode uint32) int {
		if c.h0 != h0 {
			return cmp.Compare(c.h0, h0)
		}
		e := &prevEntries[c.prev]
		if c := bytes.Compare(e.Hash[:], hash[:]); c != 0 {
			return c
		}
		return cmp.Compare(e.Mode, mode)
	}
	// Within one content the one listed last comes first.
	slices.SortFunc(cands, func(a, b candidate) int {
		e := &prevEntries[b.prev]
		if c := byContent(a, &e.Hash, b.h0, e.Mode); c != 0 {
			return c
		}
		return cmp.Compare(b.prev, a.prev)
	})
	used := make([]bool, len(cands))
	pick := func(e *release.Entry) int {
		h0 := hashPrefix(e.Hash)
		i, _ := slices.BinarySearchFunc(cands, e, func(c candidate, e *release.Entry) int { return byContent(c, &e.Hash, h0, e.Mode) })
		found := -1
		for ; i < len(cands) && byContent(cands[i], &e.Hash, h0, e.Mode) == 0; i++ {
			if used[i] {
				continue
			}
			if prevEntries[cands[i].prev].Path == e.Path {
				return i // the same path first: the likeliest to stay untouched
			}
			if found < 0 {
				found = i
			}
		}
		return found
	}
	// Each file's choice first, so that every list is made at its final size.
	var dirs, symlinks, reuse, upload int
	picks := make([]int32, len(m.Entries))
	for i := range m.Entries {
		e := &m.Entries[i]
		picks[i] = -1
		switch e.Type {
		case release.TypeDir:
			dirs++
		case release.TypeSymlink:
			symlinks++
		case release.TypeFile:
			if c := pick(e); c >= 0 && e.Size > 0 {
				used[c] = true
				picks[i] = int32(c)
				reuse++
			} else {
				upload++
			}
		}
	}
	p.Dirs = make([]*release.Entry, 0, dirs)
	p.Symlinks = make([]*release.Entry, 0, symlinks)
	p.Reuse = make([]Reuse, 0, reuse)
	p.Upload = make([]*release.Entry, 0, upload)
	for i := range m.Entries {
		e := &m.Entries[i]
		switch e.Type {
		case release.TypeDir:
			p.Dirs = append(p.Dirs, e)
		case release.TypeSymlink:
			p.Symlinks = append(p.Symlinks, e)
		case release.TypeFile:
			if picks[i] < 0 {
				p.Upload = append(p.Upload, e)
				p.UploadBytes += e.Size
				continue
			}
			c := &cands[picks[i]]
			// The new manifest's copy of the path when it is the same, so
			// the plan does not keep the previous manifest's strings alive.
			from := prevEntries[c.prev].Path
			if from == e.Path {
				from = e.Path
			}
			p.Reuse = append(p.Reuse, Reuse{Entry: e, From: from, FromMTime: prevScan[c.scan].ModTime.UnixNano()})
			p.ReuseBytes += e.Size
		}
	}
	return p
}

// candidate is a file of the previous release that may be reused.
type candidate struct {
	h0   uint64 // hashPrefix of its content
	prev int32  // index in the previous manifest
	scan int32  // index in the scan of the previous release
}

// hashPrefix is the first 8 bytes of a hash, in the order of the bytes.
func hashPrefix(d release.Digest) uint64 { return binary.BigEndian.Uint64(d[:8]) }

func byStatPath(a, b transport.Stat) int { return strings.Compare(a.Path, b.Path) }

// sameTime compares a scanned mtime with a recorded one at the precision
// both sides have.
func sameTime(s transport.Stat, recorded int64) bool {
	if !s.Precise {
		return s.ModTime.Unix() == time.Unix(0, recorded).Unix()
	}
	return s.ModTime.UnixNano() == recorded
}
