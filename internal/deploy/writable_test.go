package deploy

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy/remote"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// writableUsers are the accounts the writable-mode tests play with: a
// deploy user that is not root (nobody) and the web server's (www-data).
type writableUsers struct {
	deploy, web *syscall.Credential
}

func lookupCredential(t *testing.T, name string) *syscall.Credential {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("no user %s on this machine: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// needRootAndACL skips unless the test can change owners and read ACLs
// (make test runs as root and installs acl).
func needRootAndACL(t *testing.T) writableUsers {
	t.Helper()
	required := os.Getenv("ATOMIC_DEPLOY_REQUIRE_SSHD") == "1"
	if os.Geteuid() != 0 {
		if required {
			t.Fatal("writable-mode tests need root")
		}
		t.Skip("writable-mode tests need root (they change owners)")
	}
	if _, err := exec.LookPath("getfacl"); err != nil {
		if required {
			t.Fatal("getfacl is not installed (make test installs acl)")
		}
		t.Skip("getfacl is not installed")
	}
	return writableUsers{deploy: lookupCredential(t, "nobody"), web: lookupCredential(t, "www-data")}
}

// runAs runs cmd under sh as cred (nil: this process's user), with env
// (nil: this process's).
func runAs(t *testing.T, sh posixShell, cmd transport.Command, cred *syscall.Credential, env []string) ran {
	t.Helper()
	c := exec.Command(sh.argv[0], append(append(sh.argv[1:], "-c", cmd.Script), cmd.Argv()...)...)
	c.Env = env
	if cred != nil {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	err := c.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return ran{out.String(), errOut.String(), exit.ExitCode()}
	case err != nil:
		t.Fatalf("%s: %v", sh.name, err)
	}
	return ran{out.String(), errOut.String(), 0}
}

// shellAs runs a line of sh as cred and reports whether it succeeded.
func shellAs(t *testing.T, cred *syscall.Credential, line string) error {
	t.Helper()
	c := exec.Command("/bin/sh", "-c", line)
	c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := c.CombinedOutput(); err != nil {
		return errors.New(strings.TrimSpace(string(out)))
	}
	return nil
}

// writableTree is a release as the deploy user left it: cache/ (files,
// a subdirectory, a file the web server made, a symlink out of the tree)
// and storage, a link to a shared directory. Every directory up to it is
// open to the other users.
type writableTree struct {
	cache, storage, shared, outside, foreign string
}

func makeWritableTree(t *testing.T, u writableUsers) writableTree {
	t.Helper()
	root := t.TempDir()
	for d := root; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755) // go test's temporary directories are 0700
	}
	writeFiles(t, root, map[string]string{"release/cache/a": "a", "release/cache/sub/b": "b", "shared/storage/logs/app.log": "log", "outside": "not ours to open"})
	tr := writableTree{cache: filepath.Join(root, "release/cache"), storage: filepath.Join(root, "release/storage"),
		shared: filepath.Join(root, "shared/storage"), outside: filepath.Join(root, "outside"), foreign: filepath.Join(root, "release/cache/foreign")}
	os.Symlink("../shared/storage", tr.storage)
	os.Symlink(tr.outside, filepath.Join(tr.cache, "outside-link"))
	for _, p := range []string{"release", "release/cache", "release/cache/a", "release/cache/sub", "release/cache/sub/b", "shared", "shared/storage", "shared/storage/logs", "shared/storage/logs/app.log"} {
		os.Lchown(filepath.Join(root, p), int(u.deploy.Uid), int(u.deploy.Gid))
	}
	os.Lchown(filepath.Join(tr.cache, "outside-link"), int(u.deploy.Uid), int(u.deploy.Gid))
	os.WriteFile(tr.foreign, []byte("the web server's"), 0o644)
	os.Chown(tr.foreign, int(u.web.Uid), int(u.web.Gid))
	return tr
}

func getfacl(t *testing.T, p string) string {
	t.Helper()
	out, err := exec.Command("getfacl", "-pn", p).CombinedOutput()
	if err != nil {
		t.Fatalf("getfacl %s: %v: %s", p, err, out)
	}
	return string(out)
}

