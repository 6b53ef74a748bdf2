package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/shell"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/local"
)

// site is a deploy root on one host, a source tree, and the settings the
// tests deploy it with.
type site struct {
	*deploytest.Host
	t      *testing.T
	src    *deploytest.Source
	log    *deploytest.Log
	now    time.Time
	target deploy.Target // the Host's, unless a test dials another way
	set    deploy.Settings
}

// forEachTransport runs f as a subtest on each kind of host (all of them
// without kinds).
func forEachTransport(t *testing.T, f func(t *testing.T, kind deploytest.Kind), kinds ...deploytest.Kind) {
	if len(kinds) == 0 {
		kinds = deploytest.Kinds
	}
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) { f(t, kind) })
	}
}

func newSite(t *testing.T, files map[string]string) *site {
	return newSiteOn(t, deploytest.Local, files)
}

func newSiteOn(t *testing.T, kind deploytest.Kind, files map[string]string) *site {
	t.Helper()
	h := deploytest.New(t, deploytest.Options{Kind: kind})
	return &site{Host: h, t: t, src: deploytest.NewSource(t, files), log: &deploytest.Log{}, target: h.Target(),
		now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		set: deploy.Settings{KeepReleases: 5, Revision: "abc123", Parallel: 8, Lock: deploy.LockOptions{TTL: 10 * time.Second, Wait: 15 * time.Second},
			// Locally the per-file engine runs (the one SFTP-only servers get);
			// over SSH with a shell the tar stream does.
			NoTar: kind == deploytest.Local}}
}

func (s *site) options() deploy.Options {
	s.now = s.now.Add(time.Minute)
	now := s.now
	set := s.set
	return deploy.Options{Targets: []deploy.Target{s.target}, Root: s.Path, Settings: &set, Log: s.log,
		Concurrency: 4, AutoRollback: true, Now: func() time.Time { return now }}
}

func (s *site) deploy() (*deploy.Result, error) {
	s.t.Helper()
	return deploy.Deploy(context.Background(), s.options(), s.src.Manifest(s.set.Revision))
}

func (s *site) mustDeploy() *deploy.Result {
	s.t.Helper()
	res, err := s.deploy()
	if err != nil {
		s.t.Fatalf("deploy: %v\n%s", err, s.log)
	}
	return res
}

func TestFirstDeployLayout(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind deploytest.Kind) {
		s := newSiteOn(t, kind, map[string]string{"public/index.php": "<?php echo 1;", "app/a.txt": "a", "storage/logs/.keep": ""})
		s.set.SharedDirs = []string{"storage"}
		res := s.mustDeploy()
		if res.ReleaseID == "" || s.Current() != res.ReleaseID {
			t.Fatalf("current = %q, release %q", s.Current(), res.ReleaseID)
		}
		target, _ := os.Readlink(s.Root("current"))
		if target != "releases/"+res.ReleaseID {
			t.Errorf("current -> %q, want a relative link", target)
		}
		if got := s.Read("current/REVISION"); got != "abc123\n" {
			t.Errorf("REVISION = %q", got)
		}
		link, err := os.Readlink(s.Root("current", "storage"))
		if err != nil || link != "../../shared/storage" {
			t.Errorf("storage link = %q, %v", link, err)
		}
		if _, err := os.Stat(s.Root("shared/storage/logs/.keep")); err != nil {
			t.Errorf("shared/storage not seeded from the release: %v", err)
		}
		if _, err := os.Stat(s.Root(".atomic-deploy/lock")); !os.IsNotExist(err) {
			t.Errorf("lock left behind: %v", err)
		}
		if res.Hosts[0].FilesUploaded != 4 || res.Hosts[0].FilesReused != 0 {
			t.Errorf("uploaded %d reused %d, want 4 and 0", res.Hosts[0].FilesUploaded, res.Hosts[0].FilesReused)
		}
	})
}

