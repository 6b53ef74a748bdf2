package sshx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/sftp"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// existsStatus is what link.sh exits with when newpath exists, so it can be
// reported as fs.ErrExist.
const existsStatus = 17

// do runs one SFTP request under the in-flight limit. pkg/sftp requests take
// no context, so ctx is honoured while waiting for a slot, not mid-request.
func (t *Transport) do(ctx context.Context, f func() error) error {
	if err := t.Ready(ctx); err != nil {
		return err
	}
	if err := acquire(ctx, t.sem); err != nil {
		return err
	}
	defer release(t.sem)
	return f()
}

// opErr wraps err with the operation and path, dropping a *fs.PathError
// layer that pkg/sftp sometimes adds for the same path.
func opErr(op, p string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == p {
		err = pe.Err
	}
	return fmt.Errorf("%s %s: %w", op, p, err)
}

// isFailure reports SSH_FX_FAILURE, from pkg/sftp or the copy-data
// channel: what OpenSSH answers for every errno SFTP v3 has no code for
// (EEXIST, ENOSPC, EDQUOT, ...).
func isFailure(err error) bool {
	var se *sftp.StatusError
	var fx *fxStatus
	return errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxFailure || errors.As(err, &fx) && fx.code == fxFailure
}

// existsErr turns the generic SSH_FX_FAILURE that OpenSSH answers for EEXIST
// into fs.ErrExist when p turns out to exist.
func (t *Transport) existsErr(p string, err error) error {
	if isFailure(err) {
		if _, lerr := t.sftp.Lstat(p); lerr == nil {
			return fs.ErrExist
		}
	}
	return err
}

// Mkdir creates one directory with exactly perm (the server's umask would
// otherwise apply); an existing path fails with fs.ErrExist.
func (t *Transport) Mkdir(ctx context.Context, p string, perm fs.FileMode) error {
	err := t.do(ctx, func() error {
		if err := t.sftp.Mkdir(p); err != nil {
			return t.noSpace(p, t.existsErr(p, err))
		}
		return t.sftp.Chmod(p, perm)
	})
	if err != nil {
		return opErr("mkdir", p, err)
	}
	return nil
}

