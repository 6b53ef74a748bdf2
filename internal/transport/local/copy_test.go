package local_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/local"
)

// copyDirs are where Copy is tried: the test's temporary directory and,
// when ATOMIC_DEPLOY_REFLINK_DIR names a directory on a filesystem with
// reflinks (XFS, btrfs), there too, so that FICLONE is exercised.
func copyDirs(t *testing.T) []string {
	dirs := []string{t.TempDir()}
	if d := os.Getenv("ATOMIC_DEPLOY_REFLINK_DIR"); d != "" {
		sub, err := os.MkdirTemp(d, "copy-test-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(sub) })
		dirs = append(dirs, sub)
	}
	return dirs
}

func TestCopy(t *testing.T) {
	tr := local.New()
	ctx := context.Background()
	if got := tr.CopyMethod(); got != transport.CopyLocal {
		t.Errorf("CopyMethod = %q", got)
	}
	for _, dir := range copyDirs(t) {
		for _, tc := range []struct {
			name string
			mode fs.FileMode
			data string
		}{
			{"plain", 0o644, "hello"},
			{"private", 0o600, "secret"},
			{"executable", 0o755, "#!/bin/sh\n"},
			{"setuid", fs.ModeSetuid | 0o750, "x"},
			{"empty", 0o640, ""},
			{"large", 0o644, strings.Repeat("0123456789abcdef", 1<<16)},
		} {
			t.Run(filepath.Base(dir)+"/"+tc.name, func(t *testing.T) {
				old, cp := filepath.Join(dir, tc.name), filepath.Join(dir, tc.name+".copy")
				if err := os.WriteFile(old, []byte(tc.data), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(old, tc.mode); err != nil {
					t.Fatal(err)
				}
				if err := tr.Copy(ctx, old, cp); err != nil {
					t.Fatal(err)
				}
				assertPrivateCopy(t, old, cp, tc.data, tc.mode)
			})
		}
	}
}

// assertPrivateCopy checks that cp holds data with mode under an inode of
// its own, and that writing into it in place leaves old as it was.
func assertPrivateCopy(t *testing.T, old, cp, data string, mode fs.FileMode) {
	t.Helper()
	oi, err := os.Lstat(old)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.Lstat(cp)
	if err != nil {
		t.Fatal(err)
	}
	if ci.Mode() != mode {
		t.Errorf("copy's mode %v, want %v", ci.Mode(), mode)
	}
	if os.SameFile(oi, ci) || ci.Sys().(*syscall.Stat_t).Nlink != 1 {
		t.Errorf("the copy shares the inode of the original or has other links")
	}
	if b, _ := os.ReadFile(cp); string(b) != data {
		t.Errorf("copy holds %d bytes, want %d", len(b), len(data))
	}
	f, err := os.OpenFile(cp, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("CHANGED"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if b, _ := os.ReadFile(old); string(b) != data {
		t.Errorf("writing into the copy changed the original")
	}
}

func TestCopyErrors(t *testing.T) {
	tr := local.New()
	ctx := context.Background()
	dir := t.TempDir()
	old, taken := filepath.Join(dir, "old"), filepath.Join(dir, "taken")
	os.WriteFile(old, []byte("old"), 0o644)
	os.WriteFile(taken, []byte("taken"), 0o644)

	err := tr.Copy(ctx, old, taken)
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "copy "+old+" "+taken) {
		t.Errorf("onto an existing file: %v, want fs.ErrExist naming both paths", err)
	}
	if b, _ := os.ReadFile(taken); string(b) != "taken" {
		t.Errorf("the existing file was changed: %q", b)
	}
	if err := tr.Copy(ctx, filepath.Join(dir, "missing"), filepath.Join(dir, "new")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("from a missing file: %v, want fs.ErrNotExist", err)
	}
	if err := tr.Copy(ctx, old, filepath.Join(dir, "no-dir", "new")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("into a missing directory: %v, want fs.ErrNotExist", err)
	}
	if err := tr.Copy(ctx, dir, filepath.Join(dir, "dir-copy")); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("of a directory: %v, want not a regular file", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "dir-copy")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed copy left its target behind")
	}
}