func TestIncrementalDeployReusesByContent(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind deploytest.Kind) {
		files := map[string]string{}
		for i := range 50 {
			files[fmt.Sprintf("vendor/pkg%d/file.php", i)] = strings.Repeat(fmt.Sprint(i), 100)
		}
		s := newSiteOn(t, kind, files)
		if kind != deploytest.SFTPOnly {
			// What a hook leaves in a release is not the next one's.
			s.set.BeforeActivate = "mkdir -p node_modules/x && echo j > node_modules/x/y.js && ln -s vendor linked"
		}
		first := s.mustDeploy()
		s.set.BeforeActivate = ""
		// A fresh checkout: every mtime new, two files changed, one renamed.
		os.RemoveAll(s.src.Dir)
		os.MkdirAll(s.src.Dir, 0o755)
		files["vendor/pkg1/file.php"] = "changed"
		files["vendor/pkg2/file.php"] = "changed too"
		files["vendor/moved/file.php"] = files["vendor/pkg3/file.php"]
		delete(files, "vendor/pkg3/file.php")
		s.src.Write(files)
		res := s.mustDeploy()
		h := res.Hosts[0]
		// REVISION is unchanged too, so 48 + REVISION reused; 2 changed uploaded.
		if h.FilesUploaded != 2 || h.FilesReused != 49 {
			t.Fatalf("uploaded %d reused %d, want 2 and 49\n%s", h.FilesUploaded, h.FilesReused, s.log)
		}
		if res.PreviousID != first.ReleaseID {
			t.Errorf("previous = %q, want %q", res.PreviousID, first.ReleaseID)
		}
		for p, want := range files {
			if got := s.Read("current/" + p); got != want {
				t.Errorf("%s = %q, want %q", p, got, want)
			}
		}
		// The old release is untouched.
		if got := s.Read("releases/" + first.ReleaseID + "/vendor/pkg1/file.php"); got != strings.Repeat("1", 100) {
			t.Errorf("old release changed: %q", got)
		}
		// Nothing of the old release but what is reused, nothing left of the
		// lock holder's copy made ahead (holder.sh) once it let go (the
		// deploy may return before).
		for _, p := range []string{"current/node_modules", "current/linked", "current/vendor/pkg3"} {
			if _, err := os.Lstat(s.Root(p)); err == nil {
				t.Errorf("%s is in the new release", p)
			}
		}
		s.Settle()
		if left, _ := filepath.Glob(s.Root(".atomic-deploy", ".ahead-*")); len(left) > 0 {
			t.Errorf("left behind: %q", left)
		}
	})
}

func TestTamperedPreviousReleaseIsNotReused(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind deploytest.Kind) {
		s := newSiteOn(t, kind, map[string]string{"a.txt": "original", "b.txt": "bbb"})
		first := s.mustDeploy()
		// Someone edits the live release on the server (same size, later mtime).
		p := s.Root("releases", first.ReleaseID, "a.txt")
		if err := os.WriteFile(p, []byte("tampered"), 0o644); err != nil {
			t.Fatal(err)
		}
		res := s.mustDeploy()
		if got := s.Read("current/a.txt"); got != "original" {
			t.Fatalf("tampered content leaked into the new release: %q", got)
		}
		if res.Hosts[0].FilesUploaded != 1 {
			t.Errorf("uploaded %d, want 1 (the tampered file)", res.Hosts[0].FilesUploaded)
		}
	})
}

// An edit of the live release that puts size and mtime back (touch -r) is
// seen all the same: the release was sealed when it was finished (its
// files' inode and ctime), so the edited files are uploaded again, and the
// warning names them. Whichever command finished the release sealed it:
// the upload's (nothing between upload and switch), before-activate's, or
// seal.sh's (writable-dirs, say).
func TestEditedInPlaceIsNotReused(t *testing.T) {
	for _, c := range []struct {
		name string
		set  func(*deploy.Settings)
	}{
		{"sealed by the upload", func(*deploy.Settings) {}},
		{"sealed by before-activate", func(s *deploy.Settings) { s.BeforeActivate = "true" }},
		{"sealed on its own", func(s *deploy.Settings) { s.WritableDirs = []string{"cache"} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			forEachTransport(t, func(t *testing.T, kind deploytest.Kind) {
				files := map[string]string{"a.php": "aaaa", "b.php": "bbbb", "c.php": "cccc", "d.php": "dddd"}
				s := newSiteOn(t, kind, files)
				c.set(&s.set)
				first := s.mustDeploy()
				// With its shape, which the next deploy gets instead of
				// the seal while the release is as sealed (holder.sh).
				if _, err := os.Stat(s.Root(".atomic-deploy/manifests", first.ReleaseID+".seal.shape")); err != nil {
					t.Errorf("the release was sealed without its shape: %v", err)
				}
				for _, f := range []string{"a.php", "b.php", "c.php"} {
					p := s.Root("releases", first.ReleaseID, f)
					info, _ := os.Stat(p)
					w, err := os.OpenFile(p, os.O_WRONLY, 0)
					if err != nil {
						t.Fatal(err)
					}
					w.WriteString("EVIL")
					w.Close()
					os.Chtimes(p, info.ModTime(), info.ModTime())
				}
				res := s.mustDeploy()
				for f, want := range files {
					if got := s.Read("current/" + f); got != want {
						t.Errorf("%s: the new release holds %q, the source %q", f, got, want)
					}
				}
				if res.Hosts[0].FilesUploaded != 3 {
					t.Errorf("uploaded %d files, want the 3 edited ones", res.Hosts[0].FilesUploaded)
				}
				if !strings.Contains(s.log.String(), "3 files of the live release "+first.ReleaseID+" changed on the server since it was deployed") ||
					!strings.Contains(s.log.String(), "a.php, b.php, c.php") {
					t.Errorf("no warning naming the edited files:\n%s", s.log)
				}
			}, deploytest.Local, deploytest.SSH)
		})
	}
}

