package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/shell"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// locker is a held deploy lock.
type locker interface {
	// Held returns an error if the lock was lost; checked before the switch.
	Held(ctx context.Context) error
	Release(ctx context.Context) error
}

// acquireLease takes the deploy lock as a renewed lease: the fallback for
// servers without a shell or flock(1) (SFTP-only servers).
func acquireLease(ctx context.Context, t transport.Transport, l Layout, owner Owner, opts LockOptions) (locker, error) {
	if err := t.MkdirAll(ctx, l.Meta(), 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", l.Meta(), err)
	}
	lease, err := AcquireLock(ctx, t, l.Lock(), owner, opts)
	if err != nil {
		return nil, err // not a typed nil inside the interface
	}
	return lease, nil
}

var (
	errNoFlock    = errors.New("flock(1) is not available on the server")
	errNotSymlink = errors.New("current is not a symlink")
)

// Exit codes of the holder script.
const (
	exitNoFlock = 69
	exitBusy    = 75
)

// sessionLock is flock(2) on .atomic-deploy/lock.flock, held by a remote
// process that lives exactly as long as our SSH session: when the deploy
// ends, is cancelled, is killed, or its connection drops, sshd closes the
// process's stdin, it exits, and the kernel drops the lock. No stale lock is
// possible while the server runs. For a runner that vanished without
// closing TCP, the holder also renews a heartbeat file; a waiter that finds
// the heartbeat older than the TTL ends the orphaned holder process.
type sessionLock struct {
	t      transport.Transport
	file   string // owner/heartbeat JSON
	stdin  io.WriteCloser
	done   chan error
	stop   chan struct{}
	wg     sync.WaitGroup
	snap   chan snapshotResult // the state the holder printed once it had the lock
	stderr *strings.Builder    // what the holder reported; read once it ended

	pid   int    // the holder's process on the server
	token string // written in file while the lock is ours

	mu      sync.Mutex
	lostErr error
}

// stillHeld is shell that fails unless this lock's holder is alive and its
// identity file is still ours (a waiter that found us stale ends the
// holder and writes its own): the guard of a switch made on the server.
func (sl *sessionLock) stillHeld() string {
	return "kill -0 " + strconv.Itoa(sl.pid) + " 2>/dev/null && " + shell.Command("grep", "-qsF", sl.token, sl.file)
}

func (l Layout) flockFile() string  { return path.Join(l.Meta(), "lock.flock") }
func (l Layout) flockOwner() string { return path.Join(l.Meta(), "lock.owner.json") }

// What the client sends the holder on release: records for the log, then
// logTailPrune, old release ids to delete, one per line, then logTailEnd.
// A tail without the end (a connection lost mid-write) is dropped, never
// half-acted on.
const (
	logTailPrune = "--prune--"
	logTailEnd   = "--end--"
)

type snapshotResult struct {
	s   *snapshot
	err error
}

