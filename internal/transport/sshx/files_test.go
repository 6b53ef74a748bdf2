package sshx_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/sshtest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/sshx"
)

// The server runs on this machine, so tests check results on disk directly
// instead of trusting the transport to describe its own work.

func setup(t *testing.T, opts sshtest.Options) (*sshtest.Server, *sshx.Transport, string) {
	t.Helper()
	s := sshtest.Start(t, opts)
	return s, dial(t, s.Config()), s.MkdirUserTemp(t)
}

func create(t *testing.T, tr transport.Transport, p string, perm fs.FileMode, data string) {
	t.Helper()
	w, err := tr.Create(context.Background(), p, perm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestFileOps(t *testing.T) {
	_, tr, dir := setup(t, sshtest.Options{})
	ctx := context.Background()

	t.Run("Create sets exact permissions", func(t *testing.T) {
		for i, perm := range []fs.FileMode{0o600, 0o640, 0o755, 0o777, fs.ModeSetuid | 0o755, fs.ModeSetgid | 0o750} {
			p := fmt.Sprintf("%s/perm-%d", dir, i)
			create(t, tr, p, perm, "x")
			fi, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != perm {
				t.Errorf("mode %v, want %v", fi.Mode(), perm)
			}
		}
	})
	t.Run("Create is exclusive", func(t *testing.T) {
		p := dir + "/exclusive"
		create(t, tr, p, 0o644, "first")
		_, err := tr.Create(ctx, p, 0o644)
		if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "create "+p) {
			t.Fatalf("second Create: %v, want fs.ErrExist with op and path", err)
		}
		if b, _ := os.ReadFile(p); string(b) != "first" {
			t.Fatalf("content %q was changed", b)
		}
		if _, err := tr.Create(ctx, dir+"/missing/f", 0o644); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Create in a missing dir: %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("Create large file through ReaderFrom", func(t *testing.T) {
		data := make([]byte, 5<<20+123)
		rand.Read(data)
		w, err := tr.Create(ctx, dir+"/large", 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := w.(io.ReaderFrom); !ok {
			t.Fatalf("%T is not an io.ReaderFrom", w)
		}
		if _, err := io.Copy(w, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(dir + "/large"); !bytes.Equal(got, data) {
			t.Fatal("content differs")
		}
	})
	t.Run("Mkdir", func(t *testing.T) {
		p := dir + "/lockdir"
		if err := tr.Mkdir(ctx, p, 0o700); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Lstat(p); fi.Mode() != fs.ModeDir|0o700 {
			t.Errorf("mode %v", fi.Mode())
		}
		if err := tr.Mkdir(ctx, p, 0o700); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("second Mkdir: %v, want fs.ErrExist", err)
		}
		if err := tr.Mkdir(ctx, dir+"/nope/x", 0o755); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Mkdir below a missing dir: %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("MkdirAll", func(t *testing.T) {
		p := dir + "/a/b/c"
		if err := tr.MkdirAll(ctx, p, 0o750); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{dir + "/a", dir + "/a/b", p} {
			if fi, err := os.Lstat(d); err != nil || fi.Mode() != fs.ModeDir|0o750 {
				t.Errorf("%s: %v %v", d, fi, err)
			}
		}
		if err := tr.MkdirAll(ctx, p, 0o750); err != nil {
			t.Fatalf("MkdirAll on an existing dir: %v", err)
		}
		os.Symlink(dir+"/a", dir+"/alink")
		if err := tr.MkdirAll(ctx, dir+"/alink/b/d", 0o755); err != nil {
			t.Fatalf("MkdirAll through a symlink: %v", err)
		}
		create(t, tr, dir+"/afile", 0o644, "")
		if err := tr.MkdirAll(ctx, dir+"/afile/x", 0o755); err == nil {
			t.Fatal("MkdirAll below a file succeeded")
		}
	})
	t.Run("WriteFile and ReadFile", func(t *testing.T) {
		p := dir + "/state.json"
		for _, content := range []string{"one", "two, longer"} {
			if err := tr.WriteFile(ctx, p, []byte(content), 0o640); err != nil {
				t.Fatal(err)
			}
			got, err := tr.ReadFile(ctx, p)
			if err != nil || string(got) != content {
				t.Fatalf("ReadFile = %q, %v; want %q", got, err, content)
			}
		}
		if fi, _ := os.Lstat(p); fi.Mode() != 0o640 {
			t.Errorf("mode %v", fi.Mode())
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("temporary file %s left behind", e.Name())
			}
		}
		if _, err := tr.ReadFile(ctx, dir+"/missing"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("ReadFile of a missing file: %v", err)
		}
	})
	t.Run("Symlink keeps the target verbatim", func(t *testing.T) {
		for i, target := range []string{"releases/20240101", "/abs/path", "../up", "dangling target with spaces", "-dash"} {
			p := fmt.Sprintf("%s/link%d", dir, i)
			if err := tr.Symlink(ctx, target, p); err != nil {
				t.Fatal(err)
			}
			if got, err := os.Readlink(p); err != nil || got != target {
				t.Errorf("on disk %s -> %q (%v), want %q", p, got, err, target)
			}
			if got, err := tr.Readlink(ctx, p); err != nil || got != target {
				t.Errorf("Readlink %s = %q (%v), want %q", p, got, err, target)
			}
			if fi, err := tr.Lstat(ctx, p); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
				t.Errorf("Lstat %s: %v %v", p, fi, err)
			}
		}
		if err := tr.Symlink(ctx, "x", dir+"/link0"); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("Symlink over an existing link: %v, want fs.ErrExist", err)
		}
		if _, err := tr.Readlink(ctx, dir+"/nolink"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Readlink of a missing path: %v", err)
		}
	})
	t.Run("Link", func(t *testing.T) {
		create(t, tr, dir+"/orig", 0o644, "shared")
		if err := tr.Link(ctx, dir+"/orig", dir+"/hard"); err != nil {
			t.Fatal(err)
		}
		assertSameInode(t, dir+"/orig", dir+"/hard")
		if err := tr.Link(ctx, dir+"/orig", dir+"/hard"); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("Link over an existing file: %v, want fs.ErrExist", err)
		}
	})
	t.Run("Rename", func(t *testing.T) {
		create(t, tr, dir+"/r1", 0o644, "new")
		create(t, tr, dir+"/r2", 0o644, "old")
		if err := tr.Rename(ctx, dir+"/r1", dir+"/r2"); err != nil {
			t.Fatalf("Rename over a file: %v", err)
		}
		if b, _ := os.ReadFile(dir + "/r2"); string(b) != "new" {
			t.Fatalf("content %q", b)
		}
		if err := tr.Rename(ctx, dir+"/r1", dir+"/r3"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Rename of a missing file: %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("Remove", func(t *testing.T) {
		create(t, tr, dir+"/rm", 0o644, "")
		os.Mkdir(dir+"/rmdir", 0o755)
		os.Symlink("rmdir", dir+"/rmlink")
		for _, p := range []string{dir + "/rmlink", dir + "/rm", dir + "/rmdir"} {
			if err := tr.Remove(ctx, p); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				t.Errorf("%s still exists", p)
			}
		}
		if err := tr.Remove(ctx, dir+"/rm"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Remove of a missing file: %v, want fs.ErrNotExist", err)
		}
		if err := tr.Remove(ctx, dir+"/a"); err == nil {
			t.Fatal("Remove of a non-empty dir succeeded")
		}
	})
	t.Run("ReadDir sorted, Chmod, Lstat", func(t *testing.T) {
		d := dir + "/list"
		if err := tr.Mkdir(ctx, d, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"c", "a", "b"} {
			create(t, tr, d+"/"+n, 0o644, n)
		}
		entries, err := tr.ReadDir(ctx, d)
		if err != nil || len(entries) != 3 || entries[0].Name() != "a" || entries[2].Name() != "c" {
			t.Fatalf("ReadDir = %v, %v", entries, err)
		}
		if err := tr.Chmod(ctx, d+"/a", 0o600); err != nil {
			t.Fatal(err)
		}
		fi, err := tr.Lstat(ctx, d+"/a")
		if err != nil || fi.Mode() != 0o600 || fi.Size() != 1 || fi.Name() != "a" {
			t.Fatalf("Lstat = %v %v", fi, err)
		}
		if _, err := tr.Lstat(ctx, d+"/zz"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Lstat of a missing path: %v", err)
		}
	})
	t.Run("Now", func(t *testing.T) {
		now, err := tr.Now(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(now); d < -2*time.Second || d > 2*time.Second {
			t.Fatalf("Now is %v off", d)
		}
		if now.Nanosecond() == 0 {
			t.Log("Now has no sub-second part (possible, but unlikely)")
		}
	})
}

func assertSameInode(t *testing.T, a, b string) {
	t.Helper()
	fa, err1 := os.Lstat(a)
	fb, err2 := os.Lstat(b)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	if fa.Sys().(*syscall.Stat_t).Ino != fb.Sys().(*syscall.Stat_t).Ino {
		t.Fatalf("%s and %s are not the same inode", a, b)
	}
}

// Renaming a new symlink over "current" must never leave a moment without
// "current", which is the whole point of the deploy switch.
func TestRenameSwitchIsAtomic(t *testing.T) {
	s, tr, dir := setup(t, sshtest.Options{})
	for _, mode := range []string{"posix-rename extension", "mv -T over exec"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			tr := tr
			if mode != "posix-rename extension" {
				tr = dial(t, s.Config())
				sshx.DisableExtensions(tr)
			}
			current := dir + "/current"
			os.Remove(current)
			if err := tr.Symlink(ctx, "releases/0", current); err != nil {
				t.Fatal(err)
			}
			var missing atomic.Int32
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := os.Readlink(current); err != nil {
						missing.Add(1)
					}
					runtime.Gosched() // leave CPU to sshd on small runners
				}
			}()
			for i := 1; i <= 100; i++ {
				tmp := fmt.Sprintf("%s/current.tmp%d", dir, i)
				target := fmt.Sprintf("releases/%d", i)
				if err := tr.Symlink(ctx, target, tmp); err != nil {
					t.Fatal(err)
				}
				if err := tr.Rename(ctx, tmp, current); err != nil {
					t.Fatal(err)
				}
				if got, _ := os.Readlink(current); got != target {
					t.Fatalf("current -> %q, want %q", got, target)
				}
			}
			close(stop)
			wg.Wait()
			if n := missing.Load(); n > 0 {
				t.Fatalf("current was missing %d times during the switches", n)
			}
		})
	}
}

func TestExecFallbacks(t *testing.T) {
	s, _, dir := setup(t, sshtest.Options{})
	tr := dial(t, s.Config())
	sshx.DisableExtensions(tr)
	ctx := context.Background()

	create(t, tr, dir+"/orig", 0o644, "x")
	if err := tr.Link(ctx, dir+"/orig", dir+"/hard"); err != nil {
		t.Fatal(err)
	}
	assertSameInode(t, dir+"/orig", dir+"/hard")
	if err := tr.Link(ctx, dir+"/orig", dir+"/hard"); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Link over a file: %v, want fs.ErrExist", err)
	}
	// ln would put the link inside an existing directory; Link must refuse.
	os.Mkdir(dir+"/adir", 0o755)
	if err := tr.Link(ctx, dir+"/orig", dir+"/adir"); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Link over a dir: %v, want fs.ErrExist", err)
	}
	if err := tr.Link(ctx, dir+"/nothing", dir+"/h2"); err == nil || errors.Is(err, fs.ErrExist) {
		t.Fatalf("Link of a missing file: %v", err)
	}

	// mv -T replaces a symlink to a directory instead of moving into it.
	os.Symlink("adir", dir+"/current")
	os.Symlink("orig", dir+"/next")
	if err := tr.Rename(ctx, dir+"/next", dir+"/current"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.Readlink(dir + "/current"); got != "orig" {
		t.Fatalf("current -> %q", got)
	}
	if err := tr.Rename(ctx, dir+"/next", dir+"/x"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Rename of a missing file: %v, want fs.ErrNotExist", err)
	}
	names := []string{"-n", "a b", "it's", "$(touch pwned)"}
	for _, n := range names {
		create(t, tr, dir+"/"+n, 0o644, n)
		if err := tr.Rename(ctx, dir+"/"+n, dir+"/"+n+".moved"); err != nil {
			t.Fatal(err)
		}
		if err := tr.Link(ctx, dir+"/"+n+".moved", dir+"/"+n+".linked"); err != nil {
			t.Fatal(err)
		}
	}
	assertNotPwned(t, s, dir)
}

