package transport

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"time"
)

// Trace wraps t so that every operation is logged to w with its duration
// and the time since the wrapper was made: which round trips a deploy
// makes, in what order, and which of them wait on each other.
func Trace(t Transport, w io.Writer) Transport {
	return &traced{t: t, w: w, start: time.Now()}
}

type traced struct {
	t     Transport
	w     io.Writer
	start time.Time
	mu    sync.Mutex
}

// log is deferred with a pointer to the named result, so it reports the
// error the operation returned, not the nil it had when the defer was set.
func (x *traced) log(op, p string, began time.Time, err *error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	status := "ok"
	if *err != nil {
		status = (*err).Error()
	}
	fmt.Fprintf(x.w, "trace %s %8.1fms +%7.1fms %-9s %s: %s\n", x.t, float64(began.Sub(x.start).Microseconds())/1000,
		float64(time.Since(began).Microseconds())/1000, op, p, status)
}

func (x *traced) String() string { return x.t.String() }
func (x *traced) Mkdir(ctx context.Context, p string, perm fs.FileMode) (err error) {
	defer x.log("mkdir", p, time.Now(), &err)
	return x.t.Mkdir(ctx, p, perm)
}
func (x *traced) MkdirAll(ctx context.Context, p string, perm fs.FileMode) (err error) {
	defer x.log("mkdirall", p, time.Now(), &err)
	return x.t.MkdirAll(ctx, p, perm)
}
func (x *traced) Create(ctx context.Context, p string, perm fs.FileMode) (w io.WriteCloser, err error) {
	defer x.log("create", p, time.Now(), &err)
	return x.t.Create(ctx, p, perm)
}
func (x *traced) WriteFile(ctx context.Context, p string, data []byte, perm fs.FileMode) (err error) {
	defer x.log("writefile", p, time.Now(), &err)
	return x.t.WriteFile(ctx, p, data, perm)
}
func (x *traced) ReadFile(ctx context.Context, p string) (b []byte, err error) {
	defer x.log("readfile", p, time.Now(), &err)
	return x.t.ReadFile(ctx, p)
}
func (x *traced) Symlink(ctx context.Context, target, p string) (err error) {
	defer x.log("symlink", p, time.Now(), &err)
	return x.t.Symlink(ctx, target, p)
}
func (x *traced) Readlink(ctx context.Context, p string) (s string, err error) {
	defer x.log("readlink", p, time.Now(), &err)
	return x.t.Readlink(ctx, p)
}
func (x *traced) Link(ctx context.Context, oldpath, newpath string) (err error) {
	defer x.log("link", newpath, time.Now(), &err)
	return x.t.Link(ctx, oldpath, newpath)
}
func (x *traced) Copy(ctx context.Context, oldpath, newpath string) (err error) {
	defer x.log("copy", newpath, time.Now(), &err)
	return x.t.Copy(ctx, oldpath, newpath)
}
func (x *traced) CopyMethod() string { return x.t.CopyMethod() }
func (x *traced) Rename(ctx context.Context, oldpath, newpath string) (err error) {
	defer x.log("rename", newpath, time.Now(), &err)
	return x.t.Rename(ctx, oldpath, newpath)
}
func (x *traced) Remove(ctx context.Context, p string) (err error) {
	defer x.log("remove", p, time.Now(), &err)
	return x.t.Remove(ctx, p)
}
func (x *traced) RemoveAll(ctx context.Context, p string) (err error) {
	defer x.log("removeall", p, time.Now(), &err)
	return x.t.RemoveAll(ctx, p)
}
func (x *traced) Lstat(ctx context.Context, p string) (i fs.FileInfo, err error) {
	defer x.log("lstat", p, time.Now(), &err)
	return x.t.Lstat(ctx, p)
}
func (x *traced) ReadDir(ctx context.Context, p string) (l []fs.FileInfo, err error) {
	defer x.log("readdir", p, time.Now(), &err)
	return x.t.ReadDir(ctx, p)
}
func (x *traced) Chmod(ctx context.Context, p string, mode fs.FileMode) (err error) {
	defer x.log("chmod", p, time.Now(), &err)
	return x.t.Chmod(ctx, p, mode)
}
func (x *traced) Scan(ctx context.Context, root string) (s []Stat, err error) {
	defer x.log("scan", root, time.Now(), &err)
	return x.t.Scan(ctx, root)
}
func (x *traced) Now(ctx context.Context) (t time.Time, err error) {
	defer x.log("now", "", time.Now(), &err)
	return x.t.Now(ctx)
}
func (x *traced) Ready(ctx context.Context) (err error) {
	defer x.log("ready", "", time.Now(), &err)
	return x.t.Ready(ctx)
}
func (x *traced) CanExec() bool { return x.t.CanExec() }

// LinkBusy is the traced transport's, where it is a LinkMeter.
func (x *traced) LinkBusy() (time.Duration, bool) {
	if m, ok := x.t.(LinkMeter); ok {
		return m.LinkBusy()
	}
	return 0, false
}
func (x *traced) Exec(ctx context.Context, cmd Command, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	defer x.log("exec", cmd.Name, time.Now(), &err)
	return x.t.Exec(ctx, cmd, stdin, stdout, stderr)
}
func (x *traced) Warm() {
	var err error
	defer x.log("warm", "", time.Now(), &err)
	x.t.Warm()
}
func (x *traced) Close() error { return x.t.Close() }
