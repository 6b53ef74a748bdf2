// Package local is the Transport for this machine's filesystem: a deploy
// with no host, and the transport unit tests run the deploy logic on.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// Transport works on local paths.
type Transport struct {
	env []string // of Exec's commands; nil: this process's
}

// New returns a local Transport whose commands inherit this process's
// environment.
func New() *Transport { return &Transport{} }

// NewWithEnv returns a local Transport whose commands (hooks, the lock
// holder) get env (KEY=value) as their whole environment.
func NewWithEnv(env []string) *Transport {
	if env == nil {
		env = []string{}
	}
	return &Transport{env: env}
}

var _ transport.Transport = (*Transport)(nil)

func (*Transport) String() string { return "local" }

func (*Transport) Mkdir(_ context.Context, p string, perm fs.FileMode) error {
	if err := os.Mkdir(p, perm); err != nil {
		return err
	}
	return os.Chmod(p, perm) // exact bits, whatever the umask
}

func (*Transport) MkdirAll(_ context.Context, p string, perm fs.FileMode) error {
	return os.MkdirAll(p, perm)
}

func (*Transport) Create(_ context.Context, p string, perm fs.FileMode) (io.WriteCloser, error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (*Transport) WriteFile(_ context.Context, p string, data []byte, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-"+filepath.Base(p)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

func (*Transport) ReadFile(_ context.Context, p string) ([]byte, error) { return os.ReadFile(p) }

func (*Transport) Symlink(_ context.Context, target, p string) error { return os.Symlink(target, p) }

func (*Transport) Readlink(_ context.Context, p string) (string, error) { return os.Readlink(p) }

func (*Transport) Link(_ context.Context, oldpath, newpath string) error {
	return os.Link(oldpath, newpath)
}

func (*Transport) Rename(_ context.Context, oldpath, newpath string) error {
	return os.Rename(oldpath, newpath)
}

func (*Transport) Remove(_ context.Context, p string) error { return os.Remove(p) }

func (*Transport) RemoveAll(_ context.Context, p string) error { return os.RemoveAll(p) }

func (*Transport) Lstat(_ context.Context, p string) (fs.FileInfo, error) { return os.Lstat(p) }

func (*Transport) ReadDir(_ context.Context, p string) ([]fs.FileInfo, error) {
	entries, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	out := make([]fs.FileInfo, 0, len(entries))
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed between the listing and the stat
			}
			return nil, err
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

func (*Transport) Chmod(_ context.Context, p string, mode fs.FileMode) error {
	return os.Chmod(p, mode)
}

func (*Transport) Scan(ctx context.Context, root string) ([]transport.Stat, error) {
	// A symbolic link as root (such as current) is followed, like find -H.
	if resolved, err := filepath.EvalSymlinks(root); err == nil {
		root = resolved
	}
	var out []transport.Stat
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == root {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		st := transport.Stat{Path: filepath.ToSlash(rel), Mode: info.Mode(), Size: info.Size(), ModTime: info.ModTime(), Precise: true}
		if sys, ok := info.Sys().(*syscall.Stat_t); ok {
			st.Inode, st.Links = sys.Ino, uint64(sys.Nlink)
			st.ChangeTime = time.Unix(sys.Ctim.Sec, sys.Ctim.Nsec)
		}
		out = append(out, st)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", root, err)
	}
	return out, nil
}

func (*Transport) Now(context.Context) (time.Time, error) { return time.Now(), nil }

func (*Transport) Ready(context.Context) error { return nil }

func (*Transport) CanExec() bool { return true }

func (t *Transport) Exec(ctx context.Context, c transport.Command, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", c.Script}, c.Argv()...)...)
	cmd.Env = t.env
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Hooks may start children; cancel the whole group so none outlive the deploy.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	// Feed stdin ourselves: Wait must return when the command exits, not
	// when the caller's reader ends (a lock holder's stdin stays open).
	var pipe io.WriteCloser
	if stdin != nil {
		var err error
		if pipe, err = cmd.StdinPipe(); err != nil {
			return err
		}
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	if pipe != nil {
		go func() {
			io.Copy(pipe, stdin)
			pipe.Close()
		}()
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) && ctx.Err() == nil {
		return &transport.ExitError{Status: exit.ExitCode()}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Warm does nothing: a local command starts at once.
func (*Transport) Warm() {}

func (*Transport) Close() error { return nil }