// No file of a release shares an inode with another release: a reused
// file is a private copy made on the server, so a hook (or the app) that
// writes into one in place changes nothing of the live release, nor of
// the one a rollback would return to; reuse: hardlink opts out.
func TestReleasesShareNoFile(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind deploytest.Kind) {
		s := newSiteOn(t, kind, map[string]string{"config.php": "base", "other.php": "x"})
		first := s.mustDeploy()
		if kind != deploytest.SFTPOnly {
			// A before-activate that writes into a reused file, waits and fails.
			s.set.BeforeActivate = "echo appended >> config.php; chmod 600 other.php; sleep 2; exit 1"
			done := make(chan error, 1)
			go func() { _, err := s.deploy(); done <- err }()
			time.Sleep(1200 * time.Millisecond)
			if got := s.Read("current/config.php"); got != "base" {
				t.Errorf("while the hook runs, the live config.php reads %q", got)
			}
			if err := <-done; err == nil {
				t.Fatal("the deploy succeeded")
			}
			if got := s.Read("current/config.php"); got != "base" || s.Current() != first.ReleaseID {
				t.Errorf("after the hook failed: live config.php %q, current %s", got, s.Current())
			}
			if info, _ := os.Stat(s.Root("current/other.php")); info.Mode().Perm() != 0o644 {
				t.Errorf("the hook changed the live release's mode: %v", info.Mode())
			}
			// An after-activate that writes in place into the new release.
			s.set.BeforeActivate, s.set.AfterActivate = "", "echo after >> config.php"
		}
		second := s.mustDeploy()
		if got := s.Read("releases/" + first.ReleaseID + "/config.php"); got != "base" {
			t.Errorf("the previous release (the rollback target) reads %q", got)
		}
		for _, f := range []string{"config.php", "other.php"} {
			a, errA := os.Stat(s.Root("releases", first.ReleaseID, f))
			b, errB := os.Stat(s.Root("releases", second.ReleaseID, f))
			if errA != nil || errB != nil || os.SameFile(a, b) {
				t.Errorf("%s: the two releases share a file (%v %v)", f, errA, errB)
			}
		}
		if second.Hosts[0].FilesReused != 3 {
			t.Errorf("reused %d files, want 3 (copied on the server)", second.Hosts[0].FilesReused)
		}

		// reuse: hardlink links them instead.
		s.set.AfterActivate, s.set.Reuse = "", deploy.ReuseHardlink
		third := s.mustDeploy()
		a, _ := os.Stat(s.Root("releases", second.ReleaseID, "other.php"))
		b, _ := os.Stat(s.Root("releases", third.ReleaseID, "other.php"))
		if !os.SameFile(a, b) {
			t.Error("reuse: hardlink made a copy")
		}
	})
}

func TestBeforeActivateFailureChangesNothing(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind deploytest.Kind) {
		s := newSiteOn(t, kind, map[string]string{"a.txt": "1"})
		first := s.mustDeploy()
		s.src.Write(map[string]string{"a.txt": "2"})
		s.set.BeforeActivate = "echo migrating; exit 3"
		res, err := s.deploy()
		if err == nil || !strings.Contains(err.Error(), "before-activate failed") || !strings.Contains(err.Error(), "exit status 3") {
			t.Fatalf("err = %v", err)
		}
		if s.Current() != first.ReleaseID {
			t.Errorf("current = %s, want %s", s.Current(), first.ReleaseID)
		}
		if got := s.Releases(); len(got) != 1 {
			t.Errorf("releases = %v, want only the first (failed one removed)", got)
		}
		if res.Hosts[0].Outcome != deploy.OutcomeFailed {
			t.Errorf("outcome = %q", res.Hosts[0].Outcome)
		}
		if _, err := os.Stat(s.Root(".atomic-deploy/lock")); !os.IsNotExist(err) {
			t.Errorf("lock left behind")
		}
		if !strings.Contains(s.log.String(), "["+s.target.Name+"] migrating") {
			t.Errorf("hook output not logged:\n%s", s.log)
		}
		// The next deploy works.
		s.set.BeforeActivate = ""
		s.mustDeploy()
	}, deploytest.Local, deploytest.SSH)
}

func TestAfterActivateFailureRollsBack(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind deploytest.Kind) {
		s := newSiteOn(t, kind, map[string]string{"a.txt": "1"})
		first := s.mustDeploy()
		s.set.AfterActivate = "exit 1"
		res, err := s.deploy()
		if err == nil || !res.RolledBack {
			t.Fatalf("err = %v, rolled back = %v", err, res.RolledBack)
		}
		if s.Current() != first.ReleaseID {
			t.Errorf("current = %s, want %s", s.Current(), first.ReleaseID)
		}
		// The failed release is never a rollback target and never counts.
		s.set.AfterActivate = ""
		third := s.mustDeploy()
		rb, err := deploy.Rollback(context.Background(), s.options(), "")
		if err != nil || rb.ReleaseID != first.ReleaseID {
			t.Fatalf("rollback went to %v (%v), want %s", rb.ReleaseID, err, first.ReleaseID)
		}
		_ = third
	}, deploytest.Local, deploytest.SSH)
}

