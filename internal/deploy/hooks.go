package deploy

import (
	"context"
	"fmt"
	"io"

	"github.com/atomic-deploy/atomic-deploy/internal/shell"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// RunOnce runs before-activate-once on this host (Deploy picks the first).
func (h *Host) RunOnce(ctx context.Context) error {
	return h.runHook(ctx, "before-activate-once", h.S.BeforeActivateOnce)
}

// HookError is a hook that ran and failed.
type HookError struct {
	Hook string
	Host string
	Err  error
}

func (e *HookError) Error() string { return fmt.Sprintf("%s failed on %s: %v", e.Hook, e.Host, e.Err) }

func (e *HookError) Unwrap() error { return e.Err }

func (h *Host) runHook(ctx context.Context, name, script string) error {
	h.Log.Infof("%s: running %s in release %s", h.Name, name, h.ReleaseID)
	env := map[string]string{
		"RELEASE_ID":          h.ReleaseID,
		"RELEASE_PATH":        h.L.Release(h.ReleaseID),
		"DEPLOY_PATH":         h.L.Root,
		"PREVIOUS_RELEASE_ID": h.CurrentID,
		"REVISION":            h.S.Revision,
	}
	out := h.Log.Writer(h.Name)
	// The hook's watcher reads this until the hook has ended (see hookScript).
	stdin, keepOpen := io.Pipe()
	defer keepOpen.Close()
	err := h.T.Exec(ctx, transport.Command{Name: "hook", Script: hookScript(shell.Script(h.L.Release(h.ReleaseID), env, script))}, stdin, out, out)
	if err != nil {
		return &HookError{Hook: name, Host: h.Name, Err: err}
	}
	return nil
}

// hookScript runs script so that it cannot outlive its deploy. Without
// this, a deploy killed or cut off mid-hook left the hook running on the
// server (sshd does not signal the commands of a session that ends): a
// before-activate migration went on unseen, next to the next deploy's.
//
// The hook runs in the background with stdin from /dev/null. The wrapper's
// stdin is a pipe that the deploy holds open while it waits; a watcher
// reads it. It ends early only when the session does (the deploy died, the
// connection dropped): then, if the hook still runs, the watcher sends
// SIGTERM to the whole process group (sshd makes each session its own; the
// local transport too), which ends the hook and what it started, and
// SIGKILL ten seconds later. A hook that finished keeps whatever it left
// running in the background on purpose.
func hookScript(script string) string {
	return "exec 3<&0\n" +
		"/bin/sh -c " + shell.Quote(script) + " </dev/null 3<&- &\n" +
		"hook=$!\n" +
		"{ cat <&3; if kill -0 \"$hook\"; then trap '' TERM; kill -TERM 0; sleep 10; kill -KILL 0; fi; } >/dev/null 2>&1 &\n" +
		"exec 3<&-\n" +
		"wait \"$hook\"\n"
}

// AfterActivate runs the after-activate hook.
func (h *Host) AfterActivate(ctx context.Context) error {
	if h.S.AfterActivate == "" {
		return nil
	}
	return h.runHook(ctx, "after-activate", h.S.AfterActivate)
}
