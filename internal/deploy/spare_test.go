package deploy_test

import (
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
)

// The spare: once a deploy let go, its lock holder copies the new live
// release's files (remote/holder.sh's after_deploy); the next deploy's
// upload takes that copy instead of copying while it waits.
func TestNextDeployTakesTheSpare(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind deploytest.Kind) {
		s := newSiteOn(t, kind, map[string]string{"index.php": "v1", "vendor/pkg/a.php": strings.Repeat("a", 100), "vendor/pkg/b.php": "b"})
		s.set.NoTar = false // the tar stream, which takes copies made ahead, locally too
		first := s.mustDeploy()
		s.Settle()
		if !strings.HasPrefix(s.Read(".atomic-deploy/.spare.id"), first.ReleaseID+" ") {
			t.Fatalf("no spare of %s: %q", first.ReleaseID, s.Read(".atomic-deploy/.spare.id"))
		}
		spared := testutil.Inode(t, s.Root(".atomic-deploy/.spare/vendor/pkg/a.php"))
		if spared == testutil.Inode(t, s.Root("releases", first.ReleaseID, "vendor/pkg/a.php")) {
			t.Fatal("the spare shares an inode with the live release")
		}
		s.src.Write(map[string]string{"index.php": "v2"})
		second := s.mustDeploy()
		if got := testutil.Inode(t, s.Root("releases", second.ReleaseID, "vendor/pkg/a.php")); got != spared {
			t.Errorf("the reused file is inode %d, not the spare's %d", got, spared)
		}
		if s.Read("current/index.php") != "v2" || s.Read("current/vendor/pkg/a.php") != strings.Repeat("a", 100) || s.Read("releases/"+first.ReleaseID+"/index.php") != "v1" {
			t.Error("the releases are not what was deployed")
		}
		// A deploy right after another stops the spare's making and copies
		// for itself.
		s.src.Write(map[string]string{"index.php": "v3"})
		third := s.mustDeploy()
		if s.Read("current/index.php") != "v3" || s.Read("current/vendor/pkg/b.php") != "b" {
			t.Error("the third release is not what was deployed")
		}
		for _, id := range []string{first.ReleaseID, second.ReleaseID} {
			if testutil.Inode(t, s.Root("releases", id, "vendor/pkg/a.php")) == testutil.Inode(t, s.Root("releases", third.ReleaseID, "vendor/pkg/a.php")) {
				t.Errorf("releases %s and %s share an inode", id, third.ReleaseID)
			}
		}
	}, deploytest.Local, deploytest.SSH)
}
