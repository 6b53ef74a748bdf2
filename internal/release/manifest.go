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
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/klauspost/compress/gzip"
)

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
		return openFile(p)
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

// appendJSONString quotes s as encoding/json does by default: \", \\, the
// short escapes, \u00XX for other control bytes and for <, > and &, and
// \u2028 and \u2029 escaped; but a byte that is not UTF-8 (0x80-0xff) is
// written as the lone surrogate \udc80-\udcff, where encoding/json writes
// \ufffd for every such byte: file names are bytes, and two that differ
// only there must stay two names (decodeJSONString reads them back). No
// UTF-8 text holds a surrogate and encoding/json never writes one alone,
// so the escape means nothing else, and every line of a name that is
// UTF-8 is what it always was. encoding/json (an older atomic-deploy)
// reads the escape as U+FFFD, as before.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', 'd', 'c', hexDigits[s[i]>>4], hexDigits[s[i]&0xF])
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
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

// storedLine is a manifest line as encoding/json reads it, with the path
// and link target read by decodeJSONString.
type storedLine struct {
	Path   storedString `json:"p"`
	Type   EntryType    `json:"t"`
	Mode   uint32       `json:"m,omitempty"`
	Size   int64        `json:"s,omitempty"`
	Hash   Digest       `json:"h,omitzero"`
	Target storedString `json:"l,omitempty"`
	MTime  int64        `json:"mt,omitempty"`
}

// decodeLine reads any line encoding/json reads (other key order, other
// escapes, keys in another case), the slow way.
func decodeLine(line []byte) (Entry, error) {
	var l storedLine // on the heap only here
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return Entry{}, err
	}
	return Entry{Path: string(l.Path), Type: l.Type, Mode: l.Mode, Size: l.Size, Hash: l.Hash, Target: string(l.Target), MTime: l.MTime}, nil
}

// storedString is a string of a manifest line: a byte that is not UTF-8
// is written \udc80-\udcff (see appendJSONString).
type storedString string

func (s *storedString) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil // as for a string: nothing changes
	}
	v, err := decodeJSONString(data)
	if err != nil {
		return err
	}
	*s = storedString(v)
	return nil
}

var errBadString = errors.New("bad string")

// decodeJSONString reads a JSON string literal (which encoding/json has
// checked) as encoding/json does, except that a lone \udc80-\udcff is the
// byte 0x80-0xff it stands for and a byte that is not UTF-8 is kept as it
// is (encoding/json makes both U+FFFD): a name is read back byte for byte.
func decodeJSONString(q []byte) (string, error) {
	if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' {
		return "", errBadString
	}
	q = q[1 : len(q)-1]
	b := make([]byte, 0, len(q))
	for i := 0; i < len(q); {
		if q[i] != '\\' {
			b = append(b, q[i])
			i++
			continue
		}
		if i+1 >= len(q) {
			return "", errBadString
		}
		switch c := q[i+1]; c {
		case '"', '\\', '/':
			b = append(b, c)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := hex4(q[i+2:])
			if !ok {
				return "", errBadString
			}
			i += 6
			switch {
			case r >= 0xdc80 && r <= 0xdcff:
				b = append(b, byte(r-0xdc00))
				continue
			case utf16.IsSurrogate(r):
				// A high surrogate and a low one are one rune; any other
				// surrogate is U+FFFD.
				if i+2 <= len(q) && q[i] == '\\' && q[i+1] == 'u' {
					if r2, ok := hex4(q[i+2:]); ok {
						if pair := utf16.DecodeRune(r, r2); pair != utf8.RuneError {
							b = utf8.AppendRune(b, pair)
							i += 6
							continue
						}
					}
				}
				r = utf8.RuneError
			}
			b = utf8.AppendRune(b, r)
			continue
		default:
			return "", errBadString
		}
		i += 2
	}
	return string(b), nil
}

// hex4 reads the 4 hex digits of a \u escape.
func hex4(s []byte) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
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
