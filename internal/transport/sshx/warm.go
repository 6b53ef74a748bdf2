package sshx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/atomic-deploy/atomic-deploy/internal/shell"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// A warm session is a shell started ahead of need (Warm) that waits for
// one command (remote/spare.sh). Opening a session and starting a command
// are two round trips before the first byte of a command's input can
// flow; the command that takes a warm session (a deploy's upload stream)
// pays neither.
type warmSession struct {
	end    string // the line that ends the command: random, so no command holds it
	sess   *ssh.Session
	stdin  *io.PipeWriter
	pipe   *io.PipeReader // the session's end of stdin
	out    *warmOutput
	errOut *gatedWriter
	ready  chan struct{} // the shell said ready: it is ours, and waiting
	done   chan struct{} // the session ended; err says how
	err    error
}

// warmReadyWithin bounds how long a warm session may take to say ready. A
// server that runs something else in its place (a forced command) never
// does, and the session is ended so it holds no session slot.
var warmReadyWithin = 5 * time.Second

// Warm starts a warm session for the next Exec, unless one is waiting
// already or the server is known not to run commands.
func (t *Transport) Warm() {
	t.warmMu.Lock()
	defer t.warmMu.Unlock()
	if t.warm != nil || t.closed() || t.knownNoShell() {
		return
	}
	token := make([]byte, 8)
	rand.Read(token)
	pr, pw := io.Pipe()
	w := &warmSession{end: "--end-" + hex.EncodeToString(token) + "--", stdin: pw, pipe: pr,
		out: &warmOutput{ready: make(chan struct{})}, errOut: &gatedWriter{}, done: make(chan struct{})}
	w.ready = w.out.ready
	t.warm = w
	go t.runWarm(w)
}

func (t *Transport) runWarm(w *warmSession) {
	defer close(w.done)
	defer w.pipe.CloseWithError(io.ErrClosedPipe) // no write into a session that ended may block
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-t.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	if w.err = acquire(ctx, t.sessions); w.err != nil {
		return
	}
	defer release(t.sessions)
	sess, err := t.newSession(ctx)
	if err != nil {
		w.err = err
		return
	}
	defer sess.Close()
	sess.Stdin, sess.Stdout, sess.Stderr = w.pipe, w.out, w.errOut
	t.warmMu.Lock()
	w.sess = sess
	t.warmMu.Unlock()
	spare := transport.Command{Name: "spare", Script: spareScript, Args: []string{w.end}}
	if w.err = sess.Start(commandLine(spare)); w.err != nil {
		return
	}
	go func() {
		select {
		case <-w.ready:
		case <-w.done:
		case <-time.After(warmReadyWithin):
			// Unless a command has it already (taken before its ready line
			// came, on a slow server): closing it would cut that command's
			// input.
			t.warmMu.Lock()
			if t.warm == w {
				t.warm = nil
				sess.Close()
			}
			t.warmMu.Unlock()
		}
	}()
	w.err = sess.Wait()
}

// takeWarm hands out the warm session, once: only when it is ours (its
// shell said ready, or the probe found that commands run) and alive.
func (t *Transport) takeWarm() *warmSession {
	t.warmMu.Lock()
	defer t.warmMu.Unlock()
	w := t.warm
	if w == nil || w.sess == nil {
		return nil
	}
	select {
	case <-w.done:
		t.warm = nil
		return nil
	case <-w.ready:
	default:
		if !t.knownShell() {
			return nil
		}
	}
	t.warm = nil
	return w
}

// run hands cmd to the warm session: its command line, the end line, then
// stdin. It ends as Exec does.
func (w *warmSession) run(ctx context.Context, t *Transport, cmd transport.Command, stdin io.Reader, stdout, stderr io.Writer) error {
	out, errOut := &gatedWriter{w: stdout}, &gatedWriter{w: stderr}
	w.out.handOver(out)
	w.errOut.point(errOut)
	go func() {
		_, err := io.WriteString(w.stdin, commandLine(cmd)+"\n"+w.end+"\n")
		if err == nil && stdin != nil {
			_, err = io.Copy(w.stdin, stdin)
		}
		w.stdin.CloseWithError(err)
	}()
	select {
	case <-w.done:
	case <-ctx.Done():
		_ = w.sess.Signal(ssh.SIGTERM)
		w.sess.Close()
		out.shut()
		errOut.shut()
		return ctx.Err()
	}
	return t.exitErr(w.err)
}

// commandLine is what sshd is asked to run for cmd: the login shell (bash,
// zsh, fish...) hands it to /bin/sh, for which every script is written.
func commandLine(cmd transport.Command) string {
	return "exec /bin/sh -c " + shell.Quote(cmd.Script) + " " + shell.Command(cmd.Argv()...)
}

// warmOutput takes the shell's "ready" line, then passes the command's
// output on once the session is handed over.
type warmOutput struct {
	mu    sync.Mutex
	seen  []byte
	ready chan struct{}
	to    io.Writer
	bogus bool // something other than our shell answered
}

const readyLine = "ready\n"

func (o *warmOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := len(p)
	if len(o.seen) < len(readyLine) && !o.bogus {
		k := min(len(readyLine)-len(o.seen), len(p))
		o.seen, p = append(o.seen, p[:k]...), p[k:]
		switch {
		case string(o.seen) == readyLine:
			close(o.ready)
		case len(o.seen) == len(readyLine) || string(o.seen) != readyLine[:len(o.seen)]:
			o.bogus = true
		}
	}
	if len(p) > 0 && o.to != nil && !o.bogus {
		o.to.Write(p)
	}
	return n, nil
}

func (o *warmOutput) handOver(w io.Writer) {
	o.mu.Lock()
	o.to = w
	o.mu.Unlock()
}
