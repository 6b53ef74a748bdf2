package sshx_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/sshtest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/sshx"
)

// copyMethods are the ways sshx copies, each with a server that gets it.
var copyMethods = []struct {
	method   string
	sftpOnly bool
	noExt    bool // as on a server without copy-data (OpenSSH before 9.0)
}{
	{transport.CopyServerSide, false, false},
	{transport.CopyServerSide + " SFTP-only", true, false},
	{transport.CopyShell, false, true},
	{transport.CopyThroughClient, true, true},
}

func copySetup(t *testing.T, sftpOnly, noExt bool, opts sshtest.Options) (*sshx.Transport, string) {
	t.Helper()
	opts.SFTPOnly = sftpOnly
	_, tr, dir := setup(t, opts)
	if noExt {
		sshx.DisableExtensions(tr)
	}
	return tr, dir
}

func TestCopy(t *testing.T) {
	for _, m := range copyMethods {
		t.Run(m.method, func(t *testing.T) {
			tr, dir := copySetup(t, m.sftpOnly, m.noExt, sshtest.Options{})
			ctx := context.Background()
			if got, want := tr.CopyMethod(), strings.TrimSuffix(m.method, " SFTP-only"); got != want {
				t.Fatalf("CopyMethod = %q, want %q", got, want)
			}
			for _, tc := range []struct {
				name string
				mode fs.FileMode
				data string
			}{
				{"plain", 0o644, "hello"},
				{"private", 0o600, "secret"},
				{"executable", 0o755, "#!/bin/sh\n"},
				{"setuid", fs.ModeSetuid | 0o750, "x"}, // a write clears it: the mode goes on last
				{"setgid", fs.ModeSetgid | 0o755, "y"},
				{"empty", 0o640, ""},
				{"large", 0o644, strings.Repeat("0123456789abcdef", 200_000)}, // past copy-data's 64 KiB steps
			} {
				t.Run(tc.name, func(t *testing.T) {
					old, cp := dir+"/"+tc.name, dir+"/"+tc.name+".copy"
					create(t, tr, old, tc.mode, tc.data)
					if err := tr.Copy(ctx, old, cp); err != nil {
						t.Fatal(err)
					}
					assertPrivateCopy(t, old, cp, tc.data, tc.mode)
				})
			}
			t.Run("errors", func(t *testing.T) { testCopyErrors(t, tr, dir) })
		})
	}
}

// assertPrivateCopy checks on disk that cp holds data with mode under an
// inode of its own, and that a write into it in place leaves old as it was.
func assertPrivateCopy(t *testing.T, old, cp, data string, mode fs.FileMode) {
	t.Helper()
	oi, err1 := os.Lstat(old)
	ci, err2 := os.Lstat(cp)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	if ci.Mode() != mode {
		t.Errorf("%s: mode %v, want %v", cp, ci.Mode(), mode)
	}
	if os.SameFile(oi, ci) || ci.Sys().(*syscall.Stat_t).Nlink != 1 {
		t.Errorf("%s shares the inode of %s or has other links", cp, old)
	}
	if b, _ := os.ReadFile(cp); string(b) != data {
		t.Errorf("%s holds %d bytes, want %d", cp, len(b), len(data))
	}
	f, err := os.OpenFile(cp, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("CHANGED"), 0); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(old); string(b) != data {
		t.Errorf("writing into %s changed %s", cp, old)
	}
}