// MkdirAll creates p and missing parents, each with exactly perm.
func (t *Transport) MkdirAll(ctx context.Context, p string, perm fs.FileMode) error {
	var missing []string
	for d := path.Clean(p); ; d = path.Dir(d) {
		fi, err := t.stat(ctx, d)
		if err == nil {
			if !fi.IsDir() {
				return opErr("mkdir", d, syscall.ENOTDIR)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return opErr("mkdir", d, err)
		}
		missing = append(missing, d)
		if d == "/" || d == "." {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		// Another goroutine may create the same parent meanwhile.
		if err := t.Mkdir(ctx, missing[i], perm); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return nil
}

func (t *Transport) stat(ctx context.Context, p string) (fi fs.FileInfo, err error) {
	err = t.do(ctx, func() error {
		fi, err = t.sftp.Stat(p)
		return err
	})
	return fi, err
}

// Create makes a new file exclusively and sets exactly perm. The returned
// *sftp.File implements io.ReaderFrom with concurrent writes.
func (t *Transport) Create(ctx context.Context, p string, perm fs.FileMode) (io.WriteCloser, error) {
	var f *sftp.File
	err := t.do(ctx, func() error {
		var err error
		f, err = t.sftp.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err != nil {
			return t.existsErr(p, err)
		}
		if err := f.Chmod(perm); err != nil {
			f.Close()
			t.sftp.Remove(p)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, opErr("create", p, t.noSpace(p, err))
	}
	w := &file{File: f, t: t, path: p}
	if perm&(fs.ModeSetuid|fs.ModeSetgid|0o6000) != 0 {
		return &setIDFile{file: w, perm: perm}, nil
	}
	return w, nil
}

// file is a file being written; it says when a write failed for a full disk.
type file struct {
	*sftp.File
	t    *Transport
	path string
}

func (f *file) Write(b []byte) (int, error) {
	n, err := f.File.Write(b)
	return n, f.t.noSpace(f.path, err)
}

// ReadFrom keeps pkg/sftp's concurrent writes for io.Copy.
func (f *file) ReadFrom(r io.Reader) (int64, error) {
	n, err := f.File.ReadFrom(r)
	return n, f.t.noSpace(f.path, err)
}

func (f *file) Close() error { return f.t.noSpace(f.path, f.File.Close()) }

// noSpace explains the generic SSH_FX_FAILURE that OpenSSH's sftp-server
// answers for ENOSPC and EDQUOT (SFTP v3 has no code for a full disk): when
// the filesystem of p has less than 1 MiB or no inode left for this user,
// the error wraps syscall.ENOSPC and says how much is free.
func (t *Transport) noSpace(p string, err error) error {
	if err == nil || !isFailure(err) {
		return err
	}
	vfs, verr := t.sftp.StatVFS(path.Dir(p))
	if verr != nil {
		return err
	}
	free := vfs.Frsize * vfs.Bavail
	if free >= 1<<20 && (vfs.Files == 0 || vfs.Favail > 0) {
		return err
	}
	return fmt.Errorf("%w: the server's disk is full (%d KiB and %d inodes free for this user; SFTP said %v)",
		syscall.ENOSPC, free/1024, vfs.Favail, err)
}

// setIDFile applies perm again on Close: a write by a non-root user clears
// the setuid and setgid bits that Create set.
type setIDFile struct {
	*file
	perm fs.FileMode
}

func (f *setIDFile) Close() error {
	err := f.File.Chmod(f.perm)
	if cerr := f.file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return opErr("close", f.Name(), err)
	}
	return nil
}

// WriteFile writes a temporary file next to p and renames it over p.
func (t *Transport) WriteFile(ctx context.Context, p string, data []byte, perm fs.FileMode) error {
	tmp := path.Join(path.Dir(p), "."+path.Base(p)+".tmp-"+randomSuffix())
	// Three round trips: open; the content and the mode together; the
	// rename. The handle is closed afterwards without waiting: the server
	// wrote the data when it answered, and the file is already in place.
	var f *sftp.File
	err := t.do(ctx, func() error {
		var err error
		f, err = t.sftp.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		return t.existsErr(tmp, err)
	})
	if err != nil {
		return opErr("write", p, t.noSpace(tmp, err))
	}
	var writeErr, chmodErr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, writeErr = f.Write(data)
	}()
	go func() {
		defer wg.Done()
		chmodErr = t.do(ctx, func() error { return t.sftp.Chmod(tmp, perm) })
	}()
	wg.Wait()
	err = errors.Join(writeErr, chmodErr)
	if err == nil {
		err = t.Rename(ctx, tmp, p)
	}
	if err != nil {
		f.Close()
		t.sftp.Remove(tmp) // best effort; the error below is what matters
		return opErr("write", p, t.noSpace(tmp, err))
	}
	go f.Close()
	return nil
}

// readFileChunk is read in one go: pkg/sftp splits it into concurrent
// requests, so a small file costs one round trip after the open.
const readFileChunk = 1 << 20

// ReadFile reads a whole (small) file: open, concurrent reads, and a close
// that is not waited for.
func (t *Transport) ReadFile(ctx context.Context, p string) ([]byte, error) {
	var out []byte
	err := t.do(ctx, func() error {
		f, err := t.sftp.Open(p)
		if err != nil {
			return err
		}
		defer func() { go f.Close() }()
		buf := make([]byte, readFileChunk)
		for {
			n, err := f.ReadAt(buf, int64(len(out)))
			out = append(out, buf[:n]...)
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
		}
	})
	if err != nil {
		return nil, opErr("read", p, err)
	}
	return out, nil
}

// Symlink creates p holding target verbatim. pkg/sftp already swaps the
// arguments for OpenSSH, which reversed them in SSH_FXP_SYMLINK.
func (t *Transport) Symlink(ctx context.Context, target, p string) error {
	err := t.do(ctx, func() error {
		if err := t.sftp.Symlink(target, p); err != nil {
			return t.noSpace(p, t.existsErr(p, err))
		}
		return nil
	})
	if err != nil {
		return opErr("symlink", p, err)
	}
	return nil
}

// Readlink returns the target of the symbolic link p.
func (t *Transport) Readlink(ctx context.Context, p string) (target string, err error) {
	err = t.do(ctx, func() error {
		target, err = t.sftp.ReadLink(p)
		return err
	})
	if err != nil {
		return "", opErr("readlink", p, err)
	}
	return target, nil
}

// Link makes newpath a hard link to oldpath, with the hardlink@openssh.com
// extension or else `ln` over exec.
func (t *Transport) Link(ctx context.Context, oldpath, newpath string) error {
	if err := t.Ready(ctx); err != nil {
		return err
	}
	var err error
	switch {
	case t.hardLink:
		err = t.do(ctx, func() error {
			if err := t.sftp.Link(oldpath, newpath); err != nil {
				return t.existsErr(newpath, err)
			}
			return nil
		})
	case t.hasShell():
		_, err = t.run(ctx, command("link", linkScript, oldpath, newpath))
		var exit *transport.ExitError
		if errors.As(err, &exit) && exit.Status == existsStatus {
			err = fs.ErrExist
		}
	default:
		err = ErrHardLinkUnsupported
	}
	if err != nil {
		return fmt.Errorf("link %s %s: %w", oldpath, newpath, err)
	}
	return nil
}

// Rename replaces newpath atomically: posix-rename@openssh.com, else
// `mv -T` (rename(2)) over exec. Plain SFTP rename fails on an existing
// target and remove+rename would leave a gap, so neither is used.
func (t *Transport) Rename(ctx context.Context, oldpath, newpath string) error {
	if err := t.Ready(ctx); err != nil {
		return err
	}
	var err error
	switch {
	case t.posixRename:
		err = t.do(ctx, func() error { return t.sftp.PosixRename(oldpath, newpath) })
	case t.hasShell():
		if _, err = t.run(ctx, command("rename", renameScript, oldpath, newpath)); err != nil {
			if _, lerr := t.Lstat(ctx, oldpath); errors.Is(lerr, fs.ErrNotExist) {
				err = fmt.Errorf("%w (%v)", fs.ErrNotExist, err)
			}
		}
	default:
		err = ErrAtomicRenameUnsupported
	}
	if err != nil {
		return fmt.Errorf("rename %s %s: %w", oldpath, newpath, err)
	}
	return nil
}

// Remove deletes a file, a symbolic link or an empty directory.
func (t *Transport) Remove(ctx context.Context, p string) error {
	if err := t.do(ctx, func() error { return t.sftp.Remove(p) }); err != nil {
		return opErr("remove", p, err)
	}
	return nil
}

// Lstat describes p without following a final symbolic link.
func (t *Transport) Lstat(ctx context.Context, p string) (fi fs.FileInfo, err error) {
	err = t.do(ctx, func() error {
		fi, err = t.sftp.Lstat(p)
		return err
	})
	if err != nil {
		return nil, opErr("lstat", p, err)
	}
	return fi, nil
}

// ReadDir lists p sorted by name.
func (t *Transport) ReadDir(ctx context.Context, p string) (entries []fs.FileInfo, err error) {
	err = t.do(ctx, func() error {
		entries, err = t.sftp.ReadDirContext(ctx, p)
		return err
	})
	if err != nil {
		return nil, opErr("readdir", p, err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	return entries, nil
}

// Chmod sets the permission bits of p.
func (t *Transport) Chmod(ctx context.Context, p string, mode fs.FileMode) error {
	if err := t.do(ctx, func() error { return t.sftp.Chmod(p, mode) }); err != nil {
		return opErr("chmod", p, err)
	}
	return nil
}

// Now reads the target's clock: `date` with a shell, else the mtime of a
// file created for the purpose in the login directory (whole seconds).
func (t *Transport) Now(ctx context.Context) (time.Time, error) {
	if t.hasShell() {
		out, err := t.run(ctx, command("now", nowScript))
		if err != nil {
			return time.Time{}, fmt.Errorf("read clock of %s: %w", t.name, err)
		}
		now, err := transport.ParseUnixTime(strings.TrimSpace(string(out)))
		if err != nil {
			return time.Time{}, fmt.Errorf("read clock of %s: %w", t.name, err)
		}
		return now, nil
	}
	var dir string
	err := t.do(ctx, func() (err error) {
		dir, err = t.sftp.Getwd()
		return err
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("read clock of %s: %w", t.name, err)
	}
	p := path.Join(dir, ".atomic-deploy-clock-"+randomSuffix())
	w, err := t.Create(ctx, p, 0o600)
	if err != nil {
		return time.Time{}, fmt.Errorf("read clock of %s: %w", t.name, err)
	}
	w.Close()
	fi, err := t.Lstat(ctx, p)
	t.sftp.Remove(p)
	if err != nil {
		return time.Time{}, fmt.Errorf("read clock of %s: %w", t.name, err)
	}
	return fi.ModTime(), nil
}

func randomSuffix() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
