package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"

	"github.com/klauspost/compress/gzip"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// A release's seal is the listing of its files (size, mtime, inode,
// ctime) that the server takes once the release is finished, before it can
// go live (remote/lib/finish.sh), kept as manifests/<id>.seal. A release's
// files are its own (no other release shares an inode), so from then on
// only a write into a file changes what a listing says of it, even one
// that puts the size and mtime back (touch -r). The next deploy reuses a
// file of the live release only where it is still as sealed, and names
// those that are not: someone edited the live release in place.
//
// Where there is no seal (an SFTP-only server, whose listings carry no
// ctime; reuse: hardlink, where linking changes the ctime; a release from
// before seals), reuse falls back to size and mtime.

// seals reports whether this deploy seals its release.
func (h *Host) seals() bool { return h.canExec() && h.S.Reuse != ReuseHardlink }

// unsealed splits a listing of the live release into the entries still as
// sealed and the paths of the files that are not (changed in place, or
// replaced). Files below skip (writable-dirs, written on purpose) are left
// out of the listing but not named. Without a seal, scan is kept whole.
func unsealed(scan, seal []transport.Stat, skip []string) (kept []transport.Stat, edited []string) {
	if seal == nil {
		return scan, nil
	}
	kept = make([]transport.Stat, 0, len(scan))
	for _, s := range scan {
		i, ok := sort.Find(len(seal), func(i int) int { return strings.Compare(s.Path, seal[i].Path) })
		if !s.Mode.IsRegular() || ok && sameFile(s, seal[i]) {
			kept = append(kept, s)
			continue
		}
		if ok && !under(s.Path, skip) {
			edited = append(edited, s.Path)
		}
	}
	return kept, edited
}

// sameFile reports whether two listings of a path describe the same file,
// untouched.
func sameFile(a, b transport.Stat) bool {
	return a.Mode.Perm() == b.Mode.Perm() && a.Mode.Type() == b.Mode.Type() && a.Size == b.Size && a.ModTime.Equal(b.ModTime) && a.Inode == b.Inode && a.ChangeTime.Equal(b.ChangeTime)
}

// parseSeal reads a stored seal (gzip'd list_tree output).
func parseSeal(data []byte) ([]transport.Stat, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	seal, err := transport.ParseFind(bufio.NewReader(zr))
	if err != nil {
		return nil, err
	}
	if !slices.IsSortedFunc(seal, byStatPath) {
		slices.SortFunc(seal, byStatPath)
	}
	return seal, nil
}

// readSeal reads release id's seal; nil when there is none (a release
// from before seals, or one that could not be sealed) or it is unreadable.
func readSeal(ctx context.Context, t transport.Transport, l Layout, id string, warn func(string, ...any)) []transport.Stat {
	if id == "" {
		return nil
	}
	data, err := t.ReadFile(ctx, l.Seal(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil {
		var seal []transport.Stat
		if seal, err = parseSeal(data); err == nil {
			return seal
		}
	}
	warn("cannot read the seal of release %s, reusing its files by size and mtime: %v", id, fmt.Errorf("%s: %w", l.Seal(id), err))
	return nil
}
