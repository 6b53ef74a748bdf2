package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/shell"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// errHooksNeedShell is returned when hooks are set but the server only speaks SFTP.
var errHooksNeedShell = errors.New("before-activate/after-activate need a shell on the server, but it only allows SFTP (ForceCommand internal-sftp): remove the hooks or allow a shell for this user")

// Open checks the deploy root, takes the lock and reads the state.
func (h *Host) Open(ctx context.Context, needHooks bool) error {
	if err := h.open(ctx, needHooks); err != nil {
		h.Close(context.WithoutCancel(ctx))
		return err
	}
	return nil
}

func (h *Host) open(ctx context.Context, needHooks bool) error {
	owner := Owner{Actor: h.S.Actor, RunURL: h.S.RunURL, Host: h.S.Runner, StartedAt: time.Now().UTC()}
	locked, err := h.lockWithShell(ctx, owner)
	if locked || err != nil {
		if err == nil {
			err = h.T.Ready(ctx)
		}
		return err
	}
	if needHooks && !h.canExec() {
		return errHooksNeedShell
	}
	if info, err := h.T.Lstat(ctx, h.L.Current()); err == nil && info.Mode()&fs.ModeSymlink == 0 {
		// releases/ may not exist yet: nothing is created before this check.
		return h.notSymlinkError()
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("inspect %s: %w", h.L.Current(), err)
	}
	// Independent requests go out together: each is a round trip on a
	// remote host, and waiting for them one by one adds up.
	err = parallel(ctx,
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
	if err != nil {
		return err
	}
	return h.readAll(ctx)
}

// lockWithShell has one command check `current`, create the layout, take
// the lock and print the state (snapshot.go). It goes out before the
// transport knows whether the server runs commands at all (that probe
// costs round trips of its own, in parallel): when it does not, the
// command is ended and locked is false, as it is when the server lacks
// flock; the caller then locks and reads over SFTP.
func (h *Host) lockWithShell(ctx context.Context, owner Owner) (locked bool, err error) {
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
	if h.wantPlan && !h.S.NoTar {
		h.T.Warm() // for the upload stream
	}
	sl, err := acquireSessionLock(lockCtx, h.T, h.L, owner, h.S.Lock, snapshotWant{plan: h.wantPlan, shared: h.sharedPaths()})
	switch {
	case err == nil:
		h.lock = sl
		h.shellRan = true
		var res snapshotResult
		select {
		case res = <-sl.snap:
		case <-ctx.Done():
			return true, ctx.Err()
		}
		if res.err == nil {
			return true, h.applySnapshot(res.s)
		}
		h.Log.Infof("%s: reading the state request by request (%v)", h.Name, res.err)
		return true, h.readAll(ctx)
	case errors.Is(err, errNotSymlink):
		return false, h.notSymlinkError()
	case errors.Is(err, errNoFlock):
	case ctx.Err() != nil:
		return false, ctx.Err()
	case h.T.CanExec():
		return false, err
	}
	// No shell (its forced command got ours) or no flock.
	return false, nil
}

// probeUnanswered is how long the lock command may go unanswered before
// the transport is asked whether the server runs commands at all.
var probeUnanswered = 2 * time.Second

func (h *Host) notSymlinkError() error {
	return fmt.Errorf("%s exists and is not a symlink (a site deployed another way?). atomic-deploy will not touch it: move it aside, e.g. `mkdir -p %s && mv %s %s && ln -s %s %s` keeps it live as the first release, and deploy again",
		h.L.Current(), shell.Quote(h.L.Releases()), shell.Quote(h.L.Current()), shell.Quote(h.L.Release("00000000000000")), shell.Quote(currentTarget("00000000000000")), shell.Quote(h.L.Current()))
}

// applySnapshot takes the state from what the lock holder printed.
func (h *Host) applySnapshot(s *snapshot) error {
	h.gnuTar = !h.S.NoTar && strings.Contains(s.tarVersion, "GNU tar")
	if err := h.setCurrent(s.current, nil); err != nil {
		return err
	}
	h.existing = s.releases
	h.rlog = s.log
	if h.wantPlan {
		h.snap = s
		// The holder reads the live release's manifest and files only
		// where `current` is written the way a deploy writes it
		// (releases/<id>); otherwise they are read request by request.
		if id, ok := strings.CutPrefix(s.current, "releases/"); !ok || id != h.CurrentID || strings.Contains(id, "/") {
			s.manifest, s.manifestLines, s.manifestErr, s.scan = nil, nil, nil, nil
			h.snapManifest = false
		} else {
			h.snapManifest = true
		}
		h.prefetched = s.scan != nil
		h.prefetchedScan = s.scan
	}
	return nil
}

// readAll reads the state request by request (the lock is held).
func (h *Host) readAll(ctx context.Context) error {
	return parallel(ctx, h.readState,
		func(ctx context.Context) error { h.gnuTar = !h.S.NoTar && probeGNUTar(ctx, h.T); return nil },
		func(ctx context.Context) error { h.removeTempLinks(ctx); return nil },
		func(ctx context.Context) error {
			// A deploy plans against the live release: its scan (the longest
			// read) starts now, through `current`, which the lock keeps still.
			if h.wantPlan {
				h.prefetchedScan, h.prefetchErr = h.T.Scan(ctx, h.L.Current())
				h.prefetched = true
			}
			return nil
		})
}

func (h *Host) readState(ctx context.Context) error {
	var target string
	var linkErr error
	var entries []fs.FileInfo
	err := parallel(ctx,
		func(ctx context.Context) error {
			rl, err := readReleaseLog(ctx, h.T, h.L)
			if err != nil {
				return fmt.Errorf("read %s: %w", h.L.Log(), err)
			}
			h.rlog = rl
			return nil
		},
		func(ctx context.Context) error {
			target, linkErr = h.T.Readlink(ctx, h.L.Current())
			return nil
		},
		func(ctx context.Context) error {
			var err error
			if entries, err = h.T.ReadDir(ctx, h.L.Releases()); err != nil {
				return fmt.Errorf("list %s: %w", h.L.Releases(), err)
			}
			return nil
		},
	)
	if err != nil {
		return err
	}
	if err := h.setCurrent(target, linkErr); err != nil {
		return err
	}
	h.existing = h.existing[:0]
	for _, e := range entries {
		if e.IsDir() {
			h.existing = append(h.existing, e.Name())
		}
	}
	return nil
}

// setCurrent sets CurrentID from the target of `current` ("" or
// fs.ErrNotExist when there is none).
func (h *Host) setCurrent(target string, linkErr error) error {
	switch {
	case errors.Is(linkErr, fs.ErrNotExist), linkErr == nil && target == "":
		h.CurrentID = ""
	case linkErr != nil:
		return fmt.Errorf("read %s: %w", h.L.Current(), linkErr)
	default:
		id, ok := h.L.releaseIDFromTarget(target)
		if !ok {
			return fmt.Errorf("%s points to %s, outside %s; point it at a release or remove it", h.L.Current(), target, h.L.Releases())
		}
		h.CurrentID = id
	}
	return nil
}

// removeTempLinks deletes temporary `current` links a crashed switch left.
func (h *Host) removeTempLinks(ctx context.Context) {
	entries, err := h.T.ReadDir(ctx, h.L.Root)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempLinkPrefix) && e.Mode()&fs.ModeSymlink != 0 {
			h.T.Remove(ctx, path.Join(h.L.Root, e.Name()))
		}
	}
}
