package release

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf16"
	"unicode/utf8"
)

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
