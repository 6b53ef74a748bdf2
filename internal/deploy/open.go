package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/shell"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// Open takes the lock and reads what the steps after it need: what the
// server can do (caps), the deploy root (root, with what w asks for), and
// so how this deploy's files go up (upload). needShell, when not empty,
// names what refuses a server that runs no commands (hooks are set). On
// failure nothing is held.
func (h *Host) Open(ctx context.Context, w rootWant, needShell string) error {
	if err := h.open(ctx, w, needShell); err != nil {
		h.Close(context.WithoutCancel(ctx))
		return err
	}
	return nil
}

func (h *Host) open(ctx context.Context, w rootWant, needShell string) error {
	owner := Owner{Actor: h.S.Actor, RunURL: h.S.RunURL, Host: h.S.Runner, StartedAt: time.Now().UTC()}
	snap, err := h.lockWithShell(ctx, owner, w)
	if err != nil {
		return err
	}
	if h.lock == nil {
		if err := h.lockWithLease(ctx, owner, needShell); err != nil {
			return err
		}
	}
	_, _, _, sessionLocked := h.lock.guard()
	h.caps.shell = sessionLocked || h.T.CanExec() // known without asking once the lock command ran
	warn := func(format string, args ...any) { h.Log.Warnf("%s: "+format, append([]any{h.Name}, args...)...) }
	if snap != nil {
		h.caps.gnuTar = strings.Contains(snap.tarVersion, "GNU tar")
		h.caps.gnuCp = strings.Contains(snap.cpVersion, "GNU coreutils")
		h.caps.deltaTools = snap.deltaTools
		if err := h.root.fromSnapshot(h.L, snap, w, warn); err != nil {
			return err
		}
		err = h.root.complete(ctx, h.T, h.L, w, warn)
	} else {
		err = parallel(ctx,
			func(ctx context.Context) error { return h.root.complete(ctx, h.T, h.L, w, warn) },
			func(ctx context.Context) error { h.caps.gnuTar, h.caps.gnuCp = probeGNUTools(ctx, h.T); return nil },
			func(ctx context.Context) error { removeTempLinks(ctx, h.T, h.L); return nil },
		)
	}
	if err != nil {
		return err
	}
	h.upload = sftpUpload{h}
	if h.caps.gnuTar && !h.S.NoTar && (h.caps.gnuCp || h.S.Reuse == ReuseHardlink) {
		h.upload = tarUpload{h}
	}
	return h.T.Ready(ctx)
}

// lockWithShell has one command check `current`, create the layout, take
// the lock and print the state (remote/holder.sh). It goes out before the
// transport knows whether the server runs commands at all (that probe
// costs round trips of its own, in parallel): when it does not, the
// command is ended and no lock is taken; Open then takes a lease over
// SFTP. A server with a shell but no flock is refused: one kind of lock a
// server. The snapshot is nil where the holder printed none that could be
// read.
func (h *Host) lockWithShell(ctx context.Context, owner Owner, w rootWant) (*snapshot, error) {
	lockCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go func() {
		// OpenSSH refuses a command at once under ForceCommand
		// internal-sftp; another forced command may just sit on it.
		select {
		case <-time.After(probeUnanswered):
			if !h.T.CanExec() {
				stop(transport.ErrNoShell)
			}
		case <-lockCtx.Done():
		}
	}()
	if w.plan && !h.S.NoTar {
		h.T.Warm() // for the upload stream
	}
	sl, err := acquireSessionLock(lockCtx, h.T, h.L, owner, h.S.Lock, w)
	switch {
	case err == nil:
		h.lock = sl
		var res snapshotResult
		select {
		case res = <-sl.snap:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if res.err != nil {
			h.Log.Infof("%s: reading the state request by request (%v)", h.Name, res.err)
		}
		return res.s, nil
	case errors.Is(err, errNotSymlink):
		return nil, h.notSymlinkError()
	case errors.Is(err, errNoFlock):
		// A lease here would not see a flock another deploy takes where
		// flock exists; one lock kind per server with a shell.
		return nil, fmt.Errorf("%w: atomic-deploy locks a server with a shell with flock(2); install it (util-linux, or busybox's flock) for user %s", errNoFlock, h.T)
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case h.T.CanExec():
		return nil, err
	}
	// No shell: its forced command got ours.
	return nil, nil
}

// lockWithLease takes the lock as a lease over SFTP, once it is sure
// `current` is a link or nothing, and creates the layout.
func (h *Host) lockWithLease(ctx context.Context, owner Owner, needShell string) error {
	if needShell != "" && !h.T.CanExec() {
		return fmt.Errorf("%s: this needs a shell on the server, but it only allows SFTP (ForceCommand internal-sftp): do without, or allow a shell for this user", needShell)
	}
	if info, err := h.T.Lstat(ctx, h.L.Current()); err == nil && info.Mode()&fs.ModeSymlink == 0 {
		// releases/ may not exist yet: nothing is created before this check.
		return h.notSymlinkError()
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("inspect %s: %w", h.L.Current(), err)
	}
	return parallel(ctx,
		func(ctx context.Context) error { return h.T.MkdirAll(ctx, h.L.Releases(), 0o755) },
		func(ctx context.Context) error { return h.T.MkdirAll(ctx, h.L.Shared(), 0o755) },
		func(ctx context.Context) error { return h.T.MkdirAll(ctx, h.L.Manifests(), 0o755) },
		func(ctx context.Context) error {
			lease, err := acquireLease(ctx, h.T, h.L, owner, h.S.Lock)
			if err != nil {
				return err
			}
			h.lock = lease
			return nil
		},
	)
}

// probeUnanswered is how long the lock command may go unanswered before
// the transport is asked whether the server runs commands at all.
var probeUnanswered = 2 * time.Second

func (h *Host) notSymlinkError() error {
	return fmt.Errorf("%s exists and is not a symlink (a site deployed another way?). atomic-deploy will not touch it: move it aside, e.g. `mkdir -p %s && mv %s %s && ln -s %s %s` keeps it live as the first release, and deploy again",
		h.L.Current(), shell.Quote(h.L.Releases()), shell.Quote(h.L.Current()), shell.Quote(h.L.Release("00000000000000")), shell.Quote(currentTarget("00000000000000")), shell.Quote(h.L.Current()))
}
