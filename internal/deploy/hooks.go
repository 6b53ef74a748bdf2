package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy/remote"
	"github.com/atomic-deploy/atomic-deploy/internal/shell"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// RunOnce runs before-activate-once on this host (Deploy picks the
// first). Its command seals the release, as the hook runs in it and may
// write there (the seal is what the release is once finished): again after
// a prepare, the only time in a deploy (h.resealed). On a host alone it
// also switches (h.inline).
func (h *Host) RunOnce(ctx context.Context) error {
	defer h.timed(PhaseHooks)()
	var then finishing
	if h.seals() {
		then.seal = h.L.Seal(h.ReleaseID)
	}
	return h.runLastHook(ctx, "before-activate-once", h.S.BeforeActivateOnce, then, h.S.AfterSwitch.Script != "" || h.S.AfterActivate != "")
}

// HookError is a hook that ran and failed.
type HookError struct {
	Hook string
	Host string
	Err  error
}

func (e *HookError) Error() string { return fmt.Sprintf("%s failed on %s: %v", e.Hook, e.Host, e.Err) }

func (e *HookError) Unwrap() error { return e.Err }

// runHook runs script in the new release; more says another command of
// the host's follows it.
func (h *Host) runHook(ctx context.Context, name, script string, more bool) error {
	return h.runHookIn(ctx, name, h.L.Release(h.ReleaseID), script, nil, finishing{}, more)
}

// runHookIn runs script in dir with remote/hook.sh, its environment made of
// HookEnv, extra and the release's variables, which win. The script and
// its environment travel on the command's input, never in its arguments
// (which any user of the server can read with ps).
func (h *Host) runHookIn(ctx context.Context, name, dir, script string, extra map[string]string, then finishing, more bool) error {
	h.Log.Infof("%s: running %s in %s", h.Name, name, dir)
	env := maps.Clone(h.S.HookEnv)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, extra)
	maps.Copy(env, map[string]string{
		"RELEASE_ID":          h.ReleaseID,
		"RELEASE_PATH":        h.L.Release(h.ReleaseID),
		"DEPLOY_PATH":         h.L.Root,
		"PREVIOUS_RELEASE_ID": h.root.currentID,
		"REVISION":            h.revision(),
	})
	if h.S.HookTimeout > 0 {
		// Ending the command ends the hook's input, and hook.sh's watcher
		// then ends the hook's whole process group on the server.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, h.S.HookTimeout, errHookTimeout)
		defer cancel()
	}
	cmd, input := hookCommand(dir, env, script, then)
	// hook.sh's watcher reads the rest of the input until the hook has
	// ended: it stays open while the deploy waits.
	keepOpen, held := io.Pipe()
	defer held.Close()
	execCtx := ctx
	if then.sw != nil {
		var stop func()
		execCtx, stop = endThroughInput(ctx, held)
		defer stop()
	}
	out := h.Log.Writer(h.Name)
	err := h.T.Exec(execCtx, cmd, h.warmAhead(io.MultiReader(strings.NewReader(input), keepOpen), more), out, out)
	if then.sw != nil {
		var exit *transport.ExitError
		if err = h.settleInlineSwitch(ctx, err, true); errors.As(err, &exit) && ctx.Err() != nil {
			err = ctx.Err() // ended by it: say so, as when the command is cut
		}
	}
	if err != nil && errors.Is(context.Cause(ctx), errHookTimeout) {
		err = fmt.Errorf("%w (command-timeout %s): it and what it started were ended", errHookTimeout, h.S.HookTimeout)
	}
	if err != nil {
		return &HookError{Hook: name, Host: h.Name, Err: err}
	}
	return nil
}

var errHookTimeout = errors.New("ran too long")

// endThroughInput is the context for a hook's command that may switch
// (its input in, held open by the deploy): when ctx ends, the input ends
// instead, hook.sh's watcher then ends the hook if it still runs, and the
// command's answer is awaited, so that whether it switched is known
// rather than guessed. Only if no answer comes within inputEndGrace
// (hook.sh's watcher kills 10 s after it terminates) is the command cut.
func endThroughInput(ctx context.Context, in io.Closer) (context.Context, func()) {
	execCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		in.Close()
		time.AfterFunc(inputEndGrace, cancel)
	})
	return execCtx, func() { stop(); cancel() }
}

const inputEndGrace = 15 * time.Second

// hookCommand is remote/hook.sh running script in dir with env, and the
// input it reads first: the exports, the script, the line that ends it.
func hookCommand(dir string, env map[string]string, script string, then finishing) (transport.Command, string) {
	end := "--end-" + randomToken() + "--"
	// The first line removes the file hook.sh keeps the script in, once the
	// shell running it has it open.
	input := "rm -f -- \"$0\"\n" + shell.Exports(env) + script + "\n" + end + "\n"
	args := []string{dir, end, then.seal, then.link, then.target}
	if sw := then.sw; sw != nil {
		args = append(args, sw.pid, sw.token, sw.owner, sw.next, sw.current, sw.log, sw.success)
	}
	return remote.Hook.Command(args...), input
}

// AfterActivate runs the after-activate hook.
func (h *Host) AfterActivate(ctx context.Context) error {
	defer h.timed(PhaseCheck)()
	if err := h.AfterSwitch(ctx); err != nil {
		return err
	}
	if h.S.AfterActivate == "" {
		return nil
	}
	return h.runHook(ctx, "after-activate", h.S.AfterActivate, false)
}

// AfterSwitch runs the after-switch hook in the release now live.
func (h *Host) AfterSwitch(ctx context.Context) error {
	if h.S.AfterSwitch.Script == "" {
		return nil
	}
	return h.runHookIn(ctx, h.S.AfterSwitch.Name, h.L.Current(), h.S.AfterSwitch.Script, nil, finishing{}, h.S.AfterActivate != "")
}
