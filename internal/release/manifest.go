// Package release prepares what gets deployed: it runs the build, walks the
// source with the excludes, and describes every entry in a Manifest (path,
// type, mode, size, content hash, link target). The manifest is stored on the
// server with each release so the next deploy can tell what it may reuse.
package release

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/klauspost/compress/gzip"
)

// Entry types.
const (
	TypeDir     = "d"
	TypeFile    = "f"
	TypeSymlink = "l"
)

// Entry describes one path of a release.
type Entry struct {
	Path   string `json:"p"`           // slash-separated, relative to the release root
	Type   string `json:"t"`           // TypeDir, TypeFile or TypeSymlink
	Mode   uint32 `json:"m,omitempty"` // permission bits (files and dirs)
	Size   int64  `json:"s,omitempty"`
	Hash   string `json:"h,omitempty"` // hex SHA-256 of a file's content
	Target string `json:"l,omitempty"` // a symlink's target, verbatim
	// MTime is the file's modification time on the server (unix ns) as seen
	// right after the release was written; the next deploy compares it to
	// detect files edited after the deploy, which must not be reused.
	MTime int64 `json:"mt,omitempty"`

	src *source // where a new release's file content comes from; nil when decoded
}

// source is kept behind a pointer: decoded manifests (one per host and
// deploy, 100,000 entries for a large app) do not carry its fields.
type source struct {
	local string // the file on the runner
	data  []byte // content held in memory (generated files such as REVISION)
}

// Open returns the content of a file entry from the runner.
func (e *Entry) Open() (io.ReadCloser, error) {
	if e.src == nil || e.src.data != nil || e.src.local == "" {
		var data []byte
		if e.src != nil {
			data = e.src.data
		}
		return io.NopCloser(bytes.NewReader(data)), nil
	}
	return openFile(e.src.local)
}

// Manifest is a release's entries, sorted so that every directory comes
// before what it contains.
type Manifest struct {
	Entries []Entry
}

// Files counts regular files and their total size.
func (m *Manifest) Files() (n int, size int64) {
	for i := range m.Entries {
		if m.Entries[i].Type == TypeFile {
			n++
			size += m.Entries[i].Size
		}
	}
	return n, size
}

// Index maps paths to entries.
func (m *Manifest) Index() map[string]*Entry {
	idx := make(map[string]*Entry, len(m.Entries))
	for i := range m.Entries {
		idx[m.Entries[i].Path] = &m.Entries[i]
	}
	return idx
}

const manifestHeader = `{"atomic-deploy-manifest":1}`

// Encode writes the manifest as gzip-compressed JSON lines.
func (m *Manifest) Encode(w io.Writer) error { return m.EncodeMTimes(w, nil) }

// EncodeMTimes is Encode with each entry's MTime taken from mtimes (same
// order as Entries) when it is not nil: the manifest of a fleet is shared
// by all hosts, while every host has its own modification times.
func (m *Manifest) EncodeMTimes(w io.Writer, mtimes []int64) error {
	if mtimes != nil && len(mtimes) != len(m.Entries) {
		return fmt.Errorf("manifest: %d mtimes for %d entries", len(mtimes), len(m.Entries))
	}
	zw := gzip.NewWriter(w)
	bw := bufio.NewWriter(zw)
	bw.WriteString(manifestHeader + "\n")
	enc := json.NewEncoder(bw)
	for i := range m.Entries {
		e := m.Entries[i]
		if mtimes != nil {
			e.MTime = mtimes[i]
		}
		if err := enc.Encode(&e); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return zw.Close()
}

// Bytes encodes the manifest into memory.
func (m *Manifest) Bytes() ([]byte, error) {
	var b bytes.Buffer
	err := m.Encode(&b)
	return b.Bytes(), err
}

// maxManifestEntries bounds what a (possibly corrupted or hostile) stored
// manifest can make us allocate.
const maxManifestEntries = 10_000_000

// DecodeManifest reads what Encode wrote and checks every entry, because the
// file comes from a server that other people can write to.
func DecodeManifest(r io.Reader) (*Manifest, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	defer zr.Close()
	return DecodeManifestJSON(zr)
}

// DecodeManifestJSON reads a manifest already decompressed.
func DecodeManifestJSON(r io.Reader) (*Manifest, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	if !sc.Scan() || sc.Text() != manifestHeader {
		return nil, errors.New("manifest: missing or unknown header")
	}
	m := &Manifest{}
	seen := map[string]string{}
	for sc.Scan() {
		var e Entry
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("manifest entry %d: %w", len(m.Entries)+1, err)
		}
		if err := e.validate(); err != nil {
			return nil, fmt.Errorf("manifest entry %d: %w", len(m.Entries)+1, err)
		}
		if _, dup := seen[e.Path]; dup {
			return nil, fmt.Errorf("manifest entry %d: %q listed twice", len(m.Entries)+1, e.Path)
		}
		if dir := path.Dir(e.Path); dir != "." && seen[dir] != TypeDir {
			return nil, fmt.Errorf("manifest entry %d: %q comes before its directory", len(m.Entries)+1, e.Path)
		}
		seen[e.Path] = e.Type
		m.Entries = append(m.Entries, e)
		if len(m.Entries) > maxManifestEntries {
			return nil, errors.New("manifest: too many entries")
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return m, nil
}

func (e *Entry) validate() error {
	if err := validEntryPath(e.Path); err != nil {
		return err
	}
	switch e.Type {
	case TypeDir:
		if e.Size != 0 || e.Hash != "" || e.Target != "" {
			return fmt.Errorf("%q: directory with file fields", e.Path)
		}
	case TypeFile:
		if e.Size < 0 {
			return fmt.Errorf("%q: negative size", e.Path)
		}
		if b, err := hex.DecodeString(e.Hash); err != nil || len(b) != 32 {
			return fmt.Errorf("%q: bad hash", e.Path)
		}
	case TypeSymlink:
		if e.Target == "" || strings.ContainsRune(e.Target, 0) {
			return fmt.Errorf("%q: bad symlink target", e.Path)
		}
	default:
		return fmt.Errorf("%q: unknown type %q", e.Path, e.Type)
	}
	if e.Mode&^0o7777 != 0 {
		return fmt.Errorf("%q: bad mode %o", e.Path, e.Mode)
	}
	return nil
}

// validEntryPath accepts clean relative paths with no . or .. elements.
func validEntryPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) || path.Clean(p) != p {
		return fmt.Errorf("bad path %q", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == "." || part == ".." {
			return fmt.Errorf("bad path %q", p)
		}
	}
	return nil
}
