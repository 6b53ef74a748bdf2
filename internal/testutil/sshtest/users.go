package sshtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

func (s *Server) setUser(name string) error {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return err
		}
		if name != "" && name != u.Username {
			return fmt.Errorf("sshtest: user %q needs root (sshd can only log in its own user otherwise)", name)
		}
		return s.fillUser(u)
	}
	if name == "" {
		name = "adtest"
	}
	u, err := ensureUser(name)
	if err != nil {
		return err
	}
	return s.fillUser(u)
}

func (s *Server) fillUser(u *user.User) error {
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("sshtest: user %s: %w", u.Username, err)
	}
	s.User, s.Home, s.uid, s.gid = u.Username, u.HomeDir, uid, gid
	return nil
}

var userMu sync.Mutex

// ensureUser creates the login user once. Test binaries of several packages
// run at the same time, so an flock serializes useradd across processes.
func ensureUser(name string) (*user.User, error) {
	userMu.Lock()
	defer userMu.Unlock()
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "atomic-deploy-sshtest-user.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	if _, err := user.Lookup(name); err != nil {
		if out, err := exec.Command("useradd", "-m", "-s", "/bin/bash", name).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("useradd %s: %v: %s", name, err, out)
		}
	}
	// A new account is locked ("!"), and sshd refuses locked accounts even
	// for key logins; "*" means no password but not locked.
	if out, err := exec.Command("usermod", "-p", "*", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("usermod %s: %v: %s", name, err, out)
	}
	return user.Lookup(name)
}

// MkdirUserTemp makes an empty directory owned by the login user (a deploy
// target), removed in t.Cleanup.
func (s *Server) MkdirUserTemp(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sshtest-deploy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, s.uid, s.gid); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// MkdirUserTemp makes an empty directory owned by the login user that
// servers get by default (Options.User empty), removed in t.Cleanup: a
// deploy target to bind-mount (PrivateMounts) into servers not started yet.
func MkdirUserTemp(t testing.TB) string {
	t.Helper()
	requireSSHD(t)
	var s Server
	if err := s.setUser(""); err != nil {
		t.Fatal(err)
	}
	return s.MkdirUserTemp(t)
}
