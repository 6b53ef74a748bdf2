package deploy

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"hash/maphash"
	"sync"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// A fleet's hosts mostly hold the same live manifest and the same files,
// and get the same new manifest (one upload mtime for the run): reading
// the live manifest and the shape of its seal from the lock holder's
// printout, planning against them, and encoding the new manifest with its
// delta are done once for the fleet instead of once a host. Those were
// most of the client's CPU per host on a large release (bench/scale.sh).
// What a memo returns is shared between hosts, and never changed.

// memo keeps the last few results of a computation by key. Hosts that ask
// for one key at once wait for one computation.
type memo[K comparable, V any] struct {
	mu      sync.Mutex
	entries []*memoEntry[K, V] // oldest first
}

type memoEntry[K comparable, V any] struct {
	key  K
	done chan struct{}
	val  V
	err  error
}

// memoSize bounds each memo: a run has one live manifest per group of
// alike hosts, usually one.
const memoSize = 4

func (m *memo[K, V]) get(key K, compute func() (V, error)) (V, error) {
	m.mu.Lock()
	for _, e := range m.entries {
		if e.key == key {
			m.mu.Unlock()
			<-e.done
			return e.val, e.err
		}
	}
	e := &memoEntry[K, V]{key: key, done: make(chan struct{})}
	m.entries = append(m.entries, e)
	if len(m.entries) > memoSize {
		m.entries = m.entries[1:]
	}
	m.mu.Unlock()
	e.val, e.err = compute()
	close(e.done)
	return e.val, e.err
}

// liveManifest is a stored manifest as read from the holder's printout:
// the manifest and the digests of its lines (nil where they do not match
// it line for line).
type liveManifest struct {
	m      *release.Manifest
	lines  []lineDigest
	digest [sha256.Size]byte // of the stored bytes (knownManifest)
}

// liveManifests are keyed by the stored (gzip'd) manifest as sent.
var liveManifests gzipMemo[liveManifest]

// liveShapes are the shapes of live releases' seals, keyed the same way.
var liveShapes gzipMemo[[]transport.Stat]

// gzipMemo is a memo of what is decoded from gzip data, keyed by the data
// with the header's mtime aside: a delta deploy has every server gzip the
// manifest it rebuilt, and GNU gzip stamps its output with the input
// file's mtime (before upload.sh's -n), so hosts holding the same
// manifest hold bytes that differ there. A hash finds the entry and a
// comparison of the bytes confirms it: SHA-256 of each host's manifest was
// a tenth of what the client spent on a host.
type gzipMemo[V any] struct{ m memo[uint64, gzipDecoded[V]] }

type gzipDecoded[V any] struct {
	data []byte
	val  V
}

var gzipMemoSeed = maphash.MakeSeed()

func (g *gzipMemo[V]) get(data []byte, decode func() (V, error)) (V, error) {
	a, b := gzipContent(data)
	e, err := g.m.get(gzipContentHash(a, b), func() (gzipDecoded[V], error) {
		v, err := decode()
		return gzipDecoded[V]{data: data, val: v}, err
	})
	if c, d := gzipContent(e.data); !bytes.Equal(a, c) || !bytes.Equal(b, d) {
		return decode() // other bytes that hash alike
	}
	return e.val, err
}

func gzipContentHash(before, after []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(gzipMemoSeed)
	h.Write(before)
	h.Write(after)
	return h.Sum64()
}

// gzipContent is gzip data in two parts, around the header's mtime.
func gzipContent(data []byte) (before, after []byte) {
	if len(data) < 10 || data[0] != 0x1f || data[1] != 0x8b {
		return nil, data
	}
	return data[:4], data[8:]
}

// newManifestKey is what a new release's encoding depends on: the
// manifest, the mtimes recorded in it, and the previous manifest's lines
// it is a delta against.
type newManifestKey struct {
	manifest *release.Manifest
	mtimes   [sha256.Size]byte
	delta    bool
	prev     *lineDigest // the first of the previous manifest's lines
	prevLen  int
}

// newManifest is a new release's manifest, encoded, and its delta.
type newManifest struct{ data, delta []byte }

var newManifests memo[newManifestKey, newManifest]

// mtimesDigest identifies the mtimes recorded in a manifest.
func mtimesDigest(mtimes []int64) [sha256.Size]byte {
	b := make([]byte, 0, 8*len(mtimes))
	for _, t := range mtimes {
		b = binary.LittleEndian.AppendUint64(b, uint64(t))
	}
	return sha256.Sum256(b)
}

// sharedPlan is MakePlan, made once for hosts alike in what they plan
// with: the same new manifest, the same live one, and the same listing of
// the live release (the seal's shape, which the client decodes once for
// every host that sent the same bytes). A fleet's client made the same
// plan again for every host. The plan is shared: nothing changes it.
func sharedPlan(m, prev *release.Manifest, prevScan []transport.Stat) *Plan {
	if len(prevScan) == 0 {
		return MakePlan(m, prev, prevScan)
	}
	key := planKey{m: m, prev: prev, scan: &prevScan[0], scanLen: len(prevScan)}
	p, _ := plans.get(key, func() (plannedWith, error) {
		return plannedWith{plan: MakePlan(m, prev, prevScan), prev: prev, scan: prevScan}, nil
	})
	return p.plan
}

// planKey identifies what a plan is made from by address.
type planKey struct {
	m, prev *release.Manifest
	scan    *transport.Stat
	scanLen int
}

// plannedWith is a plan and what its key points to, kept with it so that
// no other manifest or listing can take those addresses while it is kept.
type plannedWith struct {
	plan *Plan
	prev *release.Manifest
	scan []transport.Stat
}

var plans memo[planKey, plannedWith]
