package transport

import (
	"bufio"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FindFormat prints eight NUL-terminated fields per entry (names may
// contain any byte but NUL, newlines included): path, type, mode, size,
// mtime, inode, link count, ctime.
const FindFormat = `%P\0%y\0%m\0%s\0%T@\0%i\0%n\0%C@\0`

const findFields = 8

// maxFindHint bounds what a size hint makes ParseFindSized allocate before
// a single record is read.
const maxFindHint = 1 << 20

// ListTree is shell that defines list_tree ROOT, the listing ParseFind
// reads (see find.sh). A script that lists a tree starts with it.
//
//go:embed find.sh
var ListTree string

// ParseFind reads NUL-terminated records of findFields fields, ended by a
// trailer of an empty field (no entry has an empty path) and find's status.
func ParseFind(r *bufio.Reader) ([]Stat, error) { return ParseFindSized(r, 0) }

// ParseFindSized is ParseFind with room made for about n records at once:
// growing a listing of 5,000 files by appending (clearing and copying ever
// larger arrays) was over 40 % of what parsing it cost a fleet's client.
func ParseFindSized(r *bufio.Reader, n int) ([]Stat, error) {
	var stats []Stat // nil for an empty listing
	// Whole records are gathered in pending and made one string per
	// findChunk bytes, which their fields are cut from: a string a record
	// made a 5,000-file listing 5,000 allocations (now ~40) and cost a
	// quarter of its parse.
	pending := make([]byte, 0, findChunk+4<<10)
	var ends []int // where each record in pending ends
	flush := func() error {
		chunk := string(pending)
		var rec [findFields]string
		begin := 0
		for _, end := range ends {
			fields := chunk[begin:end]
			for i := range rec {
				cut := strings.IndexByte(fields, 0)
				rec[i], fields = fields[:cut], fields[cut+1:]
			}
			st, err := parseFindRecord(rec)
			if err != nil {
				return err
			}
			if stats == nil {
				stats = make([]Stat, 0, min(max(n, 1), maxFindHint))
			}
			stats = append(stats, st)
			begin = end
		}
		pending, ends = pending[:0], ends[:0]
		return nil
	}
	for {
		begin := len(pending)
		for n := 0; n < findFields; {
			b, err := r.ReadSlice(0)
			pending = append(pending, b...)
			switch {
			case errors.Is(err, bufio.ErrBufferFull):
				continue // a field longer than r's buffer
			case err != nil && n == 0 && len(pending) == begin:
				return nil, errors.New("find output ended early (connection lost?)")
			case err != nil:
				return nil, errors.New("find output ended inside a record")
			}
			n++
			if n == 1 && len(pending) == begin+1 {
				// An empty path: the trailer, find's status.
				pending = pending[:begin]
				code, err := r.ReadString(0)
				if err != nil {
					return nil, errors.New("find output ended early (connection lost?)")
				}
				if code = code[:len(code)-1]; code != "0" {
					return nil, fmt.Errorf("find exited with status %s", code)
				}
				if err := flush(); err != nil {
					return nil, err
				}
				slices.SortFunc(stats, func(a, b Stat) int { return strings.Compare(a.Path, b.Path) })
				return stats, nil
			}
		}
		ends = append(ends, len(pending))
		if len(pending) >= findChunk {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
}

// ShapeFormat is the part of a listing of regular files that servers
// holding the same files print alike (list_tree's SHAPE): type, mode, size
// and mtime, then the path, in one NUL-terminated record per entry whose fields are cut at
// the first four slashes (a path may hold slashes, never NUL).
const ShapeFormat = `%y/%m/%s/%T@/%P\0`

// ParseShape reads records of ShapeFormat, in any order, into Stats sorted
// by path that carry no inode, link count or change time.
func ParseShape(r io.Reader) ([]Stat, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	// One string for all the records, which their paths are cut from.
	all := string(data)
	stats := make([]Stat, 0, strings.Count(all, "\x00"))
	for all != "" {
		rec, rest, ok := strings.Cut(all, "\x00")
		if !ok {
			return nil, errors.New("shape: the last record is cut")
		}
		all = rest
		var f [4]string
		for i := range f {
			var found bool
			if f[i], rec, found = strings.Cut(rec, "/"); !found {
				return nil, fmt.Errorf("shape: a record of %d fields, not 5", i+1)
			}
		}
		if rec == "" {
			return nil, errors.New("shape: a record without a path")
		}
		st, err := parseFindRecord([findFields]string{rec, f[0], f[1], f[2], f[3], "0", "0", "0"})
		if err != nil {
			return nil, err
		}
		st.ChangeTime = time.Time{}
		stats = append(stats, st)
	}
	slices.SortFunc(stats, func(a, b Stat) int { return strings.Compare(a.Path, b.Path) })
	return stats, nil
}

// findChunk is about how many bytes of records share one string.
const findChunk = 64 << 10

func parseFindRecord(rec [findFields]string) (Stat, error) {
	perm, err := strconv.ParseUint(rec[2], 8, 32)
	if err != nil {
		return Stat{}, fmt.Errorf("find: bad mode %q for %q", rec[2], rec[0])
	}
	size, err := strconv.ParseInt(rec[3], 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("find: bad size %q for %q", rec[3], rec[0])
	}
	mtime, err := ParseUnixTime(rec[4])
	if err != nil {
		return Stat{}, fmt.Errorf("find: %w for %q", err, rec[0])
	}
	inode, err1 := strconv.ParseUint(rec[5], 10, 64)
	links, err2 := strconv.ParseUint(rec[6], 10, 64)
	ctime, err3 := ParseUnixTime(rec[7])
	if err := errors.Join(err1, err2, err3); err != nil {
		return Stat{}, fmt.Errorf("find: %w for %q", err, rec[0])
	}
	return Stat{
		Path:       rec[0],
		Mode:       findMode(rec[1], uint32(perm)),
		Size:       size,
		ModTime:    mtime,
		Precise:    true,
		Inode:      inode,
		Links:      links,
		ChangeTime: ctime,
	}, nil
}

// findMode builds an fs.FileMode from find's %y type letter and %m octal
// permissions, the way pkg/sftp does from st_mode.
func findMode(typ string, perm uint32) fs.FileMode {
	m := fs.FileMode(perm & 0o777)
	if perm&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if perm&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if perm&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch typ {
	case "f":
	case "d":
		m |= fs.ModeDir
	case "l":
		m |= fs.ModeSymlink
	case "p":
		m |= fs.ModeNamedPipe
	case "s":
		m |= fs.ModeSocket
	case "c":
		m |= fs.ModeDevice | fs.ModeCharDevice
	case "b":
		m |= fs.ModeDevice
	default:
		m |= fs.ModeIrregular
	}
	return m
}

// ParseUnixTime parses "seconds[.fraction]" as printed by date +%s.%N and
// find %T@ (a date without %N support prints a literal "N": ignored).
func ParseUnixTime(s string) (time.Time, error) {
	secStr, frac, _ := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(secStr, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad timestamp %q", s)
	}
	var nsec int64
	if frac != "" && strings.Trim(frac, "0123456789") == "" {
		for i := range 9 { // nanoseconds: the first nine digits, padded
			nsec *= 10
			if i < len(frac) {
				nsec += int64(frac[i] - '0')
			}
		}
	}
	return time.Unix(sec, nsec), nil
}
