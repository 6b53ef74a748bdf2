package deploy

import (
	"context"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy/remote"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
)

// protectOlderReleases keeps older releases byte-for-byte as deployed.
// Reused files are hard links, so a hook or chmod that writes into one in
// place also changes the older release holding the same inode. Any such
// file (its inode's change time moved) is rewritten in every older release
// from the runner's copy, under a new inode; the new release keeps what the
// hook made of it.
func (h *Host) protectOlderReleases(ctx context.Context) error {
	if len(h.linked) == 0 || !h.canExec() {
		return nil // without a shell nothing runs in the release that could write in place
	}
	dir := h.L.Release(h.ReleaseID)
	scan, err := h.T.Scan(ctx, dir)
	if err != nil {
		return fmt.Errorf("check linked files in %s: %w", dir, err)
	}
	changed := map[uint64]*release.Entry{}
	idx := h.manifest.Index()
	for _, s := range scan {
		before, ok := h.linked[s.Path]
		if ok && s.Inode == before.Inode && !s.ChangeTime.Equal(before.ChangeTime) {
			if e := idx[s.Path]; e != nil {
				changed[s.Inode] = e
			}
		}
	}
	if len(changed) == 0 {
		return nil
	}
	// One command names every older path holding those inodes.
	args := []string{h.L.Releases(), dir}
	for ino := range changed {
		args = append(args, strconv.FormatUint(ino, 10))
	}
	var out, errOut strings.Builder
	if err := h.T.Exec(ctx, remote.OlderCopies.Command(args...), nil, &out, &errOut); err != nil {
		return fmt.Errorf("find older copies of files changed in place: %v: %s", err, strings.TrimSpace(errOut.String()))
	}
	restored := 0
	for _, rec := range strings.Split(out.String(), "\x00") {
		inoText, p, ok := strings.Cut(rec, " ")
		if !ok {
			continue
		}
		ino, _ := strconv.ParseUint(inoText, 10, 64)
		e := changed[ino]
		if e == nil {
			continue
		}
		if err := h.rewrite(ctx, p, e); err != nil {
			return fmt.Errorf("restore %s in an older release after a hook changed it in place: %w", p, err)
		}
		restored++
	}
	h.Log.Warnf("%s: a hook changed %d reused file(s) in place; restored %d copies in older releases so they stay as deployed", h.Name, len(changed), restored)
	return nil
}

// rewrite replaces p with the runner's copy of e under a new inode.
func (h *Host) rewrite(ctx context.Context, p string, e *release.Entry) error {
	tmp := path.Join(path.Dir(p), ".atomic-deploy-restore-"+randomToken())
	r, err := e.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := h.T.Create(ctx, tmp, release.FileMode(e.Mode))
	if err != nil {
		return err
	}
	_, err = io.Copy(w, r)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = h.T.Rename(ctx, tmp, p)
	}
	if err != nil {
		h.T.Remove(ctx, tmp)
	}
	return err
}