func assertNotPwned(t *testing.T, s *sshtest.Server, dirs ...string) {
	t.Helper()
	for _, d := range append(dirs, s.Home) {
		for _, n := range []string{"pwned", "x"} {
			if _, err := os.Lstat(path.Join(d, n)); err == nil {
				t.Errorf("%s/%s exists: a file name was run as a command", d, n)
			}
		}
	}
}

// testCommand is a test's own script, with no arguments.
func testCommand(script string) transport.Command {
	return transport.Command{Name: "test", Script: script}
}

func TestExec(t *testing.T) {
	_, tr, dir := setup(t, sshtest.Options{})
	ctx := context.Background()
	if !tr.CanExec() {
		t.Fatal("CanExec false on a shell account")
	}
	t.Run("streams", func(t *testing.T) {
		var out, errOut bytes.Buffer
		err := tr.Exec(ctx, testCommand("cat; echo done; echo oops >&2"), strings.NewReader("input\n"), &out, &errOut)
		if err != nil || out.String() != "input\ndone\n" || errOut.String() != "oops\n" {
			t.Fatalf("Exec = %v, stdout %q, stderr %q", err, out.String(), errOut.String())
		}
	})
	t.Run("name and arguments arrive verbatim", func(t *testing.T) {
		args := []string{"a b", "it's", "$HOME `id`", "line\nbreak", "-n", ""}
		cmd := transport.Command{Name: "echo-args", Script: `printf '%s|' "$0" "$@"`, Args: args}
		var out bytes.Buffer
		if err := tr.Exec(ctx, cmd, nil, &out, nil); err != nil {
			t.Fatal(err)
		}
		if want := "atomic-deploy:echo-args|" + strings.Join(args, "|") + "|"; out.String() != want {
			t.Fatalf("got %q, want %q", out.String(), want)
		}
	})
	t.Run("exit status", func(t *testing.T) {
		err := tr.Exec(ctx, testCommand("exit 3"), nil, nil, nil)
		var exit *transport.ExitError
		if !errors.As(err, &exit) || exit.Status != 3 {
			t.Fatalf("Exec = %v, want ExitError 3", err)
		}
	})
	t.Run("runs /bin/sh", func(t *testing.T) {
		var out bytes.Buffer
		if err := tr.Exec(ctx, testCommand(`readlink /proc/$$/exe; readlink -f /bin/sh`), nil, &out, nil); err != nil {
			t.Fatal(err)
		}
		lines := strings.Fields(out.String())
		if len(lines) != 2 || lines[0] != lines[1] {
			t.Fatalf("shell %q", out.String())
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(200*time.Millisecond, cancel)
		start := time.Now()
		err := tr.Exec(ctx, testCommand("sleep 30"), nil, nil, nil)
		if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
			t.Fatalf("Exec = %v after %v", err, time.Since(start))
		}
		// The connection stays usable.
		if err := tr.Exec(context.Background(), testCommand("true"), nil, nil, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("more sessions at once than sshd's MaxSessions", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var out bytes.Buffer
				if err := tr.Exec(ctx, transport.Command{Name: "test", Script: `sleep 0.1; echo "$1"`, Args: []string{strconv.Itoa(i)}}, nil, &out, nil); err != nil {
					errs <- err
				} else if strings.TrimSpace(out.String()) != fmt.Sprint(i) {
					errs <- fmt.Errorf("output %q", out.String())
				}
			}()
		}
		// SFTP keeps working meanwhile.
		for range 20 {
			if _, err := tr.Lstat(ctx, dir); err != nil {
				t.Error(err)
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// weirdNames are file names the shell must never interpret.
var weirdNames = []string{
	"plain.txt",
	"with space",
	"it's",
	`double"quote`,
	"new\nline",
	"trailing newline\n",
	"unicodé ✓ 日本",
	"-leading-dash",
	"--",
	"$(touch x)",
	"`touch x`",
	"; touch x",
	"back\\slash",
	"tab\there",
	"*",
}

func makeWeirdTree(t *testing.T, tr transport.Transport, dir string) {
	t.Helper()
	ctx := context.Background()
	for i, n := range weirdNames {
		create(t, tr, dir+"/"+n, 0o644, strings.Repeat("x", i))
		if err := tr.Mkdir(ctx, dir+"/dir "+n, 0o755); err != nil {
			t.Fatal(err)
		}
		create(t, tr, dir+"/dir "+n+"/"+n, 0o600, n)
		if err := tr.Symlink(ctx, n, dir+"/dir "+n+"/link"); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.MkdirAll(ctx, dir+"/deep/a/b/c/d", 0o755); err != nil {
		t.Fatal(err)
	}
	create(t, tr, dir+"/deep/a/b/c/d/leaf", 0o4755, "leaf")
}

func TestScanAndRemoveAll(t *testing.T) {
	s, tr, dir := setup(t, sshtest.Options{})
	ctx := context.Background()
	makeWeirdTree(t, tr, dir)

	viaFind, err := tr.Scan(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	viaSFTP, err := sshx.ScanSFTP(tr, ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := 4*len(weirdNames) + 6
	if len(viaFind) != want || len(viaSFTP) != want {
		t.Fatalf("find found %d, SFTP %d, want %d", len(viaFind), len(viaSFTP), want)
	}
	for i := range viaFind {
		f, s := viaFind[i], viaSFTP[i]
		if !f.Precise || s.Precise {
			t.Errorf("%q: Precise find=%v sftp=%v", f.Path, f.Precise, s.Precise)
		}
		if f.Path != s.Path || f.Mode != s.Mode || f.Size != s.Size || f.ModTime.Unix() != s.ModTime.Unix() {
			t.Errorf("find %+v\nsftp %+v", f, s)
		}
		fi, err := os.Lstat(dir + "/" + f.Path)
		if err != nil || fi.Mode() != f.Mode || !fi.ModTime().Equal(f.ModTime) {
			t.Errorf("%q: on disk %v %v, scanned %v %v (%v)", f.Path, fi.Mode(), fi.ModTime(), f.Mode, f.ModTime, err)
		}
	}
	// Scan follows a symlinked root, as a deploy scans "current".
	os.Symlink(dir, dir+".link")
	defer os.Remove(dir + ".link")
	if viaLink, err := tr.Scan(ctx, dir+".link"); err != nil || len(viaLink) != want {
		t.Fatalf("Scan through a symlink: %d entries, %v", len(viaLink), err)
	}
	if _, err := tr.Scan(ctx, dir+"/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Scan of a missing dir: %v", err)
	}

	// RemoveAll over exec, then over SFTP, on the same kind of tree.
	copyDir := dir + "/copy"
	if err := tr.Mkdir(ctx, copyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	makeWeirdTree(t, tr, copyDir)
	if err := sshx.RemoveAllSFTP(tr, ctx, copyDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(copyDir); !os.IsNotExist(err) {
		t.Fatalf("SFTP RemoveAll left %s: %v", copyDir, err)
	}
	if err := tr.RemoveAll(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Fatalf("RemoveAll left %s: %v", dir, err)
	}
	if err := tr.RemoveAll(ctx, dir); err != nil {
		t.Fatalf("RemoveAll of a missing path: %v", err)
	}
	if err := sshx.RemoveAllSFTP(tr, ctx, dir); err != nil {
		t.Fatalf("SFTP RemoveAll of a missing path: %v", err)
	}
	for _, p := range []string{"/", "", "relative/path", "//"} {
		if err := tr.RemoveAll(ctx, p); err == nil {
			t.Errorf("RemoveAll(%q) was not refused", p)
		}
	}
	assertNotPwned(t, s)
}

// Uploads call Create from hundreds of goroutines at once.
func TestConcurrentCreate(t *testing.T) {
	_, tr, dir := setup(t, sshtest.Options{})
	ctx := context.Background()
	const files, workers = 1000, 256
	work := make(chan int)
	errs := make(chan error, files)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				d := fmt.Sprintf("%s/d%02d", dir, i%50)
				if err := tr.MkdirAll(ctx, d, 0o755); err != nil {
					errs <- err
					continue
				}
				w, err := tr.Create(ctx, fmt.Sprintf("%s/f%04d", d, i), 0o644)
				if err != nil {
					errs <- err
					continue
				}
				_, err = fmt.Fprintf(w, "file %d\n", i)
				if cerr := w.Close(); err == nil {
					err = cerr
				}
				if err == nil && i%10 == 0 {
					err = tr.Link(ctx, fmt.Sprintf("%s/f%04d", d, i), fmt.Sprintf("%s/h%04d", d, i))
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := range files {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	stats, err := tr.Scan(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := 50 + files + files/10; len(stats) != want {
		t.Fatalf("Scan found %d entries, want %d", len(stats), want)
	}
	for _, i := range []int{0, 499, 999} {
		p := fmt.Sprintf("%s/d%02d/f%04d", dir, i%50, i)
		if b, _ := os.ReadFile(p); string(b) != fmt.Sprintf("file %d\n", i) {
			t.Errorf("%s: %q", p, b)
		}
	}
}

// A warm session runs the next command: it was started before the command
// was known (the process is older than the Exec), and the command gets its
// arguments, input, output and exit status as with a session of its own.
func TestWarmSessionRunsTheNextCommand(t *testing.T) {
	_, tr, _ := setup(t, sshtest.Options{})
	ctx := context.Background()
	tr.Warm()
	time.Sleep(1500 * time.Millisecond)
	age := transport.Command{Name: "age", Script: `cat > /dev/null
read -r _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ start _ < /proc/$$/stat
read -r up _ < /proc/uptime
echo "$0 $1 $start $up" ; echo oops >&2; exit 5`, Args: []string{"an arg"}}
	var out, errOut bytes.Buffer
	err := tr.Exec(ctx, age, strings.NewReader("input that the command reads\n"), &out, &errOut)
	var exit *transport.ExitError
	if !errors.As(err, &exit) || exit.Status != 5 || errOut.String() != "oops\n" {
		t.Fatalf("Exec = %v, stderr %q", err, errOut.String())
	}
	var name, arg1, arg2 string
	var started, up float64
	if _, err := fmt.Sscan(out.String(), &name, &arg1, &arg2, &started, &up); err != nil || name != "atomic-deploy:age" || arg1+" "+arg2 != "an arg" {
		t.Fatalf("output %q (%v)", out.String(), err)
	}
	if age := up - started/100; age < 1 {
		t.Errorf("the command's process started %.2f s before it ran: not the warm session", age)
	}
	// The next command gets a session of its own.
	out.Reset()
	if err := tr.Exec(ctx, age, nil, &out, io.Discard); !errors.As(err, &exit) {
		t.Fatal(err)
	}
	fmt.Sscan(out.String(), &name, &arg1, &arg2, &started, &up)
	if age := up - started/100; age > 0.5 {
		t.Errorf("the second command's process is %.2f s old: a warm session was used twice", age)
	}
}

// A warm session handed to a command before its shell said ready (the
// server is known to run commands) stays the command's, however late the
// ready line comes (a loaded server): it is not ended under the command,
// whose input would then be cut and its exit look like success.
func TestWarmSessionHandedOverBeforeReady(t *testing.T) {
	_, tr, _ := setup(t, sshtest.Options{})
	ctx := context.Background()
	if !tr.CanExec() {
		t.Fatal("the server runs no commands")
	}
	defer sshx.SetWarmReadyWithin(time.Millisecond)()
	for i := range 20 {
		tr.Warm()
		time.Sleep(time.Duration(i) * time.Millisecond)
		cmd := transport.Command{Name: "slow", Script: `wc -c; exit 3`}
		var out bytes.Buffer
		err := tr.Exec(ctx, cmd, strings.NewReader(strings.Repeat("x", 100000)), &out, io.Discard)
		var exit *transport.ExitError
		if !errors.As(err, &exit) || exit.Status != 3 || strings.TrimSpace(out.String()) != "100000" {
			t.Fatalf("run %d: Exec = %v, output %q; want exit status 3 after reading 100000 bytes", i, err, out.String())
		}
	}
}

// The warm session's shell runs its command only when it arrived whole
// (up to the end line), and fails when its input ends before.
func TestSpareScript(t *testing.T) {
	for _, tc := range []struct {
		name, input, out string
		status           int
	}{
		{"whole", "echo one\necho two; exit 4\n--end--\nrest\n", "ready\none\ntwo\n", 4},
		{"no end line", "echo one\n", "ready\n", 1},
		{"nothing", "", "ready\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("/bin/sh", "-c", sshx.SpareScript, "spare", "--end--")
			cmd.Stdin = strings.NewReader(tc.input)
			var out, errOut bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errOut
			err := cmd.Run()
			status := 0
			if exit, ok := err.(*exec.ExitError); ok {
				status = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if status != tc.status || out.String() != tc.out {
				t.Errorf("exit status %d, output %q (stderr %q); want %d, %q", status, out.String(), errOut.String(), tc.status, tc.out)
			}
			if status == 1 && !strings.Contains(errOut.String(), "arrived whole") {
				t.Errorf("stderr %q does not say why", errOut.String())
			}
		})
	}
}
