package deploy

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy/remote"
)

// makeWritable creates writable-dirs and opens them to the owner and group
// (recursively where a shell is available).
func (h *Host) makeWritable(ctx context.Context) error {
	if len(h.S.WritableDirs) == 0 {
		return nil
	}
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
		var out strings.Builder
		if err := h.T.Exec(ctx, remote.Writable.Command(paths...), nil, &out, &out); err != nil {
			return fmt.Errorf("make writable %s: %v: %s", strings.Join(h.S.WritableDirs, ", "), err, strings.TrimSpace(out.String()))
		}
		return nil
	}
	for i, p := range paths {
		info, err := h.T.Lstat(ctx, p)
		if err == nil && info.Mode()&fs.ModeSymlink != 0 {
			info, err = nil, nil // a shared dir: Chmod follows the link
		}
		mode := fs.FileMode(0o775)
		if info != nil {
			mode = info.Mode().Perm() | 0o770
		}
		if err := h.T.Chmod(ctx, p, mode); err != nil {
			return fmt.Errorf("make writable %s: %w", h.S.WritableDirs[i], err)
		}
	}
	return nil
}
