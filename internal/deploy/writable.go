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
// (recursively where a shell is available; chmod alone over SFTP), unless
// the upload's command did (tarUpload).
func (h *Host) makeWritable(ctx context.Context) error {
	if len(h.S.WritableDirs) == 0 || h.writableInUpload() {
		return nil
	}
	paths := h.writablePaths()
	if h.canExec() { // writable.sh creates them: no request per directory
		var out strings.Builder
		if err := h.T.Exec(ctx, remote.Writable.Command(h.writableArgs()...), h.warmAhead(nil, h.S.BeforeActivate != "" || h.seals()), &out, &out); err != nil {
			return h.writableError(fmt.Errorf("%v: %s", err, strings.TrimSpace(out.String())))
		}
		return nil
	}
	for i, p := range paths {
		if err := h.T.MkdirAll(ctx, p, 0o775); err != nil {
			return fmt.Errorf("create writable dir %s: %w", h.S.WritableDirs[i], err)
		}
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

// writableInUpload reports whether the upload's command makes
// writable-dirs writable, once the stream is in (remote/upload.sh): where
// the stream brings every shared path's link, so that a writable-dir that
// is one (storage) is already the shared directory.
func (h *Host) writableInUpload() bool { return h.streamCompletes() }

// writablePaths are writable-dirs in the new release.
func (h *Host) writablePaths() []string {
	var paths []string
	for _, w := range h.S.WritableDirs {
		paths = append(paths, path.Join(h.L.Release(h.ReleaseID), w))
	}
	return paths
}

// writableArgs are make_writable's arguments (remote/lib/writable.sh).
func (h *Host) writableArgs() []string {
	if mode := h.S.WritableMode; mode == WritableACL || mode == WritableChgrp {
		return append([]string{mode, h.S.WritableUser}, h.writablePaths()...)
	}
	return h.writablePaths()
}

func (h *Host) writableError(err error) error {
	return fmt.Errorf("make writable %s (writable-mode %s) on %s: %w", strings.Join(h.S.WritableDirs, ", "), orChmod(h.S.WritableMode), h.Name, err)
}

func orChmod(mode string) string {
	if mode == "" {
		return WritableChmod
	}
	return mode
}