// holderScript checks `current` and creates the layout (snapshotPrelude),
// takes the flock (waiting up to `wait` seconds), writes the holder's
// identity with its pid (no extra round trip for it), reports the pid,
// prints the snapshot of the deploy root, then waits for stdin to end. What
// arrived there (see releaseWithLog: records for the releases log, then
// old releases to delete) is acted on, and the identity file removed,
// before the shell exits and the kernel drops the lock. The commands it
// runs inherit the lock descriptor (cat does not get it), so a waiter that
// ends the shell as orphaned may wait for them to finish; while deleting
// old releases the holder keeps its heartbeat fresh itself, as the runner
// no longer does. A tail that arrived without its end is not acted on and
// makes the shell exit 4. Every way out before the lock prints one line
// first, so the client never waits on a session whose stdin it still
// holds open; after the snapshot stdout is closed, so a client that lost
// step in it sees the end rather than waiting.
func holderScript(l Layout, waitSeconds int, owner Owner, want snapshotWant) string {
	// {"token":...,"pid":<pid>}: the JSON of owner, then the pid from $$.
	prefix, _ := json.Marshal(owner)
	prefix = append(prefix[:len(prefix)-1], []byte(`,"pid":`)...)
	tmp := l.flockOwner() + ".tmp"
	tail := l.flockOwner() + ".tail"
	trash := shell.Quote(l.Trash())
	ownerFile := shell.Quote(l.flockOwner())
	prune := fmt.Sprintf(`sed -n '/^%[1]s$/,$p' %[2]s | sed '1d;$d' | while IFS= read -r id; do
  touch %[6]s
  if [ -z "$cleaned" ]; then cleaned=1; mkdir -p %[3]s; for x in %[3]s/*; do if [ -e "$x" ]; then rm -rf "$x"; fi; done; fi
  a=%[3]s/"$id"-$$
  if mv %[4]s/"$id" "$a"; then rm -f %[5]s/"$id".json.gz %[5]s/"$id".delta %[5]s/"$id".json.gz.tmp %[5]s/"$id".json.gz.plain.tmp; rm -rf "$a" || echo "old release $id is out of releases/, but $a could not be deleted completely (the next deploy tries again)" >&2
  else echo "could not remove old release $id; it stays as it is" >&2; fi
done
`, logTailPrune, shell.Quote(tail), trash, shell.Quote(l.Releases()), shell.Quote(l.Manifests()), ownerFile)
	// The tar command and this shell append to the log without rewriting
	// it; this keeps it to its last maxLogRecords lines.
	trim := fmt.Sprintf(`if [ "$(wc -l < %[1]s)" -gt %[2]d ]; then tail -n %[2]d %[1]s > %[1]s.tmp && mv -f %[1]s.tmp %[1]s; fi
`, shell.Quote(l.Log()), maxLogRecords)
	return fmt.Sprintf(`command -v flock >/dev/null 2>&1 || { echo noflock; exit %d; }
%smkdir -p %s || { echo error; exit 1; }
exec 9>>%s || { echo error; exit 1; }
flock -w %d 9 || { echo busy; exit %d; }
printf '%%s%%s}' %s "$$" > %s && mv -f %s %s
echo "locked $$"
{
%s} 2>/dev/null
exec >/dev/null
cat > %s 9>&-
status=0
if [ "$(tail -n 1 %s)" = %s ]; then
if sed -n '/^%s$/q;$q;p' %s >> %s; then %s%selse status=3; fi
elif [ -s %s ]; then status=4; fi
rm -f %s %s
exit $status
`, exitNoFlock, snapshotPrelude(l), shell.Quote(l.Meta()), shell.Quote(l.flockFile()), waitSeconds, exitBusy,
		shell.Quote(string(prefix)), shell.Quote(tmp), shell.Quote(tmp), shell.Quote(l.flockOwner()),
		snapshotScript(l, want), shell.Quote(tail), shell.Quote(tail), shell.Quote(logTailEnd),
		logTailPrune, shell.Quote(tail), shell.Quote(l.Log()), trim, prune,
		shell.Quote(tail), shell.Quote(tail), ownerFile)
}

func acquireSessionLock(ctx context.Context, t transport.Transport, l Layout, owner Owner, opts LockOptions, want snapshotWant) (*sessionLock, error) {
	owner.Token = randomToken()
	owner.TTL = Duration(opts.TTL)
	deadline := time.Now().Add(opts.Wait)
	for {
		sl, err := trySessionLock(ctx, t, l, owner, min(5*time.Second, max(time.Until(deadline), time.Second)), want)
		if err == nil || !errors.Is(err, errBusy) {
			return sl, err
		}
		held, stale, err := readHeartbeat(ctx, t, l.flockOwner())
		if err != nil {
			return nil, err
		}
		if stale && held.PID > 0 {
			// The holder's runner is gone but its server process lingers
			// (no FIN reached sshd): end it so the kernel frees the lock.
			t.Exec(ctx, transport.Command{Name: "end-holder", Script: shell.Command("kill", "-9", strconv.Itoa(held.PID))}, nil, io.Discard, io.Discard)
			continue
		}
		if time.Now().After(deadline) {
			return nil, &LockedError{Path: l.flockFile(), Owner: held.Owner}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

var errBusy = errors.New("lock busy")

// heartbeat is the holder's identity plus its server-side pid.
type heartbeat struct {
	Owner
	PID int `json:"pid"`
}

func trySessionLock(ctx context.Context, t transport.Transport, l Layout, owner Owner, wait time.Duration, want snapshotWant) (*sessionLock, error) {
	stdinR, stdinW := io.Pipe()
	outR, outW := io.Pipe()
	sl := &sessionLock{t: t, file: l.flockOwner(), stdin: stdinW, done: make(chan error, 1), stop: make(chan struct{}), snap: make(chan snapshotResult, 1)}
	stderr := &strings.Builder{}
	sl.stderr = stderr
	// The session must outlive the ctx of Open: it is ended by Release.
	execCtx, endExec := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer endExec()
		err := t.Exec(execCtx, transport.Command{Name: "holder", Script: holderScript(l, int(wait.Seconds()+0.5), owner, want)}, stdinR, outW, &limitedWriter{w: stderr, n: 4096})
		outW.CloseWithError(io.EOF)
		sl.done <- err
	}()
	lines := make(chan string, 1)
	go func() {
		br := bufio.NewReaderSize(outR, 64<<10)
		line, _ := br.ReadString('\n')
		lines <- line
		if strings.HasPrefix(line, "locked ") {
			s, err := parseSnapshot(br, want)
			sl.snap <- snapshotResult{s, err}
		}
		io.Copy(io.Discard, br)
	}()
	var line string
	select {
	case line = <-lines:
	case <-ctx.Done():
	case <-time.After(wait + 30*time.Second):
	}
	if !strings.HasPrefix(line, "locked ") {
		// Our script ends on EOF, and so does internal-sftp running in its
		// place on a server without a shell; anything else is ended.
		stdinW.Close()
		var exitErr error
		select {
		case exitErr = <-sl.done:
		case <-time.After(5 * time.Second):
			endExec()
			exitErr = <-sl.done
		}
		var ee *transport.ExitError
		if errors.As(exitErr, &ee) {
			switch ee.Status {
			case exitNoFlock:
				return nil, errNoFlock
			case exitBusy:
				return nil, errBusy
			case exitNotSymlink:
				return nil, errNotSymlink
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if exitErr == nil {
			exitErr = errors.New("the lock command ended without the lock")
		}
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("lock %s: %w: %s", l.flockFile(), exitErr, msg)
		}
		return nil, fmt.Errorf("lock %s: %w", l.flockFile(), exitErr)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "locked ")))
	sl.pid, sl.token = pid, owner.Token
	hb, _ := json.Marshal(heartbeat{Owner: owner, PID: pid})
	sl.wg.Add(1)
	go sl.renew(hb, time.Duration(owner.TTL)/4)
	return sl, nil
}

func (sl *sessionLock) renew(hb []byte, every time.Duration) {
	defer sl.wg.Done()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-sl.stop:
			return
		case err := <-sl.done:
			sl.done <- err // keep it for Release
			sl.lose(fmt.Errorf("lock holder ended early: %v", err))
			return
		case <-tick.C:
			// The flock is ours while the holder lives; the heartbeat only
			// tells waiters the runner is alive. A write that is late (it
			// waits behind a large upload on a slow link) or fails does not
			// lose the lock: a waiter that finds the heartbeat older than
			// the TTL ends the holder, and that shows on done.
			ctx, cancel := context.WithTimeout(context.Background(), 2*every)
			sl.t.WriteFile(ctx, sl.file, hb, 0o644)
			cancel()
		}
	}
}