func TestVerifyFailureWithoutAutoRollbackStaysLive(t *testing.T) {
	s := newSite(t, map[string]string{"a.txt": "1"})
	s.mustDeploy()
	o := s.options()
	o.AutoRollback = false
	o.Verify = func(context.Context, string, string, []string) error { return fmt.Errorf("health check failed: 500") }
	m := s.src.Manifest("")
	res, err := deploy.Deploy(context.Background(), o, m)
	if err == nil || !strings.Contains(err.Error(), "auto-rollback is false") {
		t.Fatalf("err = %v", err)
	}
	if s.Current() != res.ReleaseID {
		t.Errorf("current = %s, want the new release %s", s.Current(), res.ReleaseID)
	}
}

func TestMissingSharedFileFailsClearly(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind deploytest.Kind) {
		s := newSiteOn(t, kind, map[string]string{"a.txt": "1"})
		s.set.SharedFiles = []string{".env"}
		_, err := s.deploy()
		if err == nil || !strings.Contains(err.Error(), "shared file") || !strings.Contains(err.Error(), ".env") {
			t.Fatalf("err = %v", err)
		}
		if s.Current() != "" || len(s.Releases()) != 0 {
			t.Errorf("something was left: current %q releases %v", s.Current(), s.Releases())
		}
		os.WriteFile(s.Root("shared/.env"), []byte("APP_KEY=x"), 0o600)
		s.mustDeploy()
		if got := s.Read("current/.env"); got != "APP_KEY=x" {
			t.Errorf(".env = %q", got)
		}
	})
}

func TestPruneKeepsSuccessfulAndCurrent(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind deploytest.Kind) {
		s := newSiteOn(t, kind, map[string]string{"a.txt": "1"})
		s.set.KeepReleases = 2
		var ids []string
		for i := range 4 {
			s.src.Write(map[string]string{"a.txt": fmt.Sprint(i)})
			ids = append(ids, s.mustDeploy().ReleaseID)
		}
		got := s.Releases()
		if len(got) != 2 || got[0] != ids[2] || got[1] != ids[3] {
			t.Fatalf("releases = %v, want %v", got, ids[2:])
		}
		// A failed deploy does not push a good release out.
		s.set.AfterActivate = "false"
		s.deploy()
		s.set.AfterActivate = ""
		s.mustDeploy()
		got = s.Releases()
		if len(got) != 2 || got[0] != ids[3] {
			t.Errorf("releases after a failed deploy = %v; %s should be kept", got, ids[3])
		}
	})
}

func TestRollbackToExplicitAndInvalid(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind deploytest.Kind) {
		s := newSiteOn(t, kind, map[string]string{"a.txt": "1"})
		first := s.mustDeploy()
		s.src.Write(map[string]string{"a.txt": "2"})
		s.mustDeploy()
		if _, err := deploy.Rollback(context.Background(), s.options(), "20990101000000"); err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("err = %v", err)
		}
		res, err := deploy.Rollback(context.Background(), s.options(), first.ReleaseID)
		if err != nil || s.Current() != first.ReleaseID || res.ReleaseID != first.ReleaseID {
			t.Fatalf("rollback: %v, current %s", err, s.Current())
		}
		if got := s.Read("current/a.txt"); got != "1" {
			t.Errorf("a.txt = %q", got)
		}
	})
}

// A rollback on a server with a shell is the lock holder's command and
// the switch (a link made, renamed over current): the releases come from
// the holder's printout, and the log's two records go to the holder as
// it lets go. On every transport the log then says which release was
// rolled back, so that a rollback without a release id never picks it.
func TestRollbackTakesTheSwitchAndNoOtherRequest(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind deploytest.Kind) {
		s := newSiteOn(t, kind, map[string]string{"a.txt": "1"})
		first := s.mustDeploy()
		s.src.Write(map[string]string{"a.txt": "2"})
		second := s.mustDeploy()
		var trace testutil.SyncBuffer
		o := s.options()
		traced(&trace)(&o)
		if _, err := deploy.Rollback(context.Background(), o, ""); err != nil || s.Current() != first.ReleaseID {
			t.Fatalf("rollback: %v, current %s\n%s", err, s.Current(), s.log)
		}
		if kind == deploytest.SSH {
			for _, op := range []string{"readdir", "lstat", "readlink", "writefile"} {
				if strings.Contains(trace.String(), " "+op+" ") {
					t.Errorf("the rollback made a %s request:\n%s", op, trace.String())
				}
			}
		}
		log := s.Read(".atomic-deploy/releases.log")
		for _, want := range []string{`"id":"` + second.ReleaseID + `","status":"rolled-back"`, `"id":"` + first.ReleaseID + `","status":"success"`, `"message":"rollback from ` + second.ReleaseID} {
			if !strings.Contains(log, want) {
				t.Errorf("the releases log lacks %s:\n%s", want, log)
			}
		}
		if _, err := deploy.Rollback(context.Background(), s.options(), ""); err == nil || !strings.Contains(err.Error(), "no earlier successful release") {
			t.Errorf("a second rollback without a release id: %v (want none to go to)", err)
		}
	})
}

