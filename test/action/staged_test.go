package action

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/sshtest"
)

// TestActionPrepareThenActivate: mode: prepare uploads a release and
// switches nothing; a later mode: activate (another job: no source, another
// commit) switches to it, with the revision it was prepared from, and the
// outputs say so at each step.
func TestActionPrepareThenActivate(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	root := filepath.Join(srv.MkdirUserTemp(t), "app")
	ws := siteWorkspace(t)
	first := runAction(t, ws, sshInputs(srv, root, nil))
	if first.code != 0 {
		t.Fatalf("first deploy: exit %d\n%s", first.code, first.stdout)
	}
	live := first.outputs["release-id"]

	os.WriteFile(filepath.Join(ws, "site/index.html"), []byte("v2"), 0o644)
	prep := runAction(t, ws, sshInputs(srv, root, map[string]string{"mode": "prepare", "before-activate": `echo "revision $REVISION"`}))
	if prep.code != 0 {
		t.Fatalf("prepare: exit %d\n%s", prep.code, prep.stdout)
	}
	id := prep.outputs["deployed-release-id"]
	if prep.outputs["status"] != "prepared" || !regexp.MustCompile(`^\d{14}$`).MatchString(id) || prep.outputs["release-id"] != live || currentRelease(t, root) != live {
		t.Fatalf("after prepare: outputs %v, current %s (live %s)", prep.outputs, currentRelease(t, root), live)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "releases", id, "index.html")); string(got) != "v2" {
		t.Errorf("the prepared release holds %q", got)
	}

	// The activate job: another commit checked out, no source at all.
	os.RemoveAll(filepath.Join(ws, "site"))
	inputs := sshInputs(srv, root, map[string]string{"mode": "activate", "release-id": id, "after-activate": `echo "live: $RELEASE_ID at $REVISION"`})
	act := runActionEnv(t, ws, inputs, []string{"GITHUB_SHA=ffffffffffffffffffffffffffffffffffffffff"})
	if act.code != 0 {
		t.Fatalf("activate: exit %d\n%s", act.code, act.stdout)
	}
	if act.outputs["status"] != "deployed" || act.outputs["release-id"] != id || act.outputs["previous-release-id"] != live || currentRelease(t, root) != id {
		t.Errorf("after activate: outputs %v, current %s", act.outputs, currentRelease(t, root))
	}
	if act.outputs["revision"] != "0123456789abcdef0123456789abcdef01234567" || !strings.Contains(act.stdout, "live: "+id+" at 0123456789abcdef0123456789abcdef01234567") {
		t.Errorf("the activated release's revision is not the one it was prepared from: %v\n%s", act.outputs, act.stdout)
	}
	if !strings.Contains(prep.summary, "Prepared release `"+id+"`") || !strings.Contains(prep.summary, "✅ prepared |") {
		t.Errorf("prepare summary:\n%s", prep.summary)
	}
	if !strings.Contains(act.summary, "Activated release `"+id+"`") || !strings.Contains(act.summary, "| `"+live+"` |") {
		t.Errorf("activate summary:\n%s", act.summary)
	}
	// The activate job run again (a re-run): the release is live already,
	// so nothing switches and the hooks do not run twice.
	again := runAction(t, ws, inputs)
	if again.code != 0 || again.outputs["status"] != "unchanged" || again.outputs["release-id"] != id || strings.Contains(again.stdout, "live: ") || currentRelease(t, root) != id {
		t.Errorf("activate again: exit %d, outputs %v, current %s\n%s", again.code, again.outputs, currentRelease(t, root), again.stdout)
	}
	if !strings.Contains(again.summary, "Live already, nothing switched: release `"+id+"`") {
		t.Errorf("activate again, summary:\n%s", again.summary)
	}
}
