package deploy_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// traced has every target's remote operations written to trace.
func traced(trace *testutil.SyncBuffer) func(o *deploy.Options) {
	return func(o *deploy.Options) {
		for i, tg := range o.Targets {
			o.Targets[i].Dial = func(ctx context.Context) (transport.Transport, error) {
				tr, err := tg.Dial(ctx)
				if err != nil {
					return nil, err
				}
				return transport.Trace(tr, trace), nil
			}
		}
	}
}

// On one host, the command of the last hook before the switch
// (before-activate-once, else before-activate) switches, and records the
// success where nothing checks the release afterwards, as the upload's
// does without hooks: a hook costs its command, not also a rename and the
// lock holder's confirmation of the record. A failing hook switches
// nothing.
func TestBeforeActivateSwitchesInItsCommand(t *testing.T) {
	f := newFleet(t, 1)
	h := f.hosts[0]
	f.set.BeforeActivate = `echo "built $RELEASE_ID" > built.txt`
	renamed := func(trace string) bool { return strings.Contains(trace, " rename ") }

	for i, mut := range []func(){
		func() {},                               // the first deploy
		func() {},                               // onto a live release
		func() { f.set.AfterActivate = "true" }, // switched by the hook, the success recorded after it
	} {
		mut()
		f.write("v" + string(rune('2'+i)))
		var trace testutil.SyncBuffer
		res, err := f.deploy(traced(&trace))
		if err != nil {
			t.Fatalf("deploy %d: %v\n%s", i, err, f.log)
		}
		if h.Current() != res.ReleaseID || strings.TrimSpace(h.Read("current/built.txt")) != "built "+res.ReleaseID {
			t.Fatalf("deploy %d: current %s, want %s with the hook's file", i, h.Current(), res.ReleaseID)
		}
		if renamed(trace.String()) || !strings.Contains(trace.String(), " hook: ok") {
			t.Errorf("deploy %d: the switch was not made by the hook's command:\n%s", i, trace.String())
		}
		if log := h.Read(".atomic-deploy/releases.log"); !strings.Contains(log, `"id":"`+res.ReleaseID+`","status":"success"`) {
			t.Errorf("deploy %d: no success record:\n%s", i, log)
		}
	}
	live := h.Current()

	// 87 and 88 are the switch's own statuses: a hook's is shown as 1.
	for hook, shown := range map[string]string{"exit 3": "exit status 3", "exit 87": "exit status 1"} {
		f.set.BeforeActivate = hook
		f.write("failing " + hook)
		if _, err := f.deploy(nil); err == nil || !strings.Contains(err.Error(), "before-activate") || !strings.Contains(err.Error(), shown) {
			t.Fatalf("before-activate %q: %v, want it to say %q", hook, err, shown)
		}
		if h.Current() != live {
			t.Errorf("before-activate %q: current %s, want still %s", hook, h.Current(), live)
		}
	}

	for _, c := range []struct{ before, once string }{
		{"true", `touch "$DEPLOY_PATH/migrated-$RELEASE_ID"`},
		{"", `touch "$DEPLOY_PATH/migrated-$RELEASE_ID"`},
	} {
		f.set.BeforeActivate, f.set.BeforeActivateOnce = c.before, c.once
		f.write("once " + c.before)
		var trace testutil.SyncBuffer
		res, err := f.deploy(traced(&trace))
		if err != nil || h.Current() != res.ReleaseID {
			t.Fatalf("before-activate %q, once %q: %v, current %s\n%s", c.before, c.once, err, h.Current(), f.log)
		}
		if _, err := os.Stat(h.Root("migrated-" + res.ReleaseID)); err != nil || renamed(trace.String()) {
			t.Errorf("before-activate %q: migrated %v, switched by a rename of its own %v:\n%s", c.before, err, renamed(trace.String()), trace.String())
		}
		live = h.Current()
	}
	f.set.BeforeActivateOnce = "exit 5"
	f.write("failing once")
	if _, err := f.deploy(nil); err == nil || !strings.Contains(err.Error(), "before-activate-once") || h.Current() != live {
		t.Errorf("a failing before-activate-once: %v, current %s (want still %s)", err, h.Current(), live)
	}
}

// before-activate-once runs in the release after it was sealed; its
// command seals it again, so that what it writes there is part of the
// release as finished, not an edit of production that the next deploy
// warns about and uploads again. On one host (its command switches) and
// in a fleet (the rename switches).
func TestBeforeActivateOnceWritesAreSealed(t *testing.T) {
	for _, n := range []int{1, 2} {
		f := newFleet(t, n)
		f.set.BeforeActivate = "true"
		f.set.BeforeActivateOnce = "echo migrated >> index.html"
		if _, err := f.deploy(nil); err != nil {
			t.Fatalf("%d hosts: first deploy: %v\n%s", n, err, f.log)
		}
		f.write("v2")
		res, err := f.deploy(nil)
		if err != nil {
			t.Fatalf("%d hosts: %v\n%s", n, err, f.log)
		}
		if strings.Contains(f.log.String(), "edited in place") || res.Hosts[0].FilesUploaded != 1 {
			t.Errorf("%d hosts: the once hook's write was taken for an edit of the live release (uploaded %d):\n%s", n, res.Hosts[0].FilesUploaded, f.log)
		}
	}
}

// The host that runs before-activate-once in this run is sealed by that
// command alone: not also by before-activate's, nor by a command of its
// own where there is no before-activate (a round trip and a walk of the
// release less). The release it leaves is sealed all the same.
func TestTheOnceHostIsSealedOnce(t *testing.T) {
	for _, before := range []string{"", "echo built > built.txt"} {
		f := newFleet(t, 1)
		f.set.BeforeActivate = before
		f.set.BeforeActivateOnce = "echo migrated > migrated.txt"
		var trace testutil.SyncBuffer
		res, err := f.deploy(traced(&trace))
		if err != nil {
			t.Fatalf("before-activate %q: %v\n%s", before, err, f.log)
		}
		if strings.Contains(trace.String(), "exec      seal") {
			t.Errorf("before-activate %q: a command of its own sealed the release:\n%s", before, trace.String())
		}
		if _, err := os.Stat(f.hosts[0].Root(".atomic-deploy", "manifests", res.ReleaseID+".seal")); err != nil {
			t.Errorf("before-activate %q: the release is not sealed: %v", before, err)
		}
	}
}
