package sshx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// Exec runs script with /bin/sh in a new session on the shared connection.
// When ctx ends first, the remote process gets SIGTERM, the session is
// closed and ctx.Err() is returned; stdout and stderr are not written to
// after Exec returns.
//
// Before the shell probe has answered (or been asked), Exec does not wait
// for it: the command goes out at once (see transport.Transport.Exec).
//
// A warm session (Warm) runs the command when one is waiting.
func (t *Transport) Exec(ctx context.Context, cmd transport.Command, stdin io.Reader, stdout, stderr io.Writer) error {
	if t.knownNoShell() {
		return transport.ErrNoShell
	}
	if w := t.takeWarm(); w != nil {
		return w.run(ctx, t, cmd, stdin, stdout, stderr)
	}
	return t.exec(ctx, cmd, stdin, stdout, stderr)
}

func (t *Transport) exec(ctx context.Context, cmd transport.Command, stdin io.Reader, stdout, stderr io.Writer) error {
	if err := acquire(ctx, t.sessions); err != nil {
		return err
	}
	defer release(t.sessions)

	sess, err := t.newSession(ctx)
	if err != nil {
		return err
	}
	defer sess.Close()
	out, errOut := &gatedWriter{w: stdout}, &gatedWriter{w: stderr}
	sess.Stdin = stdin
	sess.Stdout = out
	sess.Stderr = errOut
	if err := sess.Start(commandLine(cmd)); err != nil {
		return fmt.Errorf("start command on %s: %w", t.name, err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGTERM) // best effort: not every server handles signals
		sess.Close()
		out.shut()
		errOut.shut()
		return ctx.Err()
	}
	return t.exitErr(err)
}

// exitErr turns how a session ended into Exec's error.
func (t *Transport) exitErr(err error) error {
	var exitErr *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exitErr):
		return &transport.ExitError{Status: exitErr.ExitStatus()}
	case errors.As(err, &missing):
		return fmt.Errorf("command on %s ended without an exit status (connection lost?)", t.name)
	}
	return fmt.Errorf("command on %s: %w", t.name, err)
}

// newSession opens a session, retrying while sshd refuses for lack of
// session slots: it frees the slot of a closed session a little after the
// close, so a new session can briefly find MaxSessions still reached.
func (t *Transport) newSession(ctx context.Context) (*ssh.Session, error) {
	delay := 5 * time.Millisecond
	deadline := time.Now().Add(sessionRetryFor)
	for {
		sess, err := t.client.NewSession()
		if err == nil {
			return sess, nil
		}
		var open *ssh.OpenChannelError
		if !errors.As(err, &open) || open.Reason != ssh.ConnectionFailed {
			return nil, fmt.Errorf("open SSH session on %s: %w", t.name, err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("open SSH session on %s: the server refuses more sessions "+
				"(MaxSessions in sshd_config must be at least 2): %w", t.name, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// run executes one of this package's own commands and returns its stdout;
// stderr goes into the error, which is what explains a failed mv or find.
func (t *Transport) run(ctx context.Context, cmd transport.Command) ([]byte, error) {
	var out, errOut bytes.Buffer
	err := t.exec(ctx, cmd, nil, &out, transport.LimitWriter(&errOut, 2048))
	if err != nil {
		if msg := strings.TrimSpace(errOut.String()); msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return nil, err
	}
	return out.Bytes(), nil
}

// gatedWriter passes writes to w until shut, then drops them, so the session
// goroutines cannot touch a caller's writer after Exec has returned.
type gatedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.w == nil {
		return len(p), nil
	}
	return g.w.Write(p)
}

// point sets where the writes go from now on.
func (g *gatedWriter) point(w io.Writer) {
	g.mu.Lock()
	g.w = w
	g.mu.Unlock()
}

func (g *gatedWriter) shut() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

func acquire(ctx context.Context, sem chan struct{}) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func release(sem chan struct{}) { <-sem }