func TestWritableModes(t *testing.T) {
	u := needRootAndACL(t)
	web, deployUID := strconv.Itoa(int(u.web.Uid)), strconv.Itoa(int(u.deploy.Uid))
	forEachShell(t, func(t *testing.T, sh posixShell) {
		t.Run("acl", func(t *testing.T) {
			tr := makeWritableTree(t, u)
			r := runAs(t, sh, remote.Writable.Command("acl", "www-data", tr.cache, tr.storage), u.deploy, nil)
			if r.status != 0 {
				t.Fatalf("status %d: %s", r.status, r.stderr)
			}
			for _, p := range []string{tr.cache, filepath.Join(tr.cache, "sub"), tr.shared, filepath.Join(tr.shared, "logs")} {
				acl := getfacl(t, p)
				for _, want := range []string{"user:" + web + ":rwx", "user:" + deployUID + ":rwx", "default:user:" + web + ":rwx", "default:user:" + deployUID + ":rwx"} {
					if !strings.Contains(acl, "\n"+want+"\n") {
						t.Errorf("%s lacks %s:\n%s", p, want, acl)
					}
				}
			}
			for _, p := range []string{filepath.Join(tr.cache, "a"), filepath.Join(tr.shared, "logs/app.log")} {
				if acl := getfacl(t, p); !strings.Contains(acl, "\nuser:"+web+":rw-\n") || strings.Contains(acl, "default:") {
					t.Errorf("%s: want an access ACL for the web user, no default:\n%s", p, acl)
				}
			}
			for _, p := range []string{tr.foreign, tr.outside} {
				if acl := getfacl(t, p); strings.Contains(acl, "user:"+web) {
					t.Errorf("%s was changed (the web server's file, or outside the tree):\n%s", p, acl)
				}
			}
			// The web server writes into both, and the deploy user can
			// change what it made there.
			for _, dir := range []string{tr.cache, filepath.Join(tr.storage, "logs")} {
				made := filepath.Join(dir, "by-the-web-server")
				// umask 077: the default ACL, not the umask, decides.
				if err := shellAs(t, u.web, "umask 077; echo 1 > '"+made+"'"); err != nil {
					t.Errorf("the web user cannot write into %s: %v", dir, err)
				}
				if err := shellAs(t, u.deploy, "echo 3 >> '"+made+"'"); err != nil {
					t.Errorf("the deploy user cannot change what the web user made in %s: %v", dir, err)
				}
			}
			if err := shellAs(t, u.web, "echo 1 >> '"+filepath.Join(tr.cache, "a")+"'"); err != nil {
				t.Errorf("the web user cannot write a released file: %v", err)
			}
		})
		t.Run("chgrp", func(t *testing.T) {
			tr := makeWritableTree(t, u)
			inGroup := *u.deploy
			inGroup.Groups = []uint32{u.web.Gid}
			r := runAs(t, sh, remote.Writable.Command("chgrp", "www-data", tr.cache, tr.storage), &inGroup, nil)
			if r.status != 0 {
				t.Fatalf("status %d: %s", r.status, r.stderr)
			}
			for _, p := range []string{tr.cache, filepath.Join(tr.cache, "a"), filepath.Join(tr.cache, "sub"), filepath.Join(tr.cache, "sub/b"), tr.shared, filepath.Join(tr.shared, "logs/app.log")} {
				var st syscall.Stat_t
				syscall.Stat(p, &st)
				if st.Gid != u.web.Gid || st.Mode&0o060 != 0o060 {
					t.Errorf("%s: group %d mode %o, want group %d with rw", p, st.Gid, st.Mode&0o7777, u.web.Gid)
				}
			}
			var st syscall.Stat_t
			syscall.Stat(tr.outside, &st)
			if st.Gid == u.web.Gid {
				t.Errorf("the file outside the tree was given to the group")
			}
			if err := shellAs(t, u.web, "echo 1 > '"+filepath.Join(tr.cache, "new")+"' && echo 1 >> '"+filepath.Join(tr.storage, "logs/app.log")+"'"); err != nil {
				t.Errorf("the web user cannot write: %v", err)
			}
		})
		t.Run("missing ones are created, with their parents, in every mode", func(t *testing.T) {
			for _, mode := range []string{"", "acl", "chgrp"} {
				tr := makeWritableTree(t, u)
				missing := filepath.Join(filepath.Dir(tr.cache), "bootstrap/cache")
				args := []string{missing}
				if mode != "" {
					args = append([]string{mode, "www-data"}, args...)
				}
				inGroup := *u.deploy
				inGroup.Groups = []uint32{u.web.Gid}
				if r := runAs(t, sh, remote.Writable.Command(args...), &inGroup, nil); r.status != 0 {
					t.Fatalf("mode %q: status %d: %s", mode, r.status, r.stderr)
				}
				if info, err := os.Stat(missing); err != nil || !info.IsDir() || info.Mode().Perm()&0o070 != 0o070 && mode != "acl" {
					t.Errorf("mode %q: %s not made group-writable: %v %v", mode, missing, info, err)
				}
			}
		})
		t.Run("chgrp to a group the deploy user is not in", func(t *testing.T) {
			tr := makeWritableTree(t, u)
			r := runAs(t, sh, remote.Writable.Command("chgrp", "www-data", tr.cache), u.deploy, nil)
			if r.status == 0 || !strings.Contains(r.stderr, "writable-mode chgrp: the deploy user nobody is not in group www-data") || !strings.Contains(r.stderr, "usermod -aG www-data nobody") {
				t.Errorf("status %d: %s", r.status, r.stderr)
			}
		})
		t.Run("acl for a user the server does not have", func(t *testing.T) {
			tr := makeWritableTree(t, u)
			r := runAs(t, sh, remote.Writable.Command("acl", "no-such-user-7f3a", tr.cache), u.deploy, nil)
			if r.status == 0 || !strings.Contains(r.stderr, "writable-user no-such-user-7f3a: no such user on the server") {
				t.Errorf("status %d: %s", r.status, r.stderr)
			}
		})
		t.Run("a file that cannot be changed fails it, wherever it is", func(t *testing.T) {
			// setfacl's exit status is its last file's: the immutable file
			// is in the first directory, and setfacl's batch ends in the second.
			inGroup := *u.deploy
			inGroup.Groups = []uint32{u.web.Gid}
			for _, mode := range []string{"acl", "chgrp"} {
				tr := makeWritableTree(t, u)
				stuck := filepath.Join(tr.cache, "sub/immutable")
				os.WriteFile(stuck, nil, 0o644)
				os.Chown(stuck, int(u.deploy.Uid), int(u.deploy.Gid))
				if out, err := exec.Command("chattr", "+i", stuck).CombinedOutput(); err != nil {
					t.Skipf("chattr +i: %v: %s", err, out)
				}
				t.Cleanup(func() { exec.Command("chattr", "-i", stuck).Run() })
				r := runAs(t, sh, remote.Writable.Command(mode, "www-data", tr.cache, tr.storage), &inGroup, nil)
				if r.status == 0 || !strings.Contains(r.stderr, stuck+"': Operation not permitted") && !strings.Contains(r.stderr, stuck+": Operation not permitted") {
					t.Errorf("%s: status %d (%s), want a failure naming %s", mode, r.status, r.stderr, stuck)
				}
			}
		})
		t.Run("acl without setfacl", func(t *testing.T) {
			tr := makeWritableTree(t, u)
			bin := t.TempDir()
			os.Chmod(bin, 0o755)
			for _, tool := range []string{"id", "find", "chmod", "chgrp", "mkdir"} {
				p, err := exec.LookPath(tool)
				if err != nil {
					t.Fatal(err)
				}
				os.Symlink(p, filepath.Join(bin, tool))
			}
			r := runAs(t, sh, remote.Writable.Command("acl", "www-data", tr.cache), u.deploy, []string{"PATH=" + bin})
			if r.status == 0 || !strings.Contains(r.stderr, "writable-mode acl needs setfacl on the server: apt-get install acl") {
				t.Errorf("status %d: %s", r.status, r.stderr)
			}
		})
	})
}