func TestCurrentAsDirectoryIsRefused(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind deploytest.Kind) {
		s := newSiteOn(t, kind, map[string]string{"a.txt": "1"})
		os.MkdirAll(s.Root("current"), 0o755)
		os.WriteFile(s.Root("current/index.html"), []byte("live site"), 0o644)
		_, err := s.deploy()
		if err == nil || !strings.Contains(err.Error(), "not a symlink") {
			t.Fatalf("err = %v", err)
		}
		if got := s.Read("current/index.html"); got != "live site" {
			t.Errorf("user data changed")
		}
	})
}

func TestLeftoversFromACrashAreCleaned(t *testing.T) {
	s := newSite(t, map[string]string{"a.txt": "1"})
	first := s.mustDeploy()
	// A crashed deploy: a partial release, a temp link, a lock nobody renews.
	os.MkdirAll(s.Root("releases/20260101000000/half"), 0o755)
	logf, _ := os.OpenFile(s.Root(".atomic-deploy/releases.log"), os.O_APPEND|os.O_WRONLY, 0)
	logf.WriteString(`{"id":"20260101000000","status":"started"}` + "\n")
	logf.Close()
	os.Symlink("releases/"+first.ReleaseID, s.Root(".current.tmp-dead"))
	lock := s.Root(".atomic-deploy/lock")
	os.MkdirAll(lock, 0o755)
	os.WriteFile(filepath.Join(lock, "owner.json"), []byte(`{"token":"dead","actor":"ghost","ttl":"1s","started_at":"2026-01-01T00:00:00Z"}`), 0o644)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(lock, "owner.json"), old, old)
	s.mustDeploy()
	if _, err := os.Lstat(s.Root(".current.tmp-dead")); !os.IsNotExist(err) {
		t.Errorf("temp link left")
	}
	if _, err := os.Stat(s.Root("releases/20260101000000")); !os.IsNotExist(err) {
		t.Errorf("partial release not pruned")
	}
}

// sftpOnly hides the shell of a transport, like ForceCommand internal-sftp.
type sftpOnly struct{ transport.Transport }

func (sftpOnly) CanExec() bool { return false }
func (sftpOnly) Exec(context.Context, transport.Command, io.Reader, io.Writer, io.Writer) error {
	return transport.ErrNoShell
}

func (s *site) useSFTPOnly() {
	s.target.Dial = func(context.Context) (transport.Transport, error) { return sftpOnly{local.New()}, nil }
}

func writeOwner(t *testing.T, p, body string, age time.Duration) {
	t.Helper()
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	when := time.Now().Add(-age)
	os.Chtimes(p, when, when)
}

const octocat = `{"token":"live","actor":"octocat","run_url":"https://github.com/o/r/actions/runs/1","ttl":"1h","started_at":"2026-01-01T00:00:00Z","pid":%d}`

func TestHeldLeaseLockNamesTheHolderAndUnlocks(t *testing.T) {
	s := newSite(t, map[string]string{"a.txt": "1"})
	s.useSFTPOnly()
	s.mustDeploy()
	writeOwner(t, s.Root(".atomic-deploy/lock/owner.json"), fmt.Sprintf(octocat, 0), 0)
	s.set.Lock.Wait = 300 * time.Millisecond
	_, err := s.deploy()
	if err == nil || !strings.Contains(err.Error(), "octocat") || !strings.Contains(err.Error(), "actions/runs/1") {
		t.Fatalf("err = %v", err)
	}
	if !deploy.ErrLocked(err) {
		t.Errorf("not a LockedError: %T", err)
	}
	res, err := deploy.Unlock(context.Background(), s.options())
	if err != nil || res.Hosts[0].Outcome != deploy.OutcomeUnlocked {
		t.Fatalf("unlock: %v %+v", err, res)
	}
	s.mustDeploy()
}

func TestStaleLeaseLockIsBroken(t *testing.T) {
	s := newSite(t, map[string]string{"a.txt": "1"})
	s.useSFTPOnly()
	s.mustDeploy()
	writeOwner(t, s.Root(".atomic-deploy/lock/owner.json"), `{"token":"dead","ttl":"1s","started_at":"2026-01-01T00:00:00Z"}`, time.Hour)
	s.mustDeploy()
}

