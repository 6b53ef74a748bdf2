package deploy

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// spareShell is a remote shell started ahead of need, while the lock is
// being taken: it waits for one line on stdin, runs it, and that command
// reads the rest of stdin. Starting a command costs a session open and an
// exec request, two round trips before the first byte can flow; the upload
// pays them while nothing else is waiting.
type spareShell struct {
	stdin  *io.PipeWriter
	cancel context.CancelFunc
	done   chan error
	stderr *strings.Builder
	once   sync.Once
}

// spareScript reads one line without reading past it (the shell's read
// reads a pipe byte by byte) and runs it; no line means nothing to do.
const spareScript = `IFS= read -r cmd || exit 0
eval "$cmd"`

func startSpareShell(t transport.Transport) *spareShell {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	s := &spareShell{stdin: pw, cancel: cancel, done: make(chan error, 1), stderr: &strings.Builder{}}
	go func() {
		err := t.Exec(ctx, spareScript, pr, io.Discard, &limitedWriter{w: s.stderr, n: 4096})
		pr.CloseWithError(errSpareEnded)
		s.done <- err
	}()
	return s
}

var errSpareEnded = errors.New("the remote shell ended")

// run has the shell run command (one line) with stdin as its input, and
// returns how it ended and what it wrote to stderr. A shell runs once.
func (s *spareShell) run(ctx context.Context, command string, stdin io.Reader) (string, error) {
	stop := context.AfterFunc(ctx, s.cancel)
	defer stop()
	_, err := io.WriteString(s.stdin, command+"\n")
	if err == nil {
		_, err = io.Copy(s.stdin, stdin)
	}
	s.stdin.CloseWithError(err)
	exitErr := <-s.done
	s.done <- exitErr
	s.once.Do(s.cancel)
	if ctx.Err() != nil {
		return s.stderr.String(), ctx.Err()
	}
	if exitErr != nil {
		return s.stderr.String(), exitErr
	}
	return s.stderr.String(), err
}

// alive reports whether the shell is still waiting for its line (its
// session may have been refused or lost since it was started).
func (s *spareShell) alive() bool {
	select {
	case err := <-s.done:
		s.done <- err
		return false
	default:
		return true
	}
}

// close ends an unused shell: our script ends with its input; whatever a
// server runs in its place (a forced command) is ended after a while.
func (s *spareShell) close() {
	s.stdin.Close()
	s.once.Do(func() {
		go func() {
			select {
			case err := <-s.done:
				s.done <- err
			case <-time.After(5 * time.Second):
			}
			s.cancel()
		}()
	})
}
