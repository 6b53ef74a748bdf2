package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sync"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// leaseLock is the deploy lock of a server without a shell: a directory
// created atomically (mkdir fails if it exists, on every transport), with
// owner.json inside whose modification time the holder refreshes. A holder
// that dies stops renewing, so its lock goes stale after TTL and the next
// deploy breaks it: a cancelled or killed job never needs a manual unlock.
type leaseLock struct {
	t      transport.Transport
	layout Layout
	dir    string
	owner  Owner

	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	lostErr error
}

func ownerFile(dir string) string { return path.Join(dir, "owner.json") }

// acquireLease takes the lease on l's root, waiting up to opts.Wait.
func acquireLease(ctx context.Context, t transport.Transport, l Layout, owner Owner, opts LockOptions) (*leaseLock, error) {
	if err := t.MkdirAll(ctx, l.Meta(), 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", l.Meta(), err)
	}
	owner.Token = randomToken()
	owner.TTL = Duration(opts.TTL)
	deadline := time.Now().Add(opts.Wait)
	delay := 250 * time.Millisecond
	for {
		taken, held, err := takeLease(ctx, t, l, owner)
		switch {
		case err != nil:
			return nil, err
		case taken:
			lease := &leaseLock{t: t, layout: l, dir: l.Lock(), owner: owner, stop: make(chan struct{}), done: make(chan struct{})}
			go lease.renew(opts.TTL / 4)
			return lease, nil
		case held == nil:
			continue // a stale lease was broken: try again at once
		case time.Now().After(deadline):
			return nil, &LockedError{Path: l.Lock(), Owner: *held}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// takeLease tries once. It says who holds the lock when it is not taken
// (nil when a stale lease was broken and it is worth trying again). The
// flock of a deploy with a shell is a lock too: the lease is written
// first and then the flock holder's heartbeat looked at, as holder.sh does
// the other way round, so of two deploys at least one sees the other.
func takeLease(ctx context.Context, t transport.Transport, l Layout, owner Owner) (bool, *Owner, error) {
	dir := l.Lock()
	err := t.Mkdir(ctx, dir, 0o755)
	if errors.Is(err, fs.ErrExist) {
		held, stale, err := inspectLock(ctx, t, dir)
		switch {
		case err != nil:
			return false, nil, err
		case stale:
			return false, nil, breakLock(ctx, t, dir, held.Token)
		}
		return false, &held, nil
	}
	if err != nil {
		return false, nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	data, _ := json.Marshal(owner)
	if err := t.WriteFile(ctx, ownerFile(dir), data, 0o644); err != nil {
		t.RemoveAll(ctx, dir)
		return false, nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	flock, held, err := flockHeld(ctx, t, l)
	if err != nil || held {
		t.RemoveAll(ctx, dir)
		return false, &flock, err
	}
	return true, nil, nil
}

// flockHeld reports whether a lock holder of the other kind (holder.sh)
// keeps its heartbeat fresh.
func flockHeld(ctx context.Context, t transport.Transport, l Layout) (Owner, bool, error) {
	if _, err := t.Lstat(ctx, l.flockOwner()); errors.Is(err, fs.ErrNotExist) {
		return Owner{}, false, nil
	}
	hb, stale, err := readHeartbeat(ctx, t, l.flockOwner())
	return hb.Owner, err == nil && !stale, err
}

// inspectLock reads the holder and decides staleness by the server's clock.
func inspectLock(ctx context.Context, t transport.Transport, dir string) (Owner, bool, error) {
	var o Owner
	info, err := t.Lstat(ctx, ownerFile(dir))
	if errors.Is(err, fs.ErrNotExist) {
		// Between the holder's mkdir and its owner.json, or a crash right
		// there: judge by the directory's age instead.
		info, err = t.Lstat(ctx, dir)
		if errors.Is(err, fs.ErrNotExist) {
			return o, false, nil // released meanwhile; retry
		}
	} else if err == nil {
		data, rerr := t.ReadFile(ctx, ownerFile(dir))
		if rerr == nil {
			json.Unmarshal(data, &o)
		}
	}
	if err != nil {
		return o, false, fmt.Errorf("inspect lock %s: %w", dir, err)
	}
	ttl := time.Duration(o.TTL)
	if ttl <= 0 {
		ttl = DefaultLockOptions.TTL
	}
	now, err := t.Now(ctx)
	if err != nil {
		return o, false, fmt.Errorf("inspect lock %s: %w", dir, err)
	}
	return o, now.Sub(info.ModTime()) > ttl+time.Second, nil
}

// breakLock moves a stale lock aside atomically, so of several deploys
// that found it stale only one takes it; the others see a fresh lock.
func breakLock(ctx context.Context, t transport.Transport, dir, token string) error {
	aside := dir + ".stale-" + randomToken()
	if err := t.Rename(ctx, dir, aside); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("break stale lock %s: %w", dir, err)
	}
	var o Owner
	if data, err := t.ReadFile(ctx, ownerFile(aside)); err == nil {
		json.Unmarshal(data, &o)
	}
	if o.Token != token {
		// Someone took the lock between our look and our rename: put it back.
		if err := t.Rename(ctx, aside, dir); err != nil {
			return fmt.Errorf("restore lock %s: %w", dir, err)
		}
		return nil
	}
	return t.RemoveAll(ctx, aside)
}

func (l *leaseLock) renew(every time.Duration) {
	defer close(l.done)
	data, _ := json.Marshal(l.owner)
	tick := time.NewTicker(every)
	defer tick.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
			// A renewal that waits behind a large upload on a slow link is
			// late, not lost; the lease is lost when it was taken over or
			// removed, or when no renewal got through for most of the TTL
			// (4 × every), before anyone may break it as stale.
			ctx, cancel := context.WithTimeout(context.Background(), 2*every)
			err := l.check(ctx)
			if err == nil {
				err = l.t.WriteFile(ctx, ownerFile(l.dir), data, 0o644)
			}
			cancel()
			since := time.Since(lastOK)
			switch {
			case err == nil:
				lastOK = time.Now()
				continue
			case errors.Is(err, errTakenOver), errors.Is(err, fs.ErrNotExist):
			case since >= 3*every:
				err = fmt.Errorf("lock %s not renewed for %s (TTL %s): %w", l.dir, since.Round(time.Millisecond), 4*every, err)
			default:
				continue
			}
			l.mu.Lock()
			if l.lostErr == nil {
				l.lostErr = err
			}
			l.mu.Unlock()
		}
	}
}

// check confirms the lock is still ours.
func (l *leaseLock) check(ctx context.Context) error {
	data, err := l.t.ReadFile(ctx, ownerFile(l.dir))
	if err != nil {
		return fmt.Errorf("lock %s lost: %w", l.dir, err)
	}
	var o Owner
	json.Unmarshal(data, &o)
	if o.Token != l.owner.Token {
		return fmt.Errorf("lock %s was taken over (%s): %w", l.dir, o, errTakenOver)
	}
	return nil
}

var errTakenOver = errors.New("another deploy holds it now")

// Held returns an error if the lease was lost; call it before the switch.
func (l *leaseLock) Held(ctx context.Context) error {
	if err := l.lost(); err != nil {
		return err
	}
	return l.check(ctx)
}

// lost is a loss the renewals found.
func (l *leaseLock) lost() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lostErr
}

// finish writes the records into the releases log and deletes the old
// releases, request by request, then lets go.
func (l *leaseLock) finish(ctx context.Context, log *releaseLog, records []Record, prune []string) []string {
	var mu sync.Mutex
	var warnings []string
	warn := func(w ...string) {
		mu.Lock()
		warnings = append(warnings, w...)
		mu.Unlock()
	}
	parallel(ctx,
		func(ctx context.Context) error {
			if err := log.append(ctx, l.t, l.layout, records...); err != nil {
				warn(fmt.Sprintf("could not write the releases log: %v", err))
			}
			return nil
		},
		func(ctx context.Context) error { warn(pruneByRequests(ctx, l.t, l.layout, prune)...); return nil },
	)
	if err := l.release(ctx); err != nil {
		warn(err.Error())
	}
	return warnings
}

// guard: no command on the server can check a lease.
func (l *leaseLock) guard() (pid, token, file string, ok bool) { return "", "", "", false }

// release stops renewing and removes the lock if it is still ours.
func (l *leaseLock) release(ctx context.Context) error {
	close(l.stop)
	<-l.done
	if err := l.check(ctx); err != nil {
		return nil // not ours any more; leave the new holder alone
	}
	if err := l.t.RemoveAll(ctx, l.dir); err != nil {
		return fmt.Errorf("unlock %s: %w", l.dir, err)
	}
	return nil
}

// ForceUnlock removes a lock whoever holds it (mode: unlock).
func ForceUnlock(ctx context.Context, t transport.Transport, dir string) (Owner, bool, error) {
	var o Owner
	if _, err := t.Lstat(ctx, dir); errors.Is(err, fs.ErrNotExist) {
		return o, false, nil
	}
	if data, err := t.ReadFile(ctx, ownerFile(dir)); err == nil {
		json.Unmarshal(data, &o)
	}
	if err := t.RemoveAll(ctx, dir); err != nil {
		return o, true, fmt.Errorf("unlock %s: %w", dir, err)
	}
	return o, true, nil
}