// holdFlock holds the session lock from another process, as a deploy would.
func holdFlock(t *testing.T, root string) *exec.Cmd {
	t.Helper()
	os.MkdirAll(filepath.Join(root, ".atomic-deploy"), 0o755)
	// One process holding the descriptor, like the deploy's holder (exec keeps the pid).
	cmd := exec.Command("/bin/sh", "-c", `exec 9>>"$1" && flock 9 && exec sleep 30`, "sh", filepath.Join(root, ".atomic-deploy/lock.flock"))
	if err := cmd.Start(); err != nil {
		t.Skipf("flock: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(100 * time.Millisecond)
	return cmd
}

func TestHeldSessionLockNamesTheHolder(t *testing.T) {
	s := newSite(t, map[string]string{"a.txt": "1"})
	s.mustDeploy()
	holder := holdFlock(t, s.Root())
	writeOwner(t, s.Root(".atomic-deploy/lock.owner.json"), fmt.Sprintf(octocat, holder.Process.Pid), 0)
	s.set.Lock.Wait = 1 * time.Second
	_, err := s.deploy()
	if err == nil || !strings.Contains(err.Error(), "octocat") || !deploy.ErrLocked(err) {
		t.Fatalf("err = %v", err)
	}
	// The holder ends (its job was cancelled): the lock goes with it.
	holder.Process.Kill()
	holder.Wait()
	s.mustDeploy()
}

func TestOrphanedSessionLockHolderIsEnded(t *testing.T) {
	s := newSite(t, map[string]string{"a.txt": "1"})
	s.mustDeploy()
	holder := holdFlock(t, s.Root())
	// Its runner vanished: the heartbeat stopped long ago.
	writeOwner(t, s.Root(".atomic-deploy/lock.owner.json"),
		fmt.Sprintf(`{"token":"gone","actor":"ghost","ttl":"1s","started_at":"2026-01-01T00:00:00Z","pid":%d}`, holder.Process.Pid), time.Hour)
	s.set.Lock.Wait = 20 * time.Second
	s.mustDeploy()
}

func TestConcurrentDeploysSerialise(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind deploytest.Kind) {
		s := newSiteOn(t, kind, map[string]string{"a.txt": "1"})
		s.set.Lock.Wait = 30 * time.Second
		s.set.BeforeActivate = "sleep 0.2"
		var wg sync.WaitGroup
		errs := make([]error, 5)
		m := s.src.Manifest("")
		for i := range 5 {
			wg.Add(1)
			o := s.options()
			go func() {
				defer wg.Done()
				_, errs[i] = deploy.Deploy(context.Background(), o, m)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("deploy %d: %v", i, err)
			}
		}
		if got := s.Read("current/a.txt"); got != "1" {
			t.Errorf("a.txt = %q", got)
		}
		if n := len(s.Releases()); n != 5 {
			t.Errorf("%d releases, want 5", n)
		}
	}, deploytest.Local, deploytest.SSH)
}

// The runner hashes the release while it connects; when that fails, the
// lock is let go and nothing else changes.
func TestManifestNotReady(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind deploytest.Kind) {
		s := newSiteOn(t, kind, map[string]string{"index.html": "v1"})
		s.mustDeploy()
		live := s.Current()
		o := s.options()
		o.ManifestReady = func(context.Context) error { return errors.New("hash index.html: input/output error") }
		_, err := deploy.Deploy(context.Background(), o, s.src.Manifest(s.set.Revision))
		if err == nil || !strings.Contains(err.Error(), "nothing deployed: hash index.html") {
			t.Fatalf("error %v", err)
		}
		if got := s.Current(); got != live {
			t.Errorf("current %s, want %s", got, live)
		}
		s.src.Write(map[string]string{"index.html": "v2"})
		s.mustDeploy() // the lock was let go
	})
}

// With one host and nothing between upload and switch, the upload's own
// command switches and appends the success record; with a health check
// it only switches, and the record waits for the check. Either way the
// log reads as after any deploy.
func TestSwitchInTheUploadCommand(t *testing.T) {
	s := newSiteOn(t, deploytest.SSH, map[string]string{"a.txt": "1"})
	first := s.mustDeploy()
	s.src.Write(map[string]string{"a.txt": "2"})
	second := s.mustDeploy()
	o := s.options()
	checked := ""
	o.Verify = func(_ context.Context, id, _ string, _ []string) error { checked = s.Current(); return nil }
	s.src.Write(map[string]string{"a.txt": "3"})
	third, err := deploy.Deploy(context.Background(), o, s.src.Manifest(s.set.Revision))
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, s.log)
	}
	if checked != third.ReleaseID {
		t.Errorf("the health check saw current = %s, want %s", checked, third.ReleaseID)
	}
	if third.Hosts[0].SwitchedAt.IsZero() {
		t.Error("no switch time")
	}
	if got := s.Read("current/a.txt"); got != "3" {
		t.Errorf("a.txt = %q", got)
	}
	lists, err := deploy.ListReleases(context.Background(), s.options())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, list := range lists {
		for _, r := range list {
			got = append(got, fmt.Sprintf("%s %s %v", r.ID, r.Status, r.Current))
		}
	}
	want := []string{
		first.ReleaseID + " " + string(deploy.StatusSuccess) + " false",
		second.ReleaseID + " " + string(deploy.StatusSuccess) + " false",
		third.ReleaseID + " " + string(deploy.StatusSuccess) + " true",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("releases:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := strings.Count(s.Read(".atomic-deploy/releases.log"), `"status":"success"`); n != 3 {
		t.Errorf("%d success records in the log, want 3", n)
	}
}

