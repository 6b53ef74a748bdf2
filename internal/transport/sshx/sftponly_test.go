package sshx_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/sshtest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// An SFTP-only account (ForceCommand internal-sftp) has no shell; every
// file operation must still work, atomically where promised.
func TestSFTPOnly(t *testing.T) {
	s, tr, dir := setup(t, sshtest.Options{SFTPOnly: true})
	ctx := context.Background()

	tr.Warm() // internal-sftp takes its place and never says ready
	if tr.CanExec() {
		t.Fatal("CanExec true on an SFTP-only account")
	}
	if err := tr.Exec(ctx, testCommand("true"), nil, nil, nil); !errors.Is(err, transport.ErrNoShell) {
		t.Fatalf("Exec = %v, want ErrNoShell", err)
	}

	create(t, tr, dir+"/orig", 0o640, "content")
	if err := tr.Link(ctx, dir+"/orig", dir+"/hard"); err != nil {
		t.Fatal(err)
	}
	assertSameInode(t, dir+"/orig", dir+"/hard")

	if err := tr.Symlink(ctx, "releases/1", dir+"/current"); err != nil {
		t.Fatal(err)
	}
	if err := tr.Symlink(ctx, "releases/2", dir+"/current.new"); err != nil {
		t.Fatal(err)
	}
	if err := tr.Rename(ctx, dir+"/current.new", dir+"/current"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.Readlink(dir + "/current"); got != "releases/2" {
		t.Fatalf("current -> %q", got)
	}
	if err := tr.WriteFile(ctx, dir+"/orig", []byte("replaced"), 0o644); err != nil {
		t.Fatal(err)
	}

	tree := dir + "/tree"
	if err := tr.Mkdir(ctx, tree, 0o755); err != nil {
		t.Fatal(err)
	}
	makeWeirdTree(t, tr, tree)
	stats, err := tr.Scan(ctx, tree)
	if err != nil {
		t.Fatal(err)
	}
	if want := 4*len(weirdNames) + 6; len(stats) != want {
		t.Fatalf("Scan found %d entries, want %d", len(stats), want)
	}
	for _, st := range stats {
		if st.Precise {
			t.Fatalf("%q: Precise over SFTP", st.Path)
		}
		fi, err := os.Lstat(tree + "/" + st.Path)
		if err != nil || fi.Mode() != st.Mode || fi.ModTime().Unix() != st.ModTime.Unix() {
			t.Errorf("%q: on disk %v, scanned %+v (%v)", st.Path, fi, st, err)
		}
	}

	if err := tr.RemoveAll(ctx, tree); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(tree); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("RemoveAll left %s", tree)
	}

	now, err := tr.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(now); d < -2*time.Second || d > 2*time.Second {
		t.Fatalf("Now is %v off", d)
	}
	assertNotPwned(t, s)
	// Now's probe file is gone from the login directory.
	entries, _ := os.ReadDir(s.Home)
	for _, e := range entries {
		if len(e.Name()) > 20 && e.Name()[:20] == ".atomic-deploy-clock" {
			t.Errorf("%s left in the home directory", e.Name())
		}
	}
}

// Many servers at once, as multi-host tests will start them.
func TestManyServers(t *testing.T) {
	const n = 20
	opts := make([]sshtest.Options, n)
	for i := range opts {
		opts[i].SFTPOnly = i%2 == 1
	}
	servers := sshtest.StartMany(t, opts...)
	ports := map[int]bool{}
	for i, s := range servers {
		if ports[s.Port] {
			t.Fatalf("port %d used twice", s.Port)
		}
		ports[s.Port] = true
		tr := dial(t, s.Config())
		if tr.CanExec() != (i%2 == 0) {
			t.Errorf("%s: CanExec %v", s.Addr, tr.CanExec())
		}
	}
}

// Dial returns before the shell probe answers, and an Exec sent that early
// reaches whatever the server runs instead of a shell (OpenSSH refuses it
// with a message for ForceCommand internal-sftp; other forced commands may
// wait for their input). The caller learns from CanExec that there is no
// shell, and ends the command.
func TestEarlyExecOnSFTPOnly(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{SFTPOnly: true})
	tr := dial(t, s.Config())
	stdinR, stdinW := io.Pipe()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- tr.Exec(context.Background(), testCommand("echo locked"), stdinR, &out, io.Discard) }()
	if tr.CanExec() {
		t.Fatal("CanExec true on an SFTP-only account")
	}
	stdinW.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the early command did not end when its input did")
	}
	if strings.Contains(out.String(), "locked") {
		t.Fatalf("a shell ran the command: %q", out.String())
	}
	if err := tr.Ready(context.Background()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if err := tr.Exec(context.Background(), testCommand("true"), nil, nil, nil); !errors.Is(err, transport.ErrNoShell) {
		t.Fatalf("Exec after the probe = %v, want ErrNoShell", err)
	}
}
