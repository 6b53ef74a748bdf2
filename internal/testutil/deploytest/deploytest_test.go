package deploytest_test

import (
	"context"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
)

func deployTo(t *testing.T, targets []deploy.Target, root string, src *deploytest.Source, log *deploytest.Log, hook string) *deploy.Result {
	t.Helper()
	set := deploy.Settings{KeepReleases: 3, Revision: "r1", Parallel: 8, BeforeActivate: hook,
		Lock: deploy.LockOptions{TTL: 10 * time.Second, Wait: 10 * time.Second}}
	res, err := deploy.Deploy(context.Background(), deploy.Options{Targets: targets, Root: root, Settings: &set, Log: log,
		Concurrency: len(targets), AutoRollback: true}, src.Manifest("r1"))
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, log)
	}
	return res
}

// Each kind of host takes a deploy, and reads back what its server holds.
func TestKinds(t *testing.T) {
	for _, kind := range deploytest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			h := deploytest.New(t, deploytest.Options{Kind: kind})
			if h.Current() != "" || h.Releases() != nil {
				t.Fatalf("a new root has current %q, releases %v", h.Current(), h.Releases())
			}
			src := deploytest.NewSource(t, map[string]string{"public/index.html": "v1"})
			log, hook := &deploytest.Log{}, ""
			if kind != deploytest.SFTPOnly {
				hook = "echo prepared"
			}
			res := deployTo(t, []deploy.Target{h.Target()}, h.Path, src, log, hook)
			if h.Current() != res.ReleaseID || !slices.Equal(h.Releases(), []string{res.ReleaseID}) {
				t.Errorf("current %q, releases %v; deployed %s", h.Current(), h.Releases(), res.ReleaseID)
			}
			if got := h.Read("current/public/index.html"); got != "v1" {
				t.Errorf("index.html = %q", got)
			}
			if hook != "" && !strings.Contains(log.String(), "[host0] prepared\n") {
				t.Errorf("the hook's output is not in the log:\n%s", log)
			}
		})
	}
}

// The hosts of a fleet see one path, each its own tree behind it.
func TestFleet(t *testing.T) {
	f := deploytest.NewFleet(t, 2, deploytest.Options{Kind: deploytest.SSH})
	src := deploytest.NewSource(t, map[string]string{"index.html": "v1"})
	one := deployTo(t, f.Targets()[:1], f.Path(), src, &deploytest.Log{}, "")
	if got := f.Currents(); !slices.Equal(got, []string{one.ReleaseID, ""}) {
		t.Fatalf("after a deploy to host0 alone, currents = %v", got)
	}
	src.Write(map[string]string{"index.html": "v2"})
	both := deployTo(t, f.Targets(), f.Path(), src, &deploytest.Log{}, "")
	if got := f.Currents(); !slices.Equal(got, []string{both.ReleaseID, both.ReleaseID}) {
		t.Errorf("currents = %v, want both %s", got, both.ReleaseID)
	}
	if n0, n1 := len(f[0].Releases()), len(f[1].Releases()); n0 != 2 || n1 != 1 {
		t.Errorf("host0 has %d releases, host1 %d; want 2 and 1", n0, n1)
	}
	if spread := deploytest.SwitchSpread(both); spread < 0 || spread > 10*time.Second {
		t.Errorf("switch spread %s", spread)
	}
}

// A tmpfs is a disk of its size, on the server alone.
func TestTmpfs(t *testing.T) {
	h := deploytest.New(t, deploytest.Options{Kind: deploytest.SFTPOnly, Tmpfs: "2m"})
	var st syscall.Statfs_t
	if err := syscall.Statfs(h.Local(h.Base), &st); err != nil {
		t.Fatal(err)
	}
	if size := st.Blocks * uint64(st.Bsize); size != 2<<20 {
		t.Errorf("the server's disk holds %d bytes, want 2 MiB", size)
	}
	src := deploytest.NewSource(t, nil)
	src.WriteBig("assets", 48, 64*1024)
	m := src.Manifest("r1")
	if len(m.Entries) < 48 {
		t.Fatalf("manifest of %d entries, want the 48 files", len(m.Entries))
	}
}
