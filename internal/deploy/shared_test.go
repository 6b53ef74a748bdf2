package deploy_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// Shared paths already seeded on a server with a shell have their links
// in the upload's tar stream, and the upload's command makes writable-dirs
// writable: no request of their own (over SFTP each shared path cost a
// lstat, a removal, a mkdir and a symlink, a round trip each; writable-dirs
// a mkdir each and a command), and the upload's command can switch. What
// the shared paths hold stays; the first deploy seeds them from the
// release as before, on every kind of server.
func TestSharedAndWritablePathsComeWithTheUpload(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind deploytest.Kind) {
		s := newSiteOn(t, kind, map[string]string{"index.php": "1", "storage/logs/.keep": "", "public/media/uploads/a.png": "a", "public/media/b.css": "b"})
		s.set.SharedDirs = []string{"storage", "public/media/uploads"}
		s.set.WritableDirs = []string{"storage", "bootstrap/cache"}
		writable := func(when string) {
			t.Helper()
			for _, dir := range []string{"current/bootstrap/cache", "shared/storage"} {
				if info, err := os.Stat(s.Root(dir)); err != nil || info.Mode().Perm()&0o060 != 0o060 {
					t.Errorf("%s: %s is not group-writable: %v %v", when, dir, info, err)
				}
			}
		}
		s.mustDeploy() // seeds storage: its link is made after the upload, and then made writable
		writable("first deploy")
		os.WriteFile(s.Root("shared/.env"), []byte("APP_KEY=x"), 0o644)
		os.Symlink(".env", s.Root("shared/app.ini")) // a shared file may be a link, as linkShared takes it
		s.set.SharedFiles = []string{".env", "app.ini"}

		s.src.Write(map[string]string{"index.php": "2"})
		var trace testutil.SyncBuffer
		o := s.options()
		dial := o.Targets[0].Dial
		o.Targets[0].Dial = func(ctx context.Context) (transport.Transport, error) {
			tr, err := dial(ctx)
			if err != nil {
				return nil, err
			}
			return transport.Trace(tr, &trace), nil
		}
		res, err := deploy.Deploy(context.Background(), o, s.src.Manifest(s.set.Revision))
		if err != nil || s.Current() != res.ReleaseID {
			t.Fatalf("second deploy: %v, current %s\n%s", err, s.Current(), s.log)
		}
		for link, want := range map[string]string{"storage": "../../shared/storage", "public/media/uploads": "../../../../shared/public/media/uploads", ".env": "../../shared/.env"} {
			if got, err := os.Readlink(s.Root("current", link)); err != nil || got != want {
				t.Errorf("%s -> %q (%v), want %q", link, got, err, want)
			}
		}
		if !fileExists(s.Root("current/storage/logs/.keep")) || s.Read("current/.env") != "APP_KEY=x" || s.Read("current/app.ini") != "APP_KEY=x" || s.Read("current/public/media/b.css") != "b" || s.Read("current/index.php") != "2" {
			t.Errorf("the release or what its shared paths hold is not as it should be")
		}
		writable("second deploy")
		if kind == deploytest.SSH {
			for _, op := range []string{" lstat ", " symlink ", " removeall ", " rename ", " mkdirall ", " writable"} {
				if strings.Contains(trace.String(), op) {
					t.Errorf("a request of its own (%s) on a server with a shell:\n%s", strings.TrimSpace(op), trace.String())
				}
			}
		}
	})
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// writable-dirs that cannot be made writable in the upload's command fail
// the deploy saying so (as their own command did), and nothing goes live.
func TestWritableFailingInTheUploadSaysSo(t *testing.T) {
	s := newSiteOn(t, deploytest.SSH, map[string]string{"index.php": "1"})
	s.set.WritableDirs = []string{"cache"}
	s.set.WritableMode, s.set.WritableUser = deploy.WritableChgrp, "root" // a group the deploy user is not in
	_, err := s.deploy()
	if err == nil || !strings.Contains(err.Error(), "make writable cache (writable-mode chgrp) on host0") || !strings.Contains(err.Error(), "is not in group root") {
		t.Fatalf("err = %v", err)
	}
	if s.Current() != "" {
		t.Errorf("current = %q, want none", s.Current())
	}
}

// A shared path of the wrong kind on the server (a file where shared-dirs
// wants a directory, a directory where shared-files wants a file) is never
// linked, in the stream or otherwise: the deploy fails saying so and the
// live release stays.
func TestSharedPathOfTheWrongKindFails(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind deploytest.Kind) {
		s := newSiteOn(t, kind, map[string]string{"index.php": "1"})
		first := s.mustDeploy()
		os.WriteFile(s.Root("shared/storage"), []byte("a file"), 0o644)
		os.MkdirAll(s.Root("shared/.env"), 0o755)
		for _, c := range []struct {
			dirs, files []string
			want        string
		}{
			{[]string{"storage"}, nil, "should be a directory (shared-dirs) but is not"},
			{nil, []string{".env"}, "should be a file (shared-files) but is a directory"},
		} {
			s.set.SharedDirs, s.set.SharedFiles = c.dirs, c.files
			s.src.Write(map[string]string{"index.php": "2"})
			if _, err := s.deploy(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want %q", err, c.want)
			}
			if s.Current() != first.ReleaseID {
				t.Errorf("current = %s, want still %s", s.Current(), first.ReleaseID)
			}
		}
	})
}
