// Package release prepares what gets deployed: it runs the build, walks the
// source with the excludes, and describes every entry in a Manifest (path,
// type, mode, size, content hash, link target). The manifest is stored on the
// server with each release so the next deploy can tell what it may reuse.
package release

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// IDLayout is the layout of release ids: the UTC time the release was made
// (time.Format), so that ids sort in the order releases were made.
const IDLayout = "20060102150405"

// EntryType says what an entry is: one byte in memory, its letter in JSON.
type EntryType byte

// Entry types.
const (
	TypeDir     EntryType = 'd'
	TypeFile    EntryType = 'f'
	TypeSymlink EntryType = 'l'
)

// String is the letter, "" for the zero EntryType.
func (t EntryType) String() string {
	if t == 0 {
		return ""
	}
	return string([]byte{byte(t)})
}

// MarshalText writes the letter.
func (t EntryType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText reads a letter; empty text is the zero EntryType, which
// no entry may have.
func (t *EntryType) UnmarshalText(text []byte) error {
	switch v := EntryType(0); {
	case len(text) == 0:
		*t = 0
	case len(text) == 1:
		v = EntryType(text[0])
		if v != TypeDir && v != TypeFile && v != TypeSymlink {
			return fmt.Errorf("unknown type %q", text)
		}
		*t = v
	default:
		return fmt.Errorf("unknown type %q", text)
	}
	return nil
}

// Entry describes one path of a release.
type Entry struct {
	Path   string    `json:"p"`           // slash-separated, relative to the release root
	Type   EntryType `json:"t"`           // TypeDir, TypeFile or TypeSymlink
	Mode   uint32    `json:"m,omitempty"` // permission bits (files and dirs)
	Size   int64     `json:"s,omitempty"`
	Hash   Digest    `json:"h,omitzero"`  // SHA-256 of a file's content, hex in JSON
	Target string    `json:"l,omitempty"` // a symlink's target, verbatim
	// MTime is the file's modification time on the server (unix ns) as seen
	// right after the release was written; the next deploy compares it to
	// detect files edited after the deploy, which must not be reused.
	MTime int64 `json:"mt,omitempty"`

	src *source // where a new release's file content comes from; nil when decoded
}

// source is kept behind a pointer: decoded manifests (one per host and
// deploy, 100,000 entries for a large app) do not carry its fields, and
// the files of a walked tree all share one (the root), so no entry holds
// its full local path.
type source struct {
	root string // the directory the file's Path is relative to on the runner
	data []byte // content held in memory (generated files such as REVISION)
}

// local is the file's path on the runner, "" when its content is in memory.
func (e *Entry) local() string {
	if e.src == nil || e.src.root == "" {
		return ""
	}
	return filepath.Join(e.src.root, filepath.FromSlash(e.Path))
}

// Open returns the content of a file entry from the runner.
func (e *Entry) Open() (io.ReadCloser, error) {
	if p := e.local(); p != "" {
		return openFile(p, e.Size)
	}
	var data []byte
	if e.src != nil {
		data = e.src.data
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// Digest is a SHA-256 content hash. It is held as 32 bytes (a manifest of
// 100,000 files holds 100,000 of them) and written in JSON as 64 lowercase
// hex digits; the zero Digest means none and is left out.
type Digest [32]byte

// IsZero reports whether d is no hash at all.
func (d Digest) IsZero() bool { return d == Digest{} }

// String is the hex form, "" for the zero Digest.
func (d Digest) String() string {
	if d.IsZero() {
		return ""
	}
	return hex.EncodeToString(d[:])
}

// MarshalText writes the hex form (nothing for the zero Digest, which
// omitzero leaves out of a manifest anyway).
func (d Digest) MarshalText() ([]byte, error) {
	if d.IsZero() {
		return []byte{}, nil
	}
	b := make([]byte, hex.EncodedLen(len(d)))
	hex.Encode(b, d[:])
	return b, nil
}

var errBadHash = errors.New("bad hash")

// UnmarshalText reads 64 hex digits; empty text is the zero Digest.
func (d *Digest) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*d = Digest{}
		return nil
	}
	var v Digest
	if len(text) != hex.EncodedLen(len(v)) {
		return errBadHash
	}
	if _, err := hex.Decode(v[:], text); err != nil {
		return errBadHash
	}
	*d = v
	return nil
}

// ParseDigest reads the hex form of a SHA-256 hash.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if s == "" {
		return d, errBadHash
	}
	if err := d.UnmarshalText([]byte(s)); err != nil {
		return Digest{}, err
	}
	return d, nil
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

// trim drops the room that appending one entry at a time left at the end of
// Entries: up to a quarter more than a large manifest holds, kept for as
// long as the manifest is.
func (m *Manifest) trim() {
	if cap(m.Entries)-len(m.Entries) > len(m.Entries)/64 {
		m.Entries = slices.Clone(m.Entries)
	}
}

// Entry is the entry of path p, or nil: a pass over the entries, for a
// few lookups where an Index would cost more than it saves.
func (m *Manifest) Entry(p string) *Entry {
	for i := range m.Entries {
		if m.Entries[i].Path == p {
			return &m.Entries[i]
		}
	}
	return nil
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

// gzipWriters are compressors for manifests, reused (Reset writes the same
// bytes as a new one): a new one allocates about 1 MB, several times the
// work of compressing a manifest of a few hundred files, and a fleet's
// deploy encodes one for every host.
var gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}

