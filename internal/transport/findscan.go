package transport

import (
	"bufio"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"
)

// FindFormat prints eight NUL-terminated fields per entry (names may
// contain any byte but NUL, newlines included): path, type, mode, size,
// mtime, inode, link count, ctime.
const FindFormat = `%P\0%y\0%m\0%s\0%T@\0%i\0%n\0%C@\0`

const findFields = 8

// ListTree is shell that defines list_tree ROOT, the listing ParseFind
// reads (see find.sh). A script that lists a tree starts with it.
//
//go:embed find.sh
var ListTree string

// ParseFind reads NUL-terminated records of findFields fields, ended by a
// trailer of an empty field (no entry has an empty path) and find's status.
func ParseFind(r *bufio.Reader) ([]Stat, error) {
	var stats []Stat
	var rec [findFields]string
	for {
		first, err := r.ReadString(0)
		if err != nil {
			return nil, errors.New("find output ended early (connection lost?)")
		}
		first = first[:len(first)-1]
		if first == "" {
			code, err := r.ReadString(0)
			if err != nil {
				return nil, errors.New("find output ended early (connection lost?)")
			}
			if code = code[:len(code)-1]; code != "0" {
				return nil, fmt.Errorf("find exited with status %s", code)
			}
			sort.Slice(stats, func(i, j int) bool { return stats[i].Path < stats[j].Path })
			return stats, nil
		}
		rec[0] = first
		for i := 1; i < findFields; i++ {
			f, err := r.ReadString(0)
			if err != nil {
				return nil, errors.New("find output ended inside a record")
			}
			rec[i] = f[:len(f)-1]
		}
		st, err := parseFindRecord(rec)
		if err != nil {
			return nil, err
		}
		stats = append(stats, st)
	}
}

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
		frac = (frac + "000000000")[:9]
		nsec, _ = strconv.ParseInt(frac, 10, 64)
	}
	return time.Unix(sec, nsec), nil
}
