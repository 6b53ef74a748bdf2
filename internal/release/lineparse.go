package release

import (
	"encoding/hex"
	"math"
)

// parseLine reads a manifest line into e when it is exactly in the form
// appendLine writes and its strings are plain printable ASCII (nearly every
// line), and reports whether it did. Every other line goes through
// encoding/json, which gives the same Entry for the lines parseLine reads
// (FuzzParseLine), at a cost of about 2 KB of garbage and 4 µs a line.
// The path is returned as bytes (in line) for the caller to share.
func parseLine(line []byte, e *Entry) (path []byte, ok bool) {
	p := lineParser{b: line}
	var v Entry
	if !p.lit(`{"p":`) {
		return nil, false
	}
	if path, ok = p.str(); !ok {
		return nil, false
	}
	if !p.lit(`,"t":"`) || p.i+2 > len(line) || line[p.i+1] != '"' {
		return nil, false
	}
	switch t := EntryType(line[p.i]); t {
	case TypeDir, TypeFile, TypeSymlink:
		v.Type = t
	default:
		return nil, false
	}
	p.i += 2
	if p.lit(`,"m":`) {
		n, ok := p.int()
		if !ok || n < 0 || n > math.MaxUint32 {
			return nil, false
		}
		v.Mode = uint32(n)
	}
	if p.lit(`,"s":`) {
		if v.Size, ok = p.int(); !ok {
			return nil, false
		}
	}
	if p.lit(`,"h":"`) {
		const n = 2 * len(Digest{})
		if p.i+n+1 > len(line) || line[p.i+n] != '"' {
			return nil, false
		}
		for _, c := range line[p.i : p.i+n] {
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return nil, false // upper case too: encoding/json's way is the reference
			}
		}
		hex.Decode(v.Hash[:], line[p.i:p.i+n])
		p.i += n + 1
	}
	if p.lit(`,"l":`) {
		target, ok := p.str()
		if !ok {
			return nil, false
		}
		v.Target = string(target)
	}
	if p.lit(`,"mt":`) {
		if v.MTime, ok = p.int(); !ok {
			return nil, false
		}
	}
	if !p.lit("}") || p.i != len(line) {
		return nil, false
	}
	*e = v
	return path, true
}

type lineParser struct {
	b []byte
	i int
}

// lit consumes s if it comes next.
func (p *lineParser) lit(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// str consumes a quoted string of printable ASCII without escapes, which
// JSON reads as it is.
func (p *lineParser) str() ([]byte, bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return nil, false
	}
	for j := p.i + 1; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			s := p.b[p.i+1 : j]
			p.i = j + 1
			return s, true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return nil, false
		}
	}
	return nil, false
}

// int consumes a JSON integer in its shortest form (no leading zeros, no
// "-0") that fits an int64; 0 itself is never written (omitempty).
func (p *lineParser) int() (int64, bool) {
	neg := p.i < len(p.b) && p.b[p.i] == '-'
	j := p.i
	if neg {
		j++
	}
	if j >= len(p.b) || p.b[j] < '1' || p.b[j] > '9' {
		return 0, false
	}
	var u uint64
	for ; j < len(p.b) && p.b[j] >= '0' && p.b[j] <= '9'; j++ {
		d := uint64(p.b[j] - '0')
		if u > (math.MaxUint64-d)/10 {
			return 0, false
		}
		u = u*10 + d
	}
	var v int64
	switch {
	case !neg && u <= math.MaxInt64:
		v = int64(u)
	case neg && u <= 1<<63:
		v = int64(-u) // -(1<<63) wraps to itself
	default:
		return 0, false
	}
	p.i = j
	return v, true
}