// EncodeMTimes is Encode with each entry's MTime taken from mtimes (same
// order as Entries) when it is not nil: the manifest of a fleet is shared
// by all hosts, while every host has its own modification times.
func (m *Manifest) EncodeMTimes(w io.Writer, mtimes []int64) error {
	if mtimes != nil && len(mtimes) != len(m.Entries) {
		return fmt.Errorf("manifest: %d mtimes for %d entries", len(mtimes), len(m.Entries))
	}
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(w)
	bw := bufio.NewWriter(zw)
	bw.WriteString(manifestHeader + "\n")
	var line []byte
	for i := range m.Entries {
		e := &m.Entries[i]
		mtime := e.MTime
		if mtimes != nil {
			mtime = mtimes[i]
		}
		line = appendLine(line[:0], e, mtime)
		if _, err := bw.Write(line); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return zw.Close()
}

// appendLine appends e's line of a stored manifest, with mtime for its
// MTime: the bytes encoding/json writes for the Entry (the form servers
// hold, and an unchanged entry must give the same line in every deploy;
// TestManifestLinesUnchanged and FuzzAppendLine pin both), without its
// reflection and allocations, except that a byte of a path or link target
// that is not UTF-8 is kept (see appendJSONString).
func appendLine(b []byte, e *Entry, mtime int64) []byte {
	b = append(b, `{"p":`...)
	b = appendJSONString(b, e.Path)
	b = append(b, `,"t":`...)
	b = appendJSONString(b, e.Type.String())
	if e.Mode != 0 {
		b = append(b, `,"m":`...)
		b = strconv.AppendUint(b, uint64(e.Mode), 10)
	}
	if e.Size != 0 {
		b = append(b, `,"s":`...)
		b = strconv.AppendInt(b, e.Size, 10)
	}
	if !e.Hash.IsZero() {
		b = append(b, `,"h":"`...)
		b = hex.AppendEncode(b, e.Hash[:])
		b = append(b, '"')
	}
	if e.Target != "" {
		b = append(b, `,"l":`...)
		b = appendJSONString(b, e.Target)
	}
	if mtime != 0 {
		b = append(b, `,"mt":`...)
		b = strconv.AppendInt(b, mtime, 10)
	}
	return append(b, "}\n"...)
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
	var entries chunkedEntries
	seen := map[string]EntryType{}
	paths := newPathSharer()
	for sc.Scan() {
		n := entries.n + 1
		var e Entry
		if p, ok := parseLine(sc.Bytes(), &e); ok {
			e.Path = paths.shareBytes(p)
		} else {
			je, err := decodeLine(sc.Bytes())
			if err != nil {
				return nil, fmt.Errorf("manifest entry %d: %w", n, err)
			}
			e = je
			e.Path = paths.share(e.Path)
		}
		if err := e.validate(); err != nil {
			return nil, fmt.Errorf("manifest entry %d: %w", n, err)
		}
		if _, dup := seen[e.Path]; dup {
			return nil, fmt.Errorf("manifest entry %d: %q listed twice", n, e.Path)
		}
		if dir := path.Dir(e.Path); dir != "." && seen[dir] != TypeDir {
			return nil, fmt.Errorf("manifest entry %d: %q comes before its directory", n, e.Path)
		}
		seen[e.Path] = e.Type
		entries.add(e)
		if entries.n > maxManifestEntries {
			return nil, errors.New("manifest: too many entries")
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return &Manifest{Entries: entries.all()}, nil
}

// chunkedEntries collects entries of a number not known in advance in
// chunks, then into one slice of the right size: for 100,000 entries that
// allocates 2 times what they take, where appending to one slice (growing
// by a quarter when large) allocated 5 times.
type chunkedEntries struct {
	full [][]Entry
	cur  []Entry
	n    int
}

func (c *chunkedEntries) add(e Entry) {
	if len(c.cur) == cap(c.cur) {
		if c.cur != nil {
			c.full = append(c.full, c.cur)
		}
		c.cur = make([]Entry, 0, min(max(2*cap(c.cur), 64), 8192))
	}
	c.cur = append(c.cur, e)
	c.n++
}

func (c *chunkedEntries) all() []Entry {
	if len(c.full) == 0 {
		return slices.Clip(c.cur)
	}
	out := make([]Entry, 0, c.n)
	for _, ch := range c.full {
		out = append(out, ch...)
	}
	return append(out, c.cur...)
}

func (e *Entry) validate() error {
	if err := validEntryPath(e.Path); err != nil {
		return err
	}
	switch e.Type {
	case TypeDir:
		if e.Size != 0 || !e.Hash.IsZero() || e.Target != "" {
			return fmt.Errorf("%q: directory with file fields", e.Path)
		}
	case TypeFile:
		if e.Size < 0 {
			return fmt.Errorf("%q: negative size", e.Path)
		}
		if e.Hash.IsZero() {
			return fmt.Errorf("%q: %w", e.Path, errBadHash)
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
	for part := range strings.SplitSeq(p, "/") {
		if part == "." || part == ".." {
			return fmt.Errorf("bad path %q", p)
		}
	}
	return nil
}