// forcedCommand is a server whose forced command takes every command's
// place and sits on it until its input ends, and that has no shell.
type forcedCommand struct{ transport.Transport }

func (forcedCommand) CanExec() bool { return false }
func (forcedCommand) Exec(_ context.Context, _ transport.Command, stdin io.Reader, _, _ io.Writer) error {
	if stdin != nil {
		io.Copy(io.Discard, stdin)
	}
	return &transport.ExitError{Status: 1}
}

// The lock command goes out before anyone knows whether the server runs
// commands; when it goes unanswered, the deploy asks, ends it, and
// deploys over SFTP with a lease.
func TestLockCommandUnansweredFallsBackToSFTP(t *testing.T) {
	s := newSite(t, map[string]string{"a.txt": "1"})
	s.target.Dial = func(context.Context) (transport.Transport, error) { return forcedCommand{local.New()}, nil }
	start := time.Now()
	res := s.mustDeploy()
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("deploy took %v", d)
	}
	if s.Current() != res.ReleaseID || s.Read("current/a.txt") != "1" {
		t.Fatalf("current = %s", s.Current())
	}
}

// Every hook gets HookEnv (the env and secret-env inputs), and a hook that
// runs past HookTimeout is ended with what it started, failing the deploy.
func TestHookEnvironmentAndTimeout(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind deploytest.Kind) {
		s := newSiteOn(t, kind, map[string]string{"a.txt": "1"})
		s.set.HookEnv = map[string]string{"GREETING": "it's\nme", "RELEASE_ID": "not this one"}
		s.set.BeforeActivate = `printf '%s|%s' "$GREETING" "$RELEASE_ID" > seen`
		res := s.mustDeploy()
		if got := s.Read("current/seen"); got != "it's\nme|"+res.ReleaseID {
			t.Errorf("the hook saw %q", got)
		}

		marker := filepath.Join(s.Path, "late")
		s.set.HookTimeout = time.Second
		s.set.BeforeActivate = `sleep 3 && touch ` + shell.Quote(marker)
		start := time.Now()
		_, err := s.deploy()
		if err == nil || !strings.Contains(err.Error(), "command-timeout 1s") || time.Since(start) > 20*time.Second {
			t.Fatalf("deploy = %v after %s", err, time.Since(start))
		}
		time.Sleep(3 * time.Second)
		if _, err := os.Stat(s.Root("late")); err == nil {
			t.Error("the hook went on after its time ran out")
		}
		if s.Current() != res.ReleaseID {
			t.Errorf("current = %s, want %s", s.Current(), res.ReleaseID)
		}
	}, deploytest.Local, deploytest.SSH)
}

// A deploy that fails runs on-failure in the live release of every host,
// with the error, while it still holds the lock; with no release live
// (a first deploy) it does not run.
func TestOnFailureRunsInTheLiveRelease(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind deploytest.Kind) {
		s := newSiteOn(t, kind, map[string]string{"a.txt": "1"})
		s.set.OnFailure = `printf '%s|%s|%s' "$(basename "$(pwd -P)")" "$RELEASE_ID" "$DEPLOY_ERROR" > "$DEPLOY_PATH/failed"`
		s.set.BeforeActivate = "exit 3"
		if _, err := s.deploy(); err == nil {
			t.Fatal("the first deploy succeeded")
		}
		if _, err := os.Stat(s.Root("failed")); err == nil {
			t.Fatal("on-failure ran with no release live")
		}
		s.set.BeforeActivate = ""
		first := s.mustDeploy()
		s.set.BeforeActivate = "exit 3"
		res, err := s.deploy()
		if err == nil {
			t.Fatal("deploy succeeded")
		}
		got := strings.SplitN(s.Read("failed"), "|", 3)
		if len(got) != 3 || got[0] != first.ReleaseID || got[1] != res.ReleaseID || !strings.Contains(got[2], "exit status 3") {
			t.Errorf("on-failure saw %q; want it in %s about %s with the error", got, first.ReleaseID, res.ReleaseID)
		}
	}, deploytest.Local, deploytest.SSH)
}