func (sl *sessionLock) lose(err error) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.lostErr == nil {
		sl.lostErr = err
	}
}

func (sl *sessionLock) Held(context.Context) error {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.lostErr
}

// Release ends the holder process, which removes its identity file and
// frees the flock.
func (sl *sessionLock) Release(ctx context.Context) error {
	_, err := sl.releaseWithLog(ctx, nil, nil)
	return err
}

// releaseWithLog releases the lock after the holder appended line (one JSON
// record) to the releases log and deleted the old releases in prune (ids
// safe as one path element, see holderScript). It fails if the holder
// could not confirm the record, and returns what it said about the
// releases it could not delete.
func (sl *sessionLock) releaseWithLog(ctx context.Context, line []byte, prune []string) (string, error) {
	close(sl.stop)
	sl.wg.Wait()
	if line != nil || len(prune) > 0 {
		var b strings.Builder
		if line != nil {
			b.Write(line)
			b.WriteString("\n")
		}
		b.WriteString(logTailPrune + "\n")
		for _, id := range prune {
			b.WriteString(id + "\n")
		}
		b.WriteString(logTailEnd + "\n")
		io.WriteString(sl.stdin, b.String())
	}
	sl.stdin.Close()
	limit := 10 * time.Second
	if len(prune) > 0 {
		limit = 5 * time.Minute // deleting a large release takes a while
	}
	var err error
	select {
	case err = <-sl.done:
	case <-ctx.Done():
		err = ctx.Err()
	case <-time.After(limit):
		err = fmt.Errorf("the lock holder did not end within %v", limit)
	}
	if line != nil && err != nil {
		return "", fmt.Errorf("append to the releases log: %v", err)
	}
	if err != nil {
		return "", nil
	}
	return strings.TrimSpace(sl.stderr.String()), nil
}

// releaseUnconfirmed ends the holder's input and does not wait for it to
// exit: with nothing to append or delete it only removes its identity
// file, and the kernel drops the lock when it exits (or when sshd closes
// the session, should the connection go first).
func (sl *sessionLock) releaseUnconfirmed() {
	close(sl.stop)
	sl.wg.Wait()
	sl.stdin.Close()
}

// readHeartbeat reads the flock holder's identity and whether its
// heartbeat is older than its TTL (by the server's clock).
func readHeartbeat(ctx context.Context, t transport.Transport, file string) (heartbeat, bool, error) {
	var hb heartbeat
	info, err := t.Lstat(ctx, file)
	if err != nil {
		return hb, false, nil // between the holder's flock and its first write
	}
	if data, err := t.ReadFile(ctx, file); err == nil {
		json.Unmarshal(data, &hb)
	}
	ttl := time.Duration(hb.TTL)
	if ttl <= 0 {
		ttl = DefaultLockOptions.TTL
	}
	now, err := t.Now(ctx)
	if err != nil {
		return hb, false, fmt.Errorf("inspect lock: %w", err)
	}
	return hb, now.Sub(info.ModTime()) > ttl+time.Second, nil
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
