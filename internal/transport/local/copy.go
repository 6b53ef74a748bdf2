package local

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// Copy makes newpath a private copy of oldpath: the blocks are shared
// (FICLONE, copy-on-write) where the filesystem can (btrfs, XFS), else
// copied in the kernel (copy_file_range, through io.Copy). The copy is
// created exclusively and readable only by its owner until its content is
// in place; its permission bits are set last, since a write by a user
// other than root clears setuid and setgid.
func (*Transport) Copy(_ context.Context, oldpath, newpath string) error {
	if err := copyFile(oldpath, newpath); err != nil {
		return &os.LinkError{Op: "copy", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// CopyMethod is transport.CopyLocal.
func (*Transport) CopyMethod() string { return transport.CopyLocal }

func copyFile(oldpath, newpath string) (err error) {
	src, err := os.Open(oldpath)
	if err != nil {
		return unwrapPath(err)
	}
	defer src.Close()
	info, err := src.Stat()
	if err != nil {
		return unwrapPath(err)
	}
	if !info.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	dst, err := os.OpenFile(newpath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return unwrapPath(err)
	}
	defer func() {
		if cerr := dst.Close(); err == nil {
			err = unwrapPath(cerr)
		}
		if err != nil {
			os.Remove(newpath)
		}
	}()
	if err := unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())); err != nil {
		// Not offered here (ext4, tmpfs, another filesystem): copy.
		if _, err := io.Copy(dst, src); err != nil {
			return unwrapPath(err)
		}
	}
	return unwrapPath(dst.Chmod(info.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)))
}

// unwrapPath drops the *fs.PathError of one of the two paths, which the
// *os.LinkError around it names already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