// The two kinds of lock see each other: a deploy that takes a lease (its
// transport sees no shell, say the probe failed) while another deploy
// holds the flock waits, and a deploy with a shell waits while a fresh
// lease is held. Neither changes anything.
func TestLockKindsSeeEachOther(t *testing.T) {
	t.Run("lease while the flock is held", func(t *testing.T) {
		s := newSite(t, map[string]string{"a.txt": "1"})
		s.mustDeploy()
		s.set.BeforeActivate = "sleep 4"
		s.set.Actor = "first"
		firstDone := make(chan error, 1)
		go func() { _, err := s.deploy(); firstDone <- err }()
		time.Sleep(1500 * time.Millisecond) // holding the flock, in its hook
		second := *s
		second.set.BeforeActivate, second.set.Actor = "", "second"
		second.set.Lock.Wait = time.Second
		second.useSFTPOnly()
		_, err := second.deploy()
		if !deploy.ErrLocked(err) || !strings.Contains(err.Error(), "first") {
			t.Errorf("second deploy: %v, want it locked out by the first", err)
		}
		if err := <-firstDone; err != nil {
			t.Fatalf("first deploy: %v", err)
		}
		if got := s.Releases(); len(got) != 2 {
			t.Errorf("releases %v, want the two of the other deploys: the second changed something", got)
		}
	})
	t.Run("flock while a lease is held", func(t *testing.T) {
		s := newSite(t, map[string]string{"a.txt": "1"})
		first := s.mustDeploy()
		writeOwner(t, s.Root(".atomic-deploy/lock/owner.json"), fmt.Sprintf(octocat, 0), 0)
		s.set.Lock.Wait = 2 * time.Second
		_, err := s.deploy()
		if !deploy.ErrLocked(err) || !strings.Contains(err.Error(), "octocat") {
			t.Errorf("deploy: %v, want it locked out by the lease", err)
		}
		if got := s.Releases(); len(got) != 1 || s.Current() != first.ReleaseID {
			t.Errorf("releases %v, current %s: the deploy changed something", got, s.Current())
		}
		os.RemoveAll(s.Root(".atomic-deploy/lock"))
		s.mustDeploy()
	})
	t.Run("a shell without flock is refused", func(t *testing.T) {
		s := newSite(t, map[string]string{"a.txt": "1"})
		s.target.Dial = func(context.Context) (transport.Transport, error) {
			return local.NewWithEnv([]string{"PATH=/nonexistent"}), nil
		}
		_, err := s.deploy()
		if err == nil || !strings.Contains(err.Error(), "flock") {
			t.Fatalf("deploy = %v", err)
		}
		if _, err := os.Stat(s.Root()); !os.IsNotExist(err) {
			t.Errorf("the deploy root was created: %v", err)
		}
	})
}

// A release directory the log has no record of, newer than the log's first
// release, may be half-written (another tool's deploy that crashed): it is
// never a default rollback target nor a kept release, the next deploy
// prunes it, and an explicit rollback to it needs force. One older than
// the log (a site deployed another way before) is adopted as before.
func TestUnrecordedReleases(t *testing.T) {
	s := newSite(t, map[string]string{"a.txt": "1"})
	os.MkdirAll(s.Root("releases", "20000101000000"), 0o755) // before this tool's log
	os.WriteFile(s.Root("releases", "20000101000000", "a.txt"), []byte("old"), 0o644)
	first := s.mustDeploy()
	half := first.ReleaseID[:8] + "235959" // a crash later that day
	os.MkdirAll(s.Root("releases", half, "app"), 0o755)

	list, err := deploy.ListReleases(context.Background(), s.options())
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, r := range list[s.target.Name] {
		status[r.ID] = r.Status
	}
	if status[half] != deploy.StatusUnknown || status["20000101000000"] != deploy.StatusSuccess || status[first.ReleaseID] != deploy.StatusSuccess {
		t.Errorf("statuses %v", status)
	}
	// Not the default rollback target (the adopted release is), and named
	// it needs force.
	if res, err := deploy.Rollback(context.Background(), s.options(), ""); err != nil || res.ReleaseID != "20000101000000" {
		t.Fatalf("default rollback went to %+v (%v)", res, err)
	}
	if _, err := deploy.Rollback(context.Background(), s.options(), half); err == nil || !strings.Contains(err.Error(), "force") {
		t.Fatalf("rollback to the unknown release: %v", err)
	}
	forced := s.options()
	forced.Force = true
	if _, err := deploy.Rollback(context.Background(), forced, half); err != nil || s.Current() != half {
		t.Fatalf("forced rollback: %v, current %s", err, s.Current())
	}

	// The next deploy prunes one, and names it.
	if _, err := deploy.Rollback(context.Background(), s.options(), first.ReleaseID); err != nil {
		t.Fatal(err)
	}
	half2 := first.ReleaseID[:8] + "235958"
	os.MkdirAll(s.Root("releases", half2, "app"), 0o755)
	s.src.Write(map[string]string{"a.txt": "2"})
	s.mustDeploy()
	if _, err := os.Stat(s.Root("releases", half2)); !os.IsNotExist(err) {
		t.Errorf("the unknown release is still there: %v", err)
	}
	if !strings.Contains(s.log.String(), "removing release "+half2+": it has no record") {
		t.Errorf("the prune of the unknown release was not named:\n%s", s.log)
	}
}
