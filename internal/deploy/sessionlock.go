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

	"github.com/atomic-deploy/atomic-deploy/internal/deploy/remote"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

var (
	errNoFlock    = errors.New("flock(1) is not available on the server")
	errNotSymlink = errors.New("current is not a symlink")
)

// sessionLock is flock(2) on .atomic-deploy/lock.flock, held by a remote
// process that lives exactly as long as our SSH session: when the deploy
// ends, is cancelled, is killed, or its connection drops, sshd closes the
// process's stdin, it exits, and the kernel drops the lock. No stale lock is
// possible while the server runs. For a runner that vanished without
// closing TCP, the client sends the holder a heartbeat every TTL/4, on
// which it refreshes its identity file; a waiter that finds the file older
// than the TTL ends the orphaned holder process.
type sessionLock struct {
	t      transport.Transport
	layout Layout
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

// guard is what the upload command checks before it switches on this
// lock's behalf: the holder's pid, and the token its identity file holds
// while the lock is ours (a waiter that found us stale ends the holder and
// writes its own).
func (sl *sessionLock) guard() (pid, token, file string, ok bool) {
	return strconv.Itoa(sl.pid), sl.token, sl.file, true
}

// FlockFile is the file whose flock(2) is the deploy lock on a server with
// a shell; after a deploy let go, its holder may keep it a while to make the
// spare (remote/holder.sh's after_deploy).
func (l Layout) FlockFile() string  { return path.Join(l.Meta(), "lock.flock") }
func (l Layout) flockOwner() string { return path.Join(l.Meta(), "lock.owner.json") }

// aheadCopy is where the lock holder with pid copies the live release
// for the upload (remote/holder.sh's copy_ahead).
func (l Layout) aheadCopy(pid string) string { return path.Join(l.Meta(), ".ahead-"+pid) }

type snapshotResult struct {
	s   *snapshot
	err error
}

// holderCommand is remote/holder.sh for this deploy root: it checks
// `current`, creates the layout, takes the flock (waiting up to wait),
// prints the snapshot and holds the lock until its input ends.
func holderCommand(l Layout, wait time.Duration, owner Owner, want rootWant) transport.Command {
	identity, _ := json.Marshal(owner)
	args := []string{l.Current(), l.Releases(), l.Shared(), l.Meta(), l.Manifests(), l.Log(), l.Trash(),
		l.FlockFile(), l.flockOwner(), path.Join(l.Root, tempLinkPrefix), manifestEnding, sealEnding,
		strconv.Itoa(int(wait.Seconds() + 0.5)), string(identity[:len(identity)-1]), "0", strconv.Itoa(maxLogRecords),
		ownerFile(l.Lock()), strconv.Itoa(int(time.Duration(owner.TTL).Seconds()) + 1)}
	switch {
	case want.prepared != "":
		args[14] = "=" + want.prepared
	case want.plan && want.known != nil:
		args[14] = "1:" + want.known.id + ":" + want.known.digest
	case want.plan:
		args[14] = "1"
	}
	if want.copies {
		args[14] = "c" + args[14]
	}
	return remote.Holder.Command(append(args, want.shared...)...)
}

func acquireSessionLock(ctx context.Context, t transport.Transport, l Layout, owner Owner, opts LockOptions, want rootWant) (*sessionLock, error) {
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
		if held.Token == "" {
			// Not a flock holder: a fresh lease made the holder let go. It
			// is renewed every TTL/4; look again in a second.
			if lease, _, err := inspectLock(ctx, t, l.Lock()); err == nil {
				held.Owner = lease
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Second):
			}
		}
		if stale && held.PID > 0 {
			// The holder's runner is gone but its server process lingers
			// (no FIN reached sshd): end it so the kernel frees the lock.
			t.Exec(ctx, remote.EndHolder.Command(strconv.Itoa(held.PID), l.Meta(), l.FlockFile()), nil, io.Discard, io.Discard)
			continue
		}
		if time.Now().After(deadline) {
			return nil, &LockedError{Path: l.FlockFile(), Owner: held.Owner}
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

// errHolderEnded is what a write to the holder's input gets once its
// session is over.
var errHolderEnded = errors.New("the lock holder ended")

func trySessionLock(ctx context.Context, t transport.Transport, l Layout, owner Owner, wait time.Duration, want rootWant) (*sessionLock, error) {
	if want.plan {
		want.known = lastManifest.Load() // the command and the parser see one
	}
	stdinR, stdinW := io.Pipe()
	outR, outW := io.Pipe()
	sl := &sessionLock{t: t, layout: l, file: l.flockOwner(), stdin: stdinW, done: make(chan error, 1), stop: make(chan struct{}), snap: make(chan snapshotResult, 1)}
	stderr := &strings.Builder{}
	sl.stderr = stderr
	// The session must outlive the ctx of Open: it is ended by Release.
	execCtx, endExec := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer endExec()
		err := t.Exec(execCtx, holderCommand(l, wait, owner, want), stdinR, outW, transport.LimitWriter(stderr, 4096))
		stdinR.CloseWithError(errHolderEnded) // a heartbeat after this fails, never waits
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
			case remote.StatusNoFlock:
				return nil, errNoFlock
			case remote.StatusLockBusy:
				return nil, errBusy
			case remote.StatusCurrentNotLink:
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
			return nil, fmt.Errorf("lock %s: %w: %s", l.FlockFile(), exitErr, msg)
		}
		return nil, fmt.Errorf("lock %s: %w", l.FlockFile(), exitErr)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "locked ")))
	sl.pid, sl.token = pid, owner.Token
	sl.wg.Add(1)
	go sl.renew(time.Duration(owner.TTL) / 4)
	return sl, nil
}

