package faults_test

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/sshx"
)

// inlineFaulty wraps a transport so a test can act on the command that
// ends with the switch (one host, nothing to run in between: the upload's,
// or the last hook's), called name: edit rewrites it before it goes out,
// after changes what the deploy hears of it.
type inlineFaulty struct {
	transport.Transport
	name  string
	calls *atomic.Int32
	edit  func(transport.Command) transport.Command
	after func(err error) error
}

func (f *inlineFaulty) Exec(ctx context.Context, cmd transport.Command, stdin io.Reader, stdout, stderr io.Writer) error {
	if cmd.Name != f.name {
		return f.Transport.Exec(ctx, cmd, stdin, stdout, stderr)
	}
	f.calls.Add(1)
	return f.after(f.Transport.Exec(ctx, f.edit(cmd), stdin, stdout, stderr))
}

// shadow has cmd's script run with a shell function in place of a command
// it uses: a fault injected by name, whatever the script's text.
func shadow(cmd transport.Command, function string) transport.Command {
	cmd.Script = function + "\n" + cmd.Script
	return cmd
}

// TestFaultAtTheInlineSwitch injects faults into the command that also
// switches, the upload's (no hooks) or before-activate's: it switched but
// its answer was lost (connection up, or cut), or its mv failed, or the
// lock was no longer ours. Whatever happens, current is a complete
// release; with the connection up a switch that happened is put back, and
// a command that did not switch leaves the switch to the rename Activate
// makes.
func TestFaultAtTheInlineSwitch(t *testing.T) {
	t.Parallel()
	errReplyLost := errors.New("the reply was lost: connection lost")
	keep := func(*env) func(transport.Command) transport.Command {
		return func(c transport.Command) transport.Command { return c }
	}
	passOn := func(*env) func(error) error { return func(err error) error { return err } }
	// The command ran to its end, but the deploy hears of it as lost.
	answerLost := func(*env) func(error) error {
		return func(err error) error {
			if err != nil {
				return err
			}
			return errReplyLost
		}
	}
	cases := []struct {
		name      string
		edit      func(e *env) func(transport.Command) transport.Command
		after     func(e *env) func(error) error
		succeeds  bool // the deploy ends well
		wantFirst bool // current must be the first release
		wantExit  int  // the command's own exit status, when it matters
		first     bool // the deploy is the first: no release to go back to
	}{
		{"switched, answer lost, connection up", keep, answerLost, false, true, 0, false},
		{"first deploy: switched, answer lost, connection up", keep, answerLost, false, false, 0, true},
		{"switched, then connection dropped", keep, func(e *env) func(error) error {
			return func(err error) error {
				if err != nil {
					return err
				}
				e.px.drop()
				return errReplyLost
			}
		}, false, false, 0, false},
		// rename(2) of the new link over current (mv -T) fails.
		{"mv failed", func(*env) func(transport.Command) transport.Command {
			return func(c transport.Command) transport.Command {
				return shadow(c, `mv() { if [ "$1" = -T ]; then return 1; fi; command mv "$@"; }`)
			}
		}, passOn, true, false, 87, false},
		// The holder's identity file no longer names this deploy (a waiter
		// found it stale and took the lock: the command's check for our
		// token fails): the command must not switch. The holder still
		// lives here, so Activate's own check passes and its rename
		// switches.
		{"lock no longer ours", func(e *env) func(transport.Command) transport.Command {
			return func(c transport.Command) transport.Command { return shadow(c, `grep() { return 1; }`) }
		}, passOn, true, false, 87, false},
	}
	for _, via := range []struct{ command, hook string }{{"upload", ""}, {"hook", "true"}} {
		for _, c := range cases {
			t.Run(via.command+": "+c.name, func(t *testing.T) {
				t.Parallel()
				if via.hook == "" {
					inject(t, "inline switch: "+c.name)
				} else {
					inject(t, "inline switch in before-activate: "+c.name)
				}
				e := newEnv(t, envOptions{proxy: true})
				e.set.BeforeActivate = via.hook
				first := ""
				if !c.first {
					first = e.mustGoDeploy()
					e.src.Write(map[string]string{"index.html": "v2"})
				}
				var calls atomic.Int32
				var exit *transport.ExitError
				after := c.after(e)
				cfg := e.sshConfig()
				res, err := e.goDeploy(context.Background(), func(o *deploy.Options) {
					o.Targets[0].Dial = func(ctx context.Context) (transport.Transport, error) {
						tr, err := sshx.Dial(ctx, cfg)
						if err != nil {
							return nil, err
						}
						return &inlineFaulty{Transport: tr, name: via.command, calls: &calls, edit: c.edit(e), after: func(err error) error {
							errors.As(err, &exit)
							return after(err)
						}}, nil
					}
				})
				if calls.Load() == 0 {
					t.Fatalf("no %s command ended with the switch: %v\n%s", via.command, err, e.log)
				}
				live := assertCompleteRelease(t, e.Root())
				if c.wantExit != 0 && (exit == nil || exit.Status != c.wantExit) {
					t.Errorf("the command ended with %v, want exit status %d", exit, c.wantExit)
				}
				if c.succeeds {
					if err != nil {
						t.Fatalf("deploy: %v\n%s", err, e.log)
					}
					if live != res.ReleaseID {
						t.Errorf("current = %s, want %s", live, res.ReleaseID)
					}
					e.afterFault("")
					return
				}
				if err == nil {
					t.Fatalf("deploy succeeded though the answer of its switch was lost\n%s", e.log)
				}
				t.Logf("deploy said: %v", err)
				if c.first {
					if live != res.ReleaseID || !strings.Contains(err.Error(), "current points at it on") {
						t.Errorf("current = %s, want %s, said so", live, res.ReleaseID)
					}
				}
				if c.wantFirst && live != first {
					t.Errorf("current = %s, want %s back", live, first)
				}
				if strings.Contains(err.Error(), "on its previous release") && live != first {
					t.Errorf("the error says every host is on its previous release, but current = %s, not %s", live, first)
				}
				if c.wantFirst {
					// It was live for a moment: its directory stays for requests
					// that may still use it, until a later deploy prunes it.
					if _, serr := os.Stat(e.Root("releases", res.ReleaseID)); serr != nil {
						t.Errorf("the release that was live for a moment is gone: %v", serr)
					}
				}
				e.afterFault("")
			})
		}
	}
}
