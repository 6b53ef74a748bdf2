package release

import (
	"cmp"
	"sort"
	"sync/atomic"
	"weak"
)

// A deploy holds the new release's manifest and, for every host, the
// manifest of its live release, decoded from what the server stored: for a
// large app 100,000 paths each, nearly all of them the same. Decoding gives
// every entry whose path the new manifest also has the new manifest's
// string, so each path is in memory once (9 MB of the no-op deploy of
// 100,000 files). The new manifest is the one Describe or Walk made last,
// held weakly: it is never kept alive for this. Strings are immutable and
// equal, so sharing them changes nothing else.
var described atomic.Pointer[weak.Pointer[Manifest]]

// remember makes m the manifest decoded paths are shared with. Its
// entries' paths must not change from now on (Hash changes other fields).
func remember(m *Manifest) {
	w := weak.Make(m)
	described.Store(&w)
}

// pathSharer finds decoded paths among the entries of the described
// manifest.
type pathSharer struct {
	like   []Entry
	sorted int // like[:sorted] is in walkOrder
	next   int // where the next path likely is
}

func newPathSharer() pathSharer {
	w := described.Load()
	if w == nil {
		return pathSharer{}
	}
	m := w.Value()
	if m == nil {
		return pathSharer{}
	}
	// A walk lists paths in walkOrder, then the generated REVISION when
	// the source has none.
	s := pathSharer{like: m.Entries, sorted: len(m.Entries)}
	if n := s.sorted; n > 1 && walkOrder(s.like[n-2].Path, s.like[n-1].Path) > 0 {
		s.sorted--
	}
	return s
}

// share returns the described manifest's string equal to p, or p.
func (s *pathSharer) share(p string) string {
	if k := find(s, p); k >= 0 {
		return s.like[k].Path
	}
	return p
}

// shareBytes is share for a path still in bytes: a new string is made only
// when the described manifest has none.
func (s *pathSharer) shareBytes(p []byte) string {
	if k := find(s, p); k >= 0 {
		return s.like[k].Path
	}
	return string(p)
}

// find returns the index of p in the described manifest, or -1.
func find[P string | []byte](s *pathSharer, p P) int {
	if len(s.like) == 0 {
		return -1
	}
	// The manifests list most paths in the same order: look just ahead.
	for k := s.next; k < len(s.like) && k < s.next+4; k++ {
		if s.like[k].Path == string(p) {
			s.next = k + 1
			return k
		}
	}
	// Else look it up (after many added or removed paths). Only the paths
	// are read: Hash may be filling in other fields meanwhile.
	k, ok := sort.Find(s.sorted, func(k int) int { return walkOrder(p, s.like[k].Path) })
	if !ok && s.sorted < len(s.like) && s.like[len(s.like)-1].Path == string(p) {
		k, ok = len(s.like)-1, true
	}
	if !ok {
		return -1
	}
	s.next = k + 1
	return k
}

// walkOrder compares paths the way filepath.WalkDir lists them: component
// by component, each by its bytes, so a directory comes right before what
// it contains.
func walkOrder[P string | []byte](a P, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] == b[i] {
			continue
		}
		switch {
		case a[i] == '/':
			return -1
		case b[i] == '/':
			return 1
		}
		return cmp.Compare(a[i], b[i])
	}
	return cmp.Compare(len(a), len(b))
}