func (sl *sessionLock) renew(every time.Duration) {
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
			// tells waiters the runner is alive. The holder refreshes its
			// identity file on each (holder.sh): one line on its input,
			// not a file written over SFTP that could land late on the
			// identity of a holder that came after. A heartbeat that is
			// late (behind a large upload on a slow link) does not lose the
			// lock: a waiter that finds the file older than the TTL ends
			// the holder, and that shows on done.
			io.WriteString(sl.stdin, remote.Beat+"\n")
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

// Held: the holder's end is watched, so a loss is known without asking.
func (sl *sessionLock) Held(context.Context) error { return sl.lost() }

func (sl *sessionLock) lost() error {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.lostErr
}

// release ends the holder process, which removes its identity file and
// frees the flock.
func (sl *sessionLock) release(ctx context.Context) error {
	_, err := sl.releaseWithLog(ctx, nil, nil)
	return err
}

// finish hands the records and the old releases to the holder, which
// appends and deletes them as it lets go: no round trips for them, and
// both are done before the next deploy can take the lock. Ids the holder
// cannot take as one line and one path element are deleted request by
// request first.
func (sl *sessionLock) finish(ctx context.Context, _ *releaseLog, records []Record, prune []string) []string {
	var byHolder, byRequests []string
	for _, id := range prune {
		if safePathElement(id) {
			byHolder = append(byHolder, id)
		} else {
			byRequests = append(byRequests, id)
		}
	}
	warnings := pruneByRequests(ctx, sl.t, sl.layout, byRequests)
	if len(records) == 0 && len(byHolder) == 0 {
		// Nothing left to confirm: the holder ends when its input does, and
		// the lock goes with it.
		sl.releaseUnconfirmed()
		return warnings
	}
	said, err := sl.releaseWithLog(ctx, records, byHolder)
	if err != nil {
		warnings = append(warnings, fmt.Sprintf("could not write the releases log: %v", err))
	}
	for _, msg := range strings.Split(said, "\n") {
		if msg != "" {
			warnings = append(warnings, msg)
		}
	}
	return warnings
}

// releaseWithLog releases the lock after the holder appended records to
// the releases log and deleted the old releases in prune (ids safe as one
// path element, see holder.sh). It fails if the holder could not confirm
// the records, and returns what it said about the releases it could not
// delete.
func (sl *sessionLock) releaseWithLog(ctx context.Context, records []Record, prune []string) (string, error) {
	close(sl.stop)
	sl.wg.Wait()
	if len(records) > 0 || len(prune) > 0 {
		var b strings.Builder
		for _, r := range records {
			line, _ := json.Marshal(r)
			b.Write(line)
			b.WriteString("\n")
		}
		b.WriteString(remote.TailPrune + "\n")
		for _, id := range prune {
			b.WriteString(id + "\n")
		}
		b.WriteString(remote.TailEnd + "\n")
		io.WriteString(sl.stdin, b.String())
	}
	sl.stdin.Close()
	limit := 10 * time.Second
	if len(prune) > 0 {
		limit = 5 * time.Minute // a release moved into the trash on another filesystem is copied
	}
	var err error
	select {
	case err = <-sl.done:
	case <-ctx.Done():
		err = ctx.Err()
	case <-time.After(limit):
		err = fmt.Errorf("the lock holder did not end within %v", limit)
	}
	if len(records) > 0 && err != nil {
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
