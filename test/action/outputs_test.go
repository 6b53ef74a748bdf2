package action

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/sshtest"
)

// TestActionOutputsSayWhatIsLive runs every mode against one server and
// checks each output against what the server serves afterwards: release-id
// and revision are always the live release's, deployed-release-id the one
// the run tried, status what happened.
func TestActionOutputsSayWhatIsLive(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	root := filepath.Join(srv.MkdirUserTemp(t), "app")
	ws := t.TempDir()
	os.WriteFile(filepath.Join(ws, "index.html"), []byte("v1"), 0o644)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) }))
	defer failing.Close()

	base := workflowInputs(srv, root)
	step := func(name, sha string, inputs map[string]string, wantCode int) map[string]string {
		t.Helper()
		in := maps.Clone(base)
		maps.Copy(in, inputs)
		r := runActionEnv(t, ws, in, []string{"GITHUB_SHA=" + sha})
		if r.code != wantCode {
			t.Fatalf("%s: exit %d, want %d\n%s", name, r.code, wantCode, r.stdout)
		}
		t.Logf("%s: %v", name, r.outputs)
		return r.outputs
	}
	current := func() string {
		target, err := os.Readlink(filepath.Join(root, "current"))
		if err != nil {
			t.Fatal(err)
		}
		return filepath.Base(target)
	}
	check := func(name string, got map[string]string, want map[string]string) {
		t.Helper()
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: output %s = %q, want %q", name, k, got[k], v)
			}
		}
		if id := got["release-id"]; id != current() {
			t.Errorf("%s: release-id %q, but current -> %s", name, id, current())
		}
		if got["release-path"] != root+"/releases/"+got["release-id"] {
			t.Errorf("%s: release-path %q", name, got["release-path"])
		}
		if keys := slices.Sorted(maps.Keys(got)); len(keys) != 11 {
			t.Errorf("%s: outputs %q, want all 11", name, keys)
		}
	}

	a := step("first deploy", "aaaa", nil, 0)
	id1 := a["release-id"]
	check("first deploy", a, map[string]string{"status": "deployed", "deployed-release-id": id1, "previous-release-id": "", "revision": "aaaa", "rolled-back": "false"})

	os.WriteFile(filepath.Join(ws, "index.html"), []byte("v2"), 0o644)
	b := step("second deploy", "bbbb", nil, 0)
	id2 := b["release-id"]
	check("second deploy", b, map[string]string{"status": "deployed", "deployed-release-id": id2, "previous-release-id": id1, "revision": "bbbb", "files-uploaded": "2"})

	// before-activate fails: the new release never went live.
	c := step("deploy failing before the switch", "cccc", map[string]string{"before-activate": "exit 3"}, 1)
	if c["deployed-release-id"] == "" || c["deployed-release-id"] == id2 {
		t.Errorf("deployed-release-id %q, want the new release's id", c["deployed-release-id"])
	}
	check("deploy failing before the switch", c, map[string]string{"status": "failed", "release-id": id2, "previous-release-id": id2, "revision": "bbbb", "rolled-back": "false"})

	// The health check fails after the switch: back on id2.
	d := step("deploy rolled back", "dddd", map[string]string{"healthcheck-url": failing.URL, "healthcheck-timeout": "1s"}, 1)
	// (The failed release's directory was removed, so its id may be used again.)
	if d["deployed-release-id"] <= id2 {
		t.Errorf("deployed-release-id %q, want this deploy's new id", d["deployed-release-id"])
	}
	check("deploy rolled back", d, map[string]string{"status": "rolled-back", "release-id": id2, "previous-release-id": id2, "revision": "bbbb", "rolled-back": "true"})

	// Rollback: the revision is the one recorded for the target, not the
	// runner's commit.
	e := step("rollback", "eeee", map[string]string{"mode": "rollback"}, 0)
	check("rollback", e, map[string]string{"status": "rolled-back", "release-id": id1, "deployed-release-id": id1, "previous-release-id": id2, "revision": "aaaa", "rolled-back": "false", "files-uploaded": "0"})

	f := step("rollback to the live release", "ffff", map[string]string{"mode": "rollback", "release-id": id1}, 0)
	check("rollback to the live release", f, map[string]string{"status": "unchanged", "release-id": id1, "deployed-release-id": id1, "previous-release-id": id1, "revision": "aaaa"})

	g := step("rollback to a release that does not exist", "gggg", map[string]string{"mode": "rollback", "release-id": "20990101000000"}, 1)
	check("failed rollback", g, map[string]string{"status": "failed", "release-id": id1, "deployed-release-id": "20990101000000", "previous-release-id": id1, "revision": "aaaa"})

	u := step("unlock", "hhhh", map[string]string{"mode": "unlock"}, 0)
	if keys := slices.Sorted(maps.Keys(u)); !slices.Equal(keys, []string{"duration", "status"}) || u["status"] != "unchanged" {
		t.Errorf("unlock outputs %v, want only status (unchanged) and duration", u)
	}
}