func testCopyErrors(t *testing.T, tr transport.Transport, dir string) {
	ctx := context.Background()
	old, taken := dir+"/err-old", dir+"/err-taken"
	create(t, tr, old, 0o644, "old")
	create(t, tr, taken, 0o644, "taken")

	err := tr.Copy(ctx, old, taken)
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "copy "+old+" "+taken) {
		t.Errorf("onto an existing file: %v, want fs.ErrExist naming both paths", err)
	}
	if b, _ := os.ReadFile(taken); string(b) != "taken" {
		t.Errorf("the existing file was changed: %q", b)
	}
	os.Symlink("nowhere", dir+"/err-dangling")
	if err := tr.Copy(ctx, old, dir+"/err-dangling"); !errors.Is(err, fs.ErrExist) {
		t.Errorf("onto a dangling symbolic link: %v, want fs.ErrExist", err)
	}
	if err := tr.Copy(ctx, dir+"/missing", dir+"/err-new"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("from a missing file: %v, want fs.ErrNotExist", err)
	}
	if err := tr.Copy(ctx, old, dir+"/no-dir/new"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("into a missing directory: %v, want fs.ErrNotExist", err)
	}
	if err := tr.Copy(ctx, dir, dir+"/err-new"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("of a directory: %v, want not a regular file", err)
	}
	if err := os.WriteFile(dir+"/err-root-only", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 { // the login user is someone else, who may not read it
		if err := tr.Copy(ctx, dir+"/err-root-only", dir+"/err-new"); err == nil {
			t.Errorf("of an unreadable file: no error")
		} else if tr.CopyMethod() != transport.CopyShell && !errors.Is(err, fs.ErrPermission) {
			t.Errorf("of an unreadable file: %v, want fs.ErrPermission", err)
		}
	}
	if _, err := os.Lstat(dir + "/err-new"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed copy left its target behind")
	}
}

// Uploads copy with many files in flight; every copy must come out whole.
func TestConcurrentCopy(t *testing.T) {
	for _, m := range copyMethods {
		t.Run(m.method, func(t *testing.T) {
			tr, dir := copySetup(t, m.sftpOnly, m.noExt, sshtest.Options{})
			const n = 100
			data := func(i int) string { return strings.Repeat(fmt.Sprintf("file %d ", i), 1+i*37) }
			for i := range n {
				p := fmt.Sprintf("%s/f%03d", dir, i)
				if err := os.WriteFile(p, []byte(data(i)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() {
					errs[i] = tr.Copy(context.Background(), fmt.Sprintf("%s/f%03d", dir, i), fmt.Sprintf("%s/f%03d.copy", dir, i))
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				p := fmt.Sprintf("%s/f%03d", dir, i)
				assertPrivateCopy(t, p, p+".copy", data(i), 0o644)
			}
		})
	}
}

// A copy that does not fit on the server's disk fails, says why where
// SFTP lets it tell, and leaves nothing behind.
func TestCopyDiskFull(t *testing.T) {
	for _, m := range copyMethods {
		t.Run(m.method, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "copy-full-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			os.Chmod(dir, 0o755)
			small := dir + "/small"
			if err := os.Mkdir(small, 0o755); err != nil {
				t.Fatal(err)
			}
			s := sshtest.Start(t, sshtest.Options{SFTPOnly: m.sftpOnly, TmpfsMounts: map[string]string{small: "1m"}})
			tr := dial(t, s.Config())
			if m.noExt {
				sshx.DisableExtensions(tr)
			}
			if err := os.WriteFile(dir+"/big", make([]byte, 3<<20), 0o644); err != nil {
				t.Fatal(err)
			}
			err = tr.Copy(context.Background(), dir+"/big", small+"/big")
			if err == nil {
				t.Fatal("no error")
			}
			if tr.CopyMethod() != transport.CopyShell && !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("%v, want ENOSPC", err)
			}
			if _, err := os.Lstat(s.Path(small + "/big")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the failed copy was left behind")
			}
		})
	}
}

// Copies waiting on a server that stops answering fail once the keepalive
// ends the connection, instead of hanging on the copy-data channel.
func TestCopyServerHangs(t *testing.T) {
	defer sshx.SetKeepalive(100*time.Millisecond, 500*time.Millisecond)()
	s, tr, dir := setup(t, sshtest.Options{})
	ctx := context.Background()
	create(t, tr, dir+"/old", 0o644, "old")
	if err := tr.Copy(ctx, dir+"/old", dir+"/first"); err != nil { // the channel is open
		t.Fatal(err)
	}
	s.Freeze()
	errc := make(chan error, 10)
	for i := range cap(errc) {
		go func() { errc <- tr.Copy(ctx, dir+"/old", fmt.Sprintf("%s/new%d", dir, i)) }()
	}
	for range cap(errc) {
		select {
		case err := <-errc:
			if err == nil {
				t.Fatal("Copy succeeded on a frozen server")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Copy hangs on a frozen server")
		}
	}
}
