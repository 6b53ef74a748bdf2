package deploy

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy/remote"
)

// Writable modes (Settings.WritableMode); "" is WritableChmod.
const (
	WritableChmod = "chmod" // owner and group get rwX
	WritableACL   = "acl"   // WritableUser and the deploy user get rwX, inherited (setfacl)
	WritableChgrp = "chgrp" // the group becomes WritableUser, with rwX
)

// makeWritable creates writable-dirs and opens them as WritableMode says
// (recursively where a shell is available; chmod alone over SFTP).
func (h *Host) makeWritable(ctx context.Context) error {
	if len(h.S.WritableDirs) == 0 {
		return nil
	}
	mode := h.S.WritableMode // acl and chgrp need a shell: Open refuses a server without one
	dir := h.L.Release(h.ReleaseID)
	var paths []string
	for _, w := range h.S.WritableDirs {
		p := path.Join(dir, w)
		if err := h.T.MkdirAll(ctx, p, 0o775); err != nil {
			return fmt.Errorf("create writable dir %s: %w", w, err)
		}
		paths = append(paths, p)
	}
	if h.canExec() {
		args := paths
		if mode == WritableACL || mode == WritableChgrp {
			args = append([]string{mode, h.S.WritableUser}, paths...)
		}
		var out strings.Builder
		if err := h.T.Exec(ctx, remote.Writable.Command(args...), h.warmAhead(nil, h.S.BeforeActivate != "" || h.seals()), &out, &out); err != nil {
			return fmt.Errorf("make writable %s (writable-mode %s) on %s: %v: %s", strings.Join(h.S.WritableDirs, ", "), orChmod(mode), h.Name, err, strings.TrimSpace(out.String()))
		}
		return nil
	}
	for i, p := range paths {
		info, err := h.T.Lstat(ctx, p)
		if err == nil && info.Mode()&fs.ModeSymlink != 0 {
			info, err = nil, nil // a shared dir: Chmod follows the link
		}
		perm := fs.FileMode(0o775)
		if info != nil {
			perm = info.Mode().Perm() | 0o770
		}
		if err := h.T.Chmod(ctx, p, perm); err != nil {
			return fmt.Errorf("make writable %s: %w", h.S.WritableDirs[i], err)
		}
	}
	return nil
}

func orChmod(mode string) string {
	if mode == "" {
		return WritableChmod
	}
	return mode
}
