package action

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/sshtest"
)

// as runs a line of sh as the named user (its own groups only) and
// returns what went wrong, if anything.
func as(t *testing.T, name, line string) error {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cmd := exec.Command("/bin/sh", "-c", line)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if out, err := cmd.CombinedOutput(); err != nil {
		return &exec.ExitError{ProcessState: cmd.ProcessState, Stderr: out}
	}
	return nil
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the deploy user and the web server's are different users")
	}
	if _, err := user.Lookup("www-data"); err != nil {
		t.Skipf("no www-data user: %v", err)
	}
}

// TestActionWritableModeACL: over a real sshd whose user is not root,
// writable-mode acl lets the web server's user (www-data) write into the
// writable dirs of the release and the shared one; what it made there
// stays writable by the deploy user, and does not stop the next deploy
// (the deploy user cannot change the ACL of a file it does not own, so it
// leaves it alone).
func TestActionWritableModeACL(t *testing.T) {
	needRoot(t)
	srv := sshtest.Start(t, sshtest.Options{})
	root := filepath.Join(srv.MkdirUserTemp(t), "app")
	ws := siteWorkspace(t)
	os.MkdirAll(filepath.Join(ws, "site/cache"), 0o755)
	os.WriteFile(filepath.Join(ws, "site/cache/built.php"), []byte("<?php"), 0o644)
	inputs := sshInputs(srv, root, map[string]string{"shared-dirs": "storage", "writable-dirs": "cache\nstorage",
		"writable-mode": "acl", "writable-user": "www-data"})
	for i := 0; i < 2; i++ {
		r := runAction(t, ws, inputs)
		if r.code != 0 {
			t.Fatalf("deploy %d: exit %d\n%s", i+1, r.code, r.stdout)
		}
		current := filepath.Join(root, "current")
		acl, err := exec.Command("getfacl", "-p", filepath.Join(current, "cache")).CombinedOutput()
		if err != nil || !strings.Contains(string(acl), "\nuser:www-data:rwx\n") || !strings.Contains(string(acl), "\ndefault:user:www-data:rwx\n") || !strings.Contains(string(acl), "\nuser:"+srv.User+":rwx\n") {
			t.Errorf("deploy %d: cache's ACL (%v):\n%s", i+1, err, acl)
		}
		for _, f := range []string{"cache/by-www-data", "storage/by-www-data.log", "cache/built.php"} {
			if err := as(t, "www-data", "umask 077; echo "+strconv.Itoa(i)+" >> '"+filepath.Join(current, f)+"'"); err != nil {
				t.Errorf("deploy %d: www-data cannot write %s: %v: %s", i+1, f, err, err.(*exec.ExitError).Stderr)
			}
		}
		if err := as(t, srv.User, "echo deploy >> '"+filepath.Join(current, "storage/by-www-data.log")+"'"); err != nil {
			t.Errorf("deploy %d: the deploy user cannot write what www-data made: %v: %s", i+1, err, err.(*exec.ExitError).Stderr)
		}
	}
}

// TestActionWritableModeChgrp: with writable-mode chgrp the writable dirs
// belong to the web server's group, which the deploy user is in, and the
// web server writes into them.
func TestActionWritableModeChgrp(t *testing.T) {
	needRoot(t)
	srv := sshtest.Start(t, sshtest.Options{User: "adtest-chgrp"})
	if out, err := exec.Command("usermod", "-aG", "www-data", srv.User).CombinedOutput(); err != nil {
		t.Fatalf("usermod: %v: %s", err, out)
	}
	root := filepath.Join(srv.MkdirUserTemp(t), "app")
	ws := siteWorkspace(t)
	os.MkdirAll(filepath.Join(ws, "site/cache"), 0o755)
	r := runAction(t, ws, sshInputs(srv, root, map[string]string{"writable-dirs": "cache", "writable-mode": "chgrp", "writable-user": "www-data"}))
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stdout)
	}
	if err := as(t, "www-data", "echo x > '"+filepath.Join(root, "current/cache/by-www-data")+"'"); err != nil {
		t.Errorf("www-data cannot write into cache: %v: %s", err, err.(*exec.ExitError).Stderr)
	}
	if err := as(t, "www-data", "echo x > '"+filepath.Join(root, "current/not-writable")+"'"); err == nil {
		t.Errorf("www-data can write outside writable-dirs")
	}
}

// TestActionWritableModeNeedsAShell: acl and chgrp run setfacl or chgrp, so
// an SFTP-only server refuses them with a clear error and nothing goes
// live; chmod still works there.
func TestActionWritableModeNeedsAShell(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{SFTPOnly: true})
	root := filepath.Join(srv.MkdirUserTemp(t), "app")
	ws := siteWorkspace(t)
	r := runAction(t, ws, sshInputs(srv, root, map[string]string{"writable-dirs": "cache", "writable-mode": "acl", "writable-user": "www-data"}))
	if r.code != 1 || !strings.Contains(r.stdout, "writable-mode acl (setfacl or chgrp): this needs a shell on the server") {
		t.Fatalf("exit %d, want 1 saying acl needs a shell\n%s", r.code, r.stdout)
	}
	if _, err := os.Lstat(filepath.Join(root, "current")); err == nil {
		t.Errorf("a release went live")
	}
	if r := runAction(t, ws, sshInputs(srv, root, map[string]string{"writable-dirs": "cache", "writable-mode": "chmod"})); r.code != 0 {
		t.Errorf("chmod over SFTP: exit %d\n%s", r.code, r.stdout)
	}
}
