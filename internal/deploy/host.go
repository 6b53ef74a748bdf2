package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/shell"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// Logger receives what a deploy has to say. The report package implements
// it for the Actions log and for a terminal.
type Logger interface {
	Infof(format string, args ...any)
	Warnf(format string, args ...any)
	// Writer returns a writer whose lines are shown as output of a remote
	// command on host.
	Writer(host string) io.Writer
	Progress(p Progress)
}

// Settings are the options the host steps need.
type Settings struct {
	SharedDirs         []string
	SharedFiles        []string
	WritableDirs       []string
	BeforeActivate     string
	BeforeActivateOnce string // run by Deploy on the first host only
	AfterActivate      string
	KeepReleases       int
	Revision           string
	Actor              string
	RunURL             string
	Runner             string        // the machine running the deploy, shown to lock waiters
	Parallel           int           // file operations in flight per host
	Lock               LockOptions   // lease and wait
	ProgressEvery      time.Duration // 0: no progress reports
	NoTar              bool          // never upload as a tar stream (tests of the SFTP path)
}

// Stats are one host's numbers for outputs and the summary.
type Stats struct {
	FilesUploaded int
	FilesReused   int
	BytesUploaded int64
	BytesReused   int64
}

// Host runs the steps of one deploy, rollback or unlock on one target.
// Its methods are called in order by Run; each step leaves `current`
// pointing at a complete release whatever happens.
type Host struct {
	Name string
	T    transport.Transport
	L    Layout
	S    *Settings
	Log  Logger

	CurrentID  string // what `current` pointed to when the host was opened
	ReleaseID  string // the release being deployed
	Stats      Stats
	SwitchedAt time.Time // when Activate's rename returned

	lock   locker
	gnuTar bool        // upload as one tar stream (see tarstream.go)
	spare  *spareShell // started with the lock, for the tar stream

	wantPlan       bool         // Open also scans the live release (for a deploy)
	snap           *snapshot    // what the lock holder printed, until Prepare has planned
	snapManifest   bool         // snap holds the live release's manifest (or its absence)
	prevLines      []lineDigest // the live release's stored manifest, line by line (manifestdelta.go)
	prefetched     bool         // prefetchedScan/prefetchErr hold the live release's listing
	prefetchedScan []transport.Stat
	prefetchErr    error
	rlog           *releaseLog
	existing       []string
	created        bool // releases/<ReleaseID> was made by this run
	switched       bool
	nextLink       string // temp symlink to the new release, renamed over current by Activate
	switchInUpload bool   // the upload's command also switches (see Deploy)
	recordInUpload bool   // ... and records the release's success
	recorded       bool   // the success record is in the log
	keep           bool   // Abort keeps the release's directory (it may have been live)
	shellRan       bool   // the lock command ran: the server has a shell
	manifest       *release.Manifest
	linked         map[string]transport.Stat // files sharing an inode with an older release
	mu             sync.Mutex                // guards rlog writes from concurrent phases
}

// errHooksNeedShell is returned when hooks are set but the server only speaks SFTP.
var errHooksNeedShell = errors.New("before-activate/after-activate need a shell on the server, but it only allows SFTP (ForceCommand internal-sftp): remove the hooks or allow a shell for this user")

// Open checks the deploy root, takes the lock and reads the state.
func (h *Host) Open(ctx context.Context, needHooks bool) error {
	if err := h.open(ctx, needHooks); err != nil {
		h.Close(context.WithoutCancel(ctx))
		return err
	}
	if !h.gnuTar {
		h.closeSpare()
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
		h.spare = startSpareShell(h.T)
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
	h.closeSpare()
	return false, nil
}

// probeUnanswered is how long the lock command may go unanswered before
// the transport is asked whether the server runs commands at all.
var probeUnanswered = 2 * time.Second

// canExec reports whether commands run on the server: known without asking
// once the lock command ran.
func (h *Host) canExec() bool { return h.shellRan || h.T.CanExec() }

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

// parallel runs fns at once and returns the first error.
func parallel(ctx context.Context, fns ...func(context.Context) error) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, fn := range fns {
		g.Go(func() error { return fn(ctx) })
	}
	return g.Wait()
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

// Existing lists the release directories found by Open.
func (h *Host) Existing() []string { return h.existing }

func (h *Host) appendLog(ctx context.Context, r Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rlog.append(ctx, h.T, h.L, r)
}

// Prepare puts release id on the host, complete and ready to switch to:
// upload (only what changed), shared links, writable dirs, before-activate.
func (h *Host) Prepare(ctx context.Context, m *release.Manifest, id string) error {
	h.ReleaseID = id
	dir := h.L.Release(id)
	if slices.Contains(h.existing, id) {
		return fmt.Errorf("release %s already exists on %s; a release id is used once (choose another release-id or let it default to the time)", id, h.Name)
	}
	// What the plan needs is read while the log is written.
	started := Record{ID: id, Status: StatusStarted, Revision: h.S.Revision, Actor: h.S.Actor, RunURL: h.S.RunURL, StartedAt: time.Now().UTC()}
	var (
		unseeded []string
		prev     *release.Manifest
		prevScan []transport.Stat
	)
	err := parallel(ctx,
		func(ctx context.Context) error {
			// Logged before the directory exists, so a crash at any later
			// point leaves a release the next deploy knows to be unfinished.
			// The tar command appends it itself (one round trip less).
			if h.gnuTar {
				h.mu.Lock()
				h.rlog.records = append(h.rlog.records, started)
				h.mu.Unlock()
				return nil
			}
			if err := h.appendLog(ctx, started); err != nil {
				return fmt.Errorf("write %s: %w", h.L.Log(), err)
			}
			return nil
		},
		func(ctx context.Context) error {
			var err error
			m, unseeded, err = h.withoutSeededShared(ctx, m)
			return err
		},
		func(ctx context.Context) error { prev = h.previousManifest(ctx); return nil },
		func(ctx context.Context) error { prevScan = h.previousScan(ctx); return nil },
	)
	if err != nil {
		return err
	}
	// The tar stream creates the directory itself (one round trip less);
	// the lock guarantees nobody else made it since Open listed releases/.
	if !h.gnuTar {
		if err := h.T.Mkdir(ctx, dir, 0o755); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("release %s already exists on %s; a release id is used once (choose another release-id or let it default to the time)", id, h.Name)
			}
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	h.created = true
	h.manifest = m
	plan := MakePlan(m, prev, prevScan)
	if h.snap != nil && h.snap.deltaTools && h.snap.manifest != nil {
		h.prevLines = h.snap.manifestLines
	}
	prev, prevScan, h.prefetchedScan, h.snap = nil, nil, nil, nil // large on big releases; the plan has what it needs
	plan.uploadOnly(unseeded)
	mtimes, err := h.upload(ctx, plan, dir, started)
	if err != nil {
		return err
	}
	if err := h.linkShared(ctx, m); err != nil {
		return err
	}
	if err := h.recordState(ctx, mtimes); err != nil {
		return err
	}
	if err := h.makeWritable(ctx); err != nil {
		return err
	}
	if h.S.BeforeActivate != "" {
		if err := h.runHook(ctx, "before-activate", h.S.BeforeActivate); err != nil {
			return err
		}
	}
	if err := h.protectOlderReleases(ctx); err != nil {
		return err
	}
	// The new link is made now (the tar stream brought it already), so the
	// switch itself is one rename: across a fleet every host flips within
	// about one round trip.
	if h.nextLink == "" && !h.switched {
		next := path.Join(h.L.Root, tempLinkPrefix+randomToken())
		if err := h.T.Symlink(ctx, currentTarget(id), next); err != nil {
			return fmt.Errorf("prepare the switch to %s: %w", id, err)
		}
		h.nextLink = next
	}
	return nil
}

// canSwitchInUpload reports whether nothing has to happen on this host
// between the upload and the switch: no hooks, no writable or shared
// paths, and the upload is one command (Deploy adds: one host).
func (h *Host) canSwitchInUpload() bool {
	_, flock := h.lock.(*sessionLock) // whose holder the command can check
	return flock && h.gnuTar && h.S.BeforeActivate == "" && h.S.BeforeActivateOnce == "" && !h.runsInRelease() && len(h.sharedPaths()) == 0
}

// RunOnce runs before-activate-once on this host (Deploy picks the first).
func (h *Host) RunOnce(ctx context.Context) error {
	return h.runHook(ctx, "before-activate-once", h.S.BeforeActivateOnce)
}

// sharedPaths lists shared-dirs, then shared-files.
func (h *Host) sharedPaths() []string {
	return append(append([]string{}, h.S.SharedDirs...), h.S.SharedFiles...)
}

// withoutSeededShared drops manifest entries at or below shared paths whose
// shared copy already exists: the release links to shared/ there, so
// uploading them would be wasted. It returns the shared paths still to seed.
func (h *Host) withoutSeededShared(ctx context.Context, m *release.Manifest) (*release.Manifest, []string, error) {
	shared := h.sharedPaths()
	if len(shared) == 0 {
		return m, nil, nil
	}
	var seeded, unseeded []string
	for i, p := range shared {
		if h.snap != nil && len(h.snap.sharedExists) == len(shared) {
			if h.snap.sharedExists[i] {
				seeded = append(seeded, p)
			} else {
				unseeded = append(unseeded, p)
			}
			continue
		}
		_, err := h.T.Lstat(ctx, path.Join(h.L.Shared(), p))
		switch {
		case err == nil:
			seeded = append(seeded, p)
		case errors.Is(err, fs.ErrNotExist):
			unseeded = append(unseeded, p)
		default:
			return nil, nil, fmt.Errorf("inspect shared %s: %w", p, err)
		}
	}
	out := &release.Manifest{Entries: make([]release.Entry, 0, len(m.Entries))}
	for _, e := range m.Entries {
		if !under(e.Path, seeded) {
			out.Entries = append(out.Entries, e)
		}
	}
	return out, unseeded, nil
}

// under reports whether p is one of roots or below one.
func under(p string, roots []string) bool {
	for _, r := range roots {
		if p == r || strings.HasPrefix(p, r+"/") {
			return true
		}
	}
	return false
}

// uploadOnly turns reuse into upload below paths that will be moved into
// shared/: a shared file must not share an inode with an older release.
func (p *Plan) uploadOnly(roots []string) {
	if len(roots) == 0 {
		return
	}
	kept := p.Reuse[:0]
	for _, r := range p.Reuse {
		if under(r.Entry.Path, roots) {
			p.Upload = append(p.Upload, r.Entry)
			p.UploadBytes += r.Entry.Size
			p.ReuseBytes -= r.Entry.Size
			continue
		}
		kept = append(kept, r)
	}
	p.Reuse = kept
}

// previousManifest is the stored manifest of the live release, or nil.
func (h *Host) previousManifest(ctx context.Context) *release.Manifest {
	if h.CurrentID == "" {
		return nil
	}
	if h.snap != nil && h.snapManifest {
		if h.snap.manifestErr != nil {
			h.Log.Warnf("%s: cannot read the manifest of release %s, uploading everything: %v", h.Name, h.CurrentID, h.snap.manifestErr)
		}
		return h.snap.manifest
	}
	data, err := h.T.ReadFile(ctx, h.L.Manifest(h.CurrentID))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			h.Log.Warnf("%s: cannot read the manifest of release %s, uploading everything: %v", h.Name, h.CurrentID, err)
		}
		return nil
	}
	m, err := release.DecodeManifest(strings.NewReader(string(data)))
	if err != nil {
		h.Log.Warnf("%s: the manifest of release %s is damaged, uploading everything: %v", h.Name, h.CurrentID, err)
		return nil
	}
	return m
}

func (h *Host) previousScan(ctx context.Context) []transport.Stat {
	if h.CurrentID == "" {
		return nil
	}
	s, err := h.prefetchedScan, h.prefetchErr
	if !h.prefetched {
		s, err = h.T.Scan(ctx, h.L.Release(h.CurrentID))
	}
	if err != nil {
		h.Log.Warnf("%s: cannot scan release %s, uploading everything: %v", h.Name, h.CurrentID, err)
		return nil
	}
	return s
}

// upload writes the plan into dir, as one tar stream where the server has
// GNU tar (returning the mtime each file got, by entry) or over pipelined
// SFTP (returning nil: a scan finds the mtimes).
func (h *Host) upload(ctx context.Context, plan *Plan, dir string, started Record) (map[*release.Entry]int64, error) {
	var st uploadStats
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if h.S.ProgressEvery > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(h.S.ProgressEvery)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					h.Log.Progress(Progress{Host: h.Name,
						FilesDone: st.files.Load() + st.reused.Load(), FilesTotal: int64(len(plan.Upload) + len(plan.Reuse)),
						BytesDone: st.bytes.Load(), BytesTotal: plan.UploadBytes, Elapsed: time.Since(start)})
				}
			}
		}()
	}
	prevDir := ""
	if h.CurrentID != "" {
		prevDir = h.L.Release(h.CurrentID)
	}
	parallel := h.S.Parallel
	if parallel < 1 {
		parallel = 64
	}
	var mtimes map[*release.Entry]int64
	var err error
	if h.gnuTar {
		// Every mtime is known before anything is sent, so the manifest and
		// the link for the switch travel in the same stream.
		now := time.Now().Truncate(time.Second) // what a tar header carries exactly
		mtimes = make(map[*release.Entry]int64, len(plan.Upload)+len(plan.Reuse))
		for _, e := range plan.Upload {
			mtimes[e] = now.UnixNano()
		}
		for _, r := range plan.Reuse {
			mtimes[r.Entry] = r.FromMTime
		}
		// The manifest goes last; it is encoded while the stream flows. With
		// a previous manifest on the server, only a delta against it goes.
		type encoded struct {
			data, delta []byte
			err         error
		}
		useDelta := h.prevLines != nil
		manifest := make(chan encoded, 1)
		go func() {
			var enc encoded
			enc.data, enc.err = h.encodeManifest(func(e *release.Entry) int64 { return mtimes[e] })
			if enc.err == nil && useDelta {
				var d *manifestDelta
				if d, enc.err = makeManifestDelta(enc.data, h.prevLines); enc.err == nil {
					enc.delta = d.file()
				}
			}
			manifest <- enc
		}()
		h.nextLink = path.Join(h.L.Root, tempLinkPrefix+randomToken())
		line, _ := json.Marshal(started)
		logFirst := shell.Command("printf", `%s\n`, string(line)) + " >> " + shell.Quote(h.L.Log()) + " || exit 1;"
		manifestExtra := tarExtra{Name: h.L.Manifest(h.ReleaseID), Load: func() ([]byte, error) { m := <-manifest; manifest <- m; return m.data, m.err }}
		after := ""
		if useDelta {
			delta := path.Join(h.L.Manifests(), h.ReleaseID+".delta")
			manifestExtra = tarExtra{Name: delta, Load: func() ([]byte, error) { m := <-manifest; manifest <- m; return m.delta, m.err }}
			after = applyDeltaCommand(h.L.Manifest(h.CurrentID), delta, h.L.Manifest(h.ReleaseID))
		}
		run := execRun(h.T)
		if h.spare != nil && h.spare.alive() {
			run, h.spare = h.spare.run, nil
		}
		switchCmd := ""
		if h.switchInUpload {
			switchCmd = h.switchCommand()
			if after != "" {
				after += "; "
			}
			after += switchCmd
		}
		err = plan.executeTar(ctx, run, dir, prevDir, now, logFirst, after, []tarExtra{
			manifestExtra,
			{Name: h.nextLink, Target: currentTarget(h.ReleaseID)},
		}, &st)
		exit := (*transport.ExitError)(nil)
		switch {
		case switchCmd == "":
		case err == nil:
			h.switchedNow()
			h.recorded = h.recordInUpload
		case errors.As(err, &exit):
			// The command ended on the server: it switched only if it says
			// so; otherwise it stopped before (tar, the manifest: 86) or at
			// the switch (87), which Activate then makes as it would have.
			switch exit.Status {
			case exitSwitchedNotRecorded:
				h.switchedNow()
				err = nil
			case exitNotSwitched:
				err = nil
			}
		case !st.streamed.Load():
			// The stream did not go out whole: tar cannot have finished,
			// so the command cannot have switched.
		default:
			// The answer was lost (a dropped connection, a cancelled job):
			// the command may have switched, or may still, while the lock
			// holder lives. Its release is complete by then, and it stays
			// (Abort keeps it: it may have served requests, or be about
			// to); where it is live and there is a previous release, that
			// goes back, so the deploy fails as a whole.
			h.keep = true
			live, lerr := h.liveID(context.WithoutCancel(ctx))
			switch {
			case lerr != nil || live != h.ReleaseID:
			case h.CurrentID == "":
				h.switchedNow()
				err = fmt.Errorf("%w; %s went live before that, and there is no previous release to go back to", err, h.ReleaseID)
			default:
				if rerr := h.switchTo(context.WithoutCancel(ctx), h.CurrentID); rerr != nil {
					h.switchedNow()
					err = fmt.Errorf("%w; it switched to %s before that, and switching back failed: %v", err, h.ReleaseID, rerr)
				} else {
					err = fmt.Errorf("%w; it had switched to %s, and current is back on %s", err, h.ReleaseID, h.CurrentID)
				}
			}
		}
		if errors.As(err, &exit) && exit.Status == exitManifestDelta {
			// Rebuilding the manifest from the delta went wrong (another
			// awk?): store it whole instead.
			m := <-manifest
			if err = h.T.WriteFile(ctx, h.L.Manifest(h.ReleaseID), m.data, 0o644); err != nil {
				err = fmt.Errorf("store manifest: %w", err)
			} else {
				h.Log.Infof("%s: stored the manifest whole (rebuilding it from the previous one on the server failed)", h.Name)
			}
		}
	} else {
		err = plan.execute(ctx, h.T, dir, prevDir, parallel, &st)
	}
	close(stop)
	wg.Wait()
	h.Stats = Stats{FilesUploaded: int(st.files.Load()), FilesReused: int(st.reused.Load()), BytesUploaded: st.bytes.Load(), BytesReused: st.reusedBytes.Load()}
	if err != nil {
		return nil, fmt.Errorf("upload to %s: %w", dir, err)
	}
	return mtimes, nil
}

// linkShared replaces shared paths in the release with relative symlinks
// into shared/, seeding shared/ from the release the first time.
func (h *Host) linkShared(ctx context.Context, m *release.Manifest) error {
	idx := m.Index()
	dir := h.L.Release(h.ReleaseID)
	link := func(rel string, wantDir bool) error {
		sharedPath := path.Join(h.L.Shared(), rel)
		inRelease := path.Join(dir, rel)
		info, err := h.T.Lstat(ctx, sharedPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := h.T.MkdirAll(ctx, path.Dir(sharedPath), 0o755); err != nil {
				return fmt.Errorf("create %s: %w", path.Dir(sharedPath), err)
			}
			e := idx[rel]
			switch {
			case e != nil && (e.Type == release.TypeDir) == wantDir && e.Type != release.TypeSymlink:
				if err := h.T.Rename(ctx, inRelease, sharedPath); err != nil {
					return fmt.Errorf("seed %s from the release: %w", sharedPath, err)
				}
				h.Log.Infof("%s: seeded shared/%s from the release", h.Name, rel)
			case wantDir:
				if err := h.T.MkdirAll(ctx, sharedPath, 0o755); err != nil {
					return fmt.Errorf("create %s: %w", sharedPath, err)
				}
			default:
				return fmt.Errorf("shared file %s does not exist on %s and the release has no %s to seed it from; put it there before deploying (a .env: copy your production .env to %s; every release links to it) — an empty file would hide the mistake", sharedPath, h.Name, rel, sharedPath)
			}
		case err != nil:
			return fmt.Errorf("inspect %s: %w", sharedPath, err)
		case wantDir && !info.IsDir():
			return fmt.Errorf("%s should be a directory (shared-dirs) but is not", sharedPath)
		case !wantDir && info.IsDir():
			return fmt.Errorf("%s should be a file (shared-files) but is a directory", sharedPath)
		}
		if err := h.T.RemoveAll(ctx, inRelease); err != nil {
			return fmt.Errorf("replace %s with a link: %w", inRelease, err)
		}
		if err := h.T.MkdirAll(ctx, path.Dir(inRelease), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", path.Dir(inRelease), err)
		}
		if err := h.T.Symlink(ctx, sharedLinkTarget(rel), inRelease); err != nil {
			return fmt.Errorf("link %s: %w", inRelease, err)
		}
		return nil
	}
	for _, d := range h.S.SharedDirs {
		if err := link(d, true); err != nil {
			return err
		}
	}
	for _, f := range h.S.SharedFiles {
		if err := link(f, false); err != nil {
			return err
		}
	}
	return nil
}

// recordState stores the manifest of the finished release with each file's
// server mtime (the next deploy reuses a file only if it is unchanged
// since), and remembers which files share an inode with an older release
// when something will run in the release that could write into them. When
// the upload could not report mtimes (SFTP), one scan provides them and
// also checks that every file arrived whole.
func (h *Host) recordState(ctx context.Context, mtimes map[*release.Entry]int64) error {
	dir := h.L.Release(h.ReleaseID)
	h.linked = map[string]transport.Stat{}
	if mtimes != nil && !h.runsInRelease() {
		return nil // the tar stream stored the manifest already
	}
	scan, err := h.T.Scan(ctx, dir)
	if err != nil {
		return fmt.Errorf("verify %s: %w", dir, err)
	}
	byPath := make(map[string]transport.Stat, len(scan))
	for _, s := range scan {
		byPath[s.Path] = s
		if s.Links > 1 && s.Inode != 0 && s.Mode.IsRegular() {
			h.linked[s.Path] = s
		}
	}
	if mtimes != nil {
		return nil
	}
	if err := waitPastMTimes(ctx, h.T, scan); err != nil {
		return err
	}
	for i := range h.manifest.Entries {
		e := &h.manifest.Entries[i]
		if under(e.Path, h.S.SharedDirs) || under(e.Path, h.S.SharedFiles) {
			continue
		}
		s, ok := byPath[e.Path]
		switch e.Type {
		case release.TypeFile:
			if !ok || !s.Mode.IsRegular() || s.Size != e.Size {
				return fmt.Errorf("verify %s: %s is missing or incomplete on the server (disk full?)", dir, e.Path)
			}
		case release.TypeDir:
			if !ok || !s.Mode.IsDir() {
				return fmt.Errorf("verify %s: directory %s is missing", dir, e.Path)
			}
		case release.TypeSymlink:
			if !ok || s.Mode&fs.ModeSymlink == 0 {
				return fmt.Errorf("verify %s: symlink %s is missing", dir, e.Path)
			}
		}
	}
	data, err := h.encodeManifest(func(e *release.Entry) int64 { return byPath[e.Path].ModTime.UnixNano() })
	if err != nil {
		return err
	}
	if err := h.T.WriteFile(ctx, h.L.Manifest(h.ReleaseID), data, 0o644); err != nil {
		return fmt.Errorf("store manifest: %w", err)
	}
	return nil
}

// encodeManifest encodes this host's manifest with each file's server
// mtime from mtime. The manifest may be shared with other hosts, so the
// mtimes are kept beside it, never written into it. Paths moved into
// shared/ get none: they are never reused from a release.
func (h *Host) encodeManifest(mtime func(e *release.Entry) int64) ([]byte, error) {
	recorded := make([]int64, len(h.manifest.Entries))
	for i := range h.manifest.Entries {
		e := &h.manifest.Entries[i]
		if e.Type == release.TypeFile && !under(e.Path, h.S.SharedDirs) && !under(e.Path, h.S.SharedFiles) {
			recorded[i] = mtime(e)
		}
	}
	var buf bytes.Buffer
	err := h.manifest.EncodeMTimes(&buf, recorded)
	return buf.Bytes(), err
}

// runsInRelease reports whether anything will run inside the new release
// (hooks, or chmod for writable-dirs) that could write into a reused file.
func (h *Host) runsInRelease() bool {
	return h.canExec() && (h.S.BeforeActivate != "" || h.S.AfterActivate != "" || len(h.S.WritableDirs) > 0)
}

// waitPastMTimes handles servers that report mtimes in whole seconds (SFTP
// v3): an edit in the same second as our write would keep size and mtime,
// so the deploy does not finish until the server's clock has left the
// second of the newest file. Any later edit then shows as a changed mtime.
func waitPastMTimes(ctx context.Context, t transport.Transport, scan []transport.Stat) error {
	var newest int64
	for _, s := range scan {
		if !s.Precise && s.Mode.IsRegular() {
			newest = max(newest, s.ModTime.Unix())
		}
	}
	if newest == 0 {
		return nil
	}
	for {
		now, err := t.Now(ctx)
		if err != nil {
			return fmt.Errorf("read the server clock: %w", err)
		}
		if now.Unix() > newest {
			return nil
		}
		wait := time.Until(time.Now().Truncate(time.Second).Add(time.Second)) + 20*time.Millisecond
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// makeWritable creates writable-dirs and opens them to the owner and group
// (recursively where a shell is available).
func (h *Host) makeWritable(ctx context.Context) error {
	if len(h.S.WritableDirs) == 0 {
		return nil
	}
	dir := h.L.Release(h.ReleaseID)
	var paths []string
	for _, w := range h.S.WritableDirs {
		p := path.Join(dir, w)
		if err := h.T.MkdirAll(ctx, p, 0o775); err != nil {
			return fmt.Errorf("create writable dir %s: %w", w, err)
		}
		paths = append(paths, p)
	}
	if h.canExec() {
		args := append([]string{"chmod", "-R", "ug+rwX", "--"}, paths...)
		var out strings.Builder
		if err := h.T.Exec(ctx, shell.Command(args...), nil, &out, &out); err != nil {
			return fmt.Errorf("make writable %s: %v: %s", strings.Join(h.S.WritableDirs, ", "), err, strings.TrimSpace(out.String()))
		}
		return nil
	}
	for i, p := range paths {
		info, err := h.T.Lstat(ctx, p)
		if err == nil && info.Mode()&fs.ModeSymlink != 0 {
			info, err = nil, nil // a shared dir: Chmod follows the link
		}
		mode := fs.FileMode(0o775)
		if info != nil {
			mode = info.Mode().Perm() | 0o770
		}
		if err := h.T.Chmod(ctx, p, mode); err != nil {
			return fmt.Errorf("make writable %s: %w", h.S.WritableDirs[i], err)
		}
	}
	return nil
}

// HookError is a hook that ran and failed.
type HookError struct {
	Hook string
	Host string
	Err  error
}

func (e *HookError) Error() string { return fmt.Sprintf("%s failed on %s: %v", e.Hook, e.Host, e.Err) }
func (e *HookError) Unwrap() error { return e.Err }

func (h *Host) runHook(ctx context.Context, name, script string) error {
	h.Log.Infof("%s: running %s in release %s", h.Name, name, h.ReleaseID)
	env := map[string]string{
		"RELEASE_ID":          h.ReleaseID,
		"RELEASE_PATH":        h.L.Release(h.ReleaseID),
		"DEPLOY_PATH":         h.L.Root,
		"PREVIOUS_RELEASE_ID": h.CurrentID,
		"REVISION":            h.S.Revision,
	}
	out := h.Log.Writer(h.Name)
	// The hook's watcher reads this until the hook has ended (see hookScript).
	stdin, keepOpen := io.Pipe()
	defer keepOpen.Close()
	err := h.T.Exec(ctx, hookScript(shell.Script(h.L.Release(h.ReleaseID), env, script)), stdin, out, out)
	if err != nil {
		return &HookError{Hook: name, Host: h.Name, Err: err}
	}
	return nil
}

// hookScript runs script so that it cannot outlive its deploy. Without
// this, a deploy killed or cut off mid-hook left the hook running on the
// server (sshd does not signal the commands of a session that ends): a
// before-activate migration went on unseen, next to the next deploy's.
//
// The hook runs in the background with stdin from /dev/null. The wrapper's
// stdin is a pipe that the deploy holds open while it waits; a watcher
// reads it. It ends early only when the session does (the deploy died, the
// connection dropped): then, if the hook still runs, the watcher sends
// SIGTERM to the whole process group (sshd makes each session its own; the
// local transport too), which ends the hook and what it started, and
// SIGKILL ten seconds later. A hook that finished keeps whatever it left
// running in the background on purpose.
func hookScript(script string) string {
	return "exec 3<&0\n" +
		"/bin/sh -c " + shell.Quote(script) + " </dev/null 3<&- &\n" +
		"hook=$!\n" +
		"{ cat <&3; if kill -0 \"$hook\"; then trap '' TERM; kill -TERM 0; sleep 10; kill -KILL 0; fi; } >/dev/null 2>&1 &\n" +
		"exec 3<&-\n" +
		"wait \"$hook\"\n"
}

// protectOlderReleases keeps older releases byte-for-byte as deployed.
// Reused files are hard links, so a hook or chmod that writes into one in
// place also changes the older release holding the same inode. Any such
// file (its inode's change time moved) is rewritten in every older release
// from the runner's copy, under a new inode; the new release keeps what the
// hook made of it.
func (h *Host) protectOlderReleases(ctx context.Context) error {
	if len(h.linked) == 0 || !h.canExec() {
		return nil // without a shell nothing runs in the release that could write in place
	}
	dir := h.L.Release(h.ReleaseID)
	scan, err := h.T.Scan(ctx, dir)
	if err != nil {
		return fmt.Errorf("check linked files in %s: %w", dir, err)
	}
	changed := map[uint64]*release.Entry{}
	idx := h.manifest.Index()
	for _, s := range scan {
		before, ok := h.linked[s.Path]
		if ok && s.Inode == before.Inode && !s.ChangeTime.Equal(before.ChangeTime) {
			if e := idx[s.Path]; e != nil {
				changed[s.Inode] = e
			}
		}
	}
	if len(changed) == 0 {
		return nil
	}
	// One find over releases/ names every older path holding those inodes.
	args := []string{"find", h.L.Releases(), "-path", dir, "-prune", "-o", "-type", "f", "("}
	first := true
	for ino := range changed {
		if !first {
			args = append(args, "-o")
		}
		args = append(args, "-inum", strconv.FormatUint(ino, 10))
		first = false
	}
	args = append(args, ")", "-printf", `%i %p\0`)
	var out, errOut strings.Builder
	if err := h.T.Exec(ctx, shell.Command(args...), nil, &out, &errOut); err != nil {
		return fmt.Errorf("find older copies of files changed in place: %v: %s", err, strings.TrimSpace(errOut.String()))
	}
	restored := 0
	for _, rec := range strings.Split(out.String(), "\x00") {
		inoText, p, ok := strings.Cut(rec, " ")
		if !ok {
			continue
		}
		ino, _ := strconv.ParseUint(inoText, 10, 64)
		e := changed[ino]
		if e == nil {
			continue
		}
		if err := h.rewrite(ctx, p, e); err != nil {
			return fmt.Errorf("restore %s in an older release after a hook changed it in place: %w", p, err)
		}
		restored++
	}
	h.Log.Warnf("%s: a hook changed %d reused file(s) in place; restored %d copies in older releases so they stay as deployed", h.Name, len(changed), restored)
	return nil
}

// rewrite replaces p with the runner's copy of e under a new inode.
func (h *Host) rewrite(ctx context.Context, p string, e *release.Entry) error {
	tmp := path.Join(path.Dir(p), ".atomic-deploy-restore-"+randomToken())
	r, err := e.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := h.T.Create(ctx, tmp, release.FileMode(e.Mode))
	if err != nil {
		return err
	}
	_, err = io.Copy(w, r)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = h.T.Rename(ctx, tmp, p)
	}
	if err != nil {
		h.T.Remove(ctx, tmp)
	}
	return err
}

// Activate switches `current` to the prepared release: one rename of the
// link made by Prepare.
func (h *Host) Activate(ctx context.Context) error {
	if h.switched {
		return nil // the upload's command switched
	}
	if err := h.lock.Held(ctx); err != nil {
		return err
	}
	if err := h.T.Rename(ctx, h.nextLink, h.L.Current()); err != nil {
		// The rename may have happened with only its answer lost (a
		// dropped connection, a cancelled mv): look, so that a release
		// that went live is rolled back, never removed by Abort.
		if live, lerr := h.liveID(context.WithoutCancel(ctx)); lerr == nil && live == h.ReleaseID {
			h.switchedNow()
		}
		return fmt.Errorf("switch to %s: %w", h.ReleaseID, err)
	}
	// rename(2) put the prepared link in place whole; no read-back needed.
	h.switchedNow()
	return nil
}

func (h *Host) switchedNow() {
	h.nextLink = ""
	h.switched = true
	h.SwitchedAt = time.Now()
}

// Exit statuses of the upload's command when it also switches.
const (
	exitNotSwitched         = 87 // the release is complete; mv failed
	exitSwitchedNotRecorded = 88 // live, but the log could not be appended to
)

// switchCommand is the switch as the last step of the upload's command
// (Deploy decides when nothing has to happen in between): once it is sure
// the lock is still ours, as Activate would be, the link the stream
// brought is renamed over `current` with mv -T, rename(2); with
// recordInUpload the success record follows.
func (h *Host) switchCommand() string {
	held := h.lock.(*sessionLock).stillHeld()
	cmd := "{ " + held + " && " + shell.Command("mv", "-T", "--", h.nextLink, h.L.Current()) + "; } || exit " + strconv.Itoa(exitNotSwitched)
	if h.recordInUpload {
		line, _ := json.Marshal(Record{ID: h.ReleaseID, Status: StatusSuccess, FinishedAt: time.Now().UTC()})
		cmd += "; " + shell.Command("printf", `%s\n`, string(line)) + " >> " + shell.Quote(h.L.Log()) + " || exit " + strconv.Itoa(exitSwitchedNotRecorded)
	}
	return cmd
}

// liveID reads which release `current` points at ("" when it does not exist).
func (h *Host) liveID(ctx context.Context) (string, error) {
	target, err := h.T.Readlink(ctx, h.L.Current())
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	id, _ := h.L.releaseIDFromTarget(target)
	return id, nil
}

// switchTo is the one place `current` changes: a new symlink under a
// temporary name is renamed over `current`. rename(2) replaces the link in
// one step, so every request sees the old release or the new one, never a
// missing link (ln -sfn unlinks first on many systems).
func (h *Host) switchTo(ctx context.Context, id string) error {
	info, err := h.T.Lstat(ctx, h.L.Release(id))
	switch {
	case errors.Is(err, fs.ErrNotExist), err == nil && !info.IsDir():
		return fmt.Errorf("release %s is not on %s", id, h.Name)
	case err != nil: // a lost connection is not a missing release
		return fmt.Errorf("switch to %s: %w", id, err)
	}
	tmp := path.Join(h.L.Root, tempLinkPrefix+randomToken())
	if err := h.T.Symlink(ctx, currentTarget(id), tmp); err != nil {
		return fmt.Errorf("switch to %s: %w", id, err)
	}
	if err := h.T.Rename(ctx, tmp, h.L.Current()); err != nil {
		h.T.Remove(ctx, tmp)
		return fmt.Errorf("switch to %s: %w", id, err)
	}
	got, err := h.T.Readlink(ctx, h.L.Current())
	if err != nil || got != currentTarget(id) {
		return fmt.Errorf("switch to %s: %s reads %q afterwards (%v)", id, h.L.Current(), got, err)
	}
	return nil
}

// AfterActivate runs the after-activate hook.
func (h *Host) AfterActivate(ctx context.Context) error {
	if h.S.AfterActivate == "" {
		return nil
	}
	return h.runHook(ctx, "after-activate", h.S.AfterActivate)
}

// Revert puts `current` back on the release that was live before and
// marks the new release failed. Without a previous release it says so
// and leaves `current` as it is.
func (h *Host) Revert(ctx context.Context, reason string) error {
	if !h.switched {
		return nil
	}
	if h.CurrentID == "" {
		return fmt.Errorf("no previous release on %s to roll back to; %s stays live", h.Name, h.ReleaseID)
	}
	if err := h.switchTo(ctx, h.CurrentID); err != nil {
		return err
	}
	h.switched = false
	return h.appendLog(ctx, Record{ID: h.ReleaseID, Status: StatusFailed, FinishedAt: time.Now().UTC(), Message: reason})
}

// Abort undoes a release that never went live: its directory and manifest
// are removed, it is logged as failed, and the lock is released.
func (h *Host) Abort(ctx context.Context, reason string) error {
	var errs []error
	if h.nextLink != "" {
		h.T.Remove(ctx, h.nextLink)
		h.nextLink = ""
	}
	if h.created && !h.switched {
		// Never remove what `current` points at, or may point at (it
		// cannot be read): the next deploy prunes it once it is not live.
		if live, err := h.liveID(ctx); err != nil || live == h.ReleaseID {
			why := "current points at it"
			if err != nil {
				why = fmt.Sprintf("cannot tell whether current points at it: %v", err)
			}
			errs = append(errs, fmt.Errorf("release %s left in place: %s", h.ReleaseID, why))
			return errors.Join(append(errs, h.unlock(ctx))...)
		}
		if !h.keep {
			if err := h.T.RemoveAll(ctx, h.L.Release(h.ReleaseID)); err != nil {
				errs = append(errs, fmt.Errorf("remove unfinished release %s: %w", h.ReleaseID, err))
			}
			for _, p := range []string{h.L.Manifest(h.ReleaseID), path.Join(h.L.Manifests(), h.ReleaseID+".delta")} {
				h.T.Remove(ctx, p)
			}
		}
		if h.rlog != nil {
			if err := h.appendLog(ctx, Record{ID: h.ReleaseID, Status: StatusFailed, FinishedAt: time.Now().UTC(), Message: reason}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := h.unlock(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Finish records success, prunes old releases and releases the lock.
func (h *Host) Finish(ctx context.Context) error {
	h.CurrentID, h.switched = h.ReleaseID, false
	// Decided before the log changes; deleting and logging then go together.
	old := h.pruneCandidates()
	done := Record{ID: h.ReleaseID, Status: StatusSuccess, FinishedAt: time.Now().UTC()}
	if sl, ok := h.lock.(*sessionLock); ok {
		// The lock holder appends the record and deletes the old releases
		// as it lets go: no round trips for them, and both are done before
		// the next deploy can take the lock.
		var byHolder, byRequests []string
		for _, id := range old {
			if safePathElement(id) {
				byHolder = append(byHolder, id)
			} else {
				byRequests = append(byRequests, id)
			}
		}
		h.prune(ctx, byRequests)
		h.lock = nil
		var line []byte
		if !h.recorded {
			line, _ = json.Marshal(done)
		}
		if line == nil && len(byHolder) == 0 {
			// Nothing left to confirm: the holder ends when its input
			// does, and the lock goes with it.
			sl.releaseUnconfirmed()
			return nil
		}
		said, err := sl.releaseWithLog(ctx, line, byHolder)
		if err != nil {
			h.Log.Warnf("%s: could not write the releases log: %v", h.Name, err)
		}
		for _, msg := range strings.Split(said, "\n") {
			if msg != "" {
				h.Log.Warnf("%s: %s", h.Name, msg)
			}
		}
		return nil
	}
	parallel(ctx,
		func(ctx context.Context) error {
			if err := h.appendLog(ctx, done); err != nil {
				h.Log.Warnf("%s: could not write the releases log: %v", h.Name, err)
			}
			return nil
		},
		func(ctx context.Context) error { h.prune(ctx, old); return nil },
	)
	return h.unlock(ctx)
}

// Close releases the lock if it is still held (cleanup after any failure).
func (h *Host) Close(ctx context.Context) error {
	h.closeSpare()
	return h.unlock(ctx)
}

func (h *Host) closeSpare() {
	if h.spare != nil {
		h.spare.close()
		h.spare = nil
	}
}

func (h *Host) unlock(ctx context.Context) error {
	if h.lock == nil {
		return nil
	}
	err := h.lock.Release(ctx)
	h.lock = nil
	return err
}

// pruneCandidates lists the releases beyond keep-releases. Kept: the
// newest successful releases (the one just deployed among them), the live
// one and the one a rollback would go to. Failed, rolled-back and
// abandoned releases never count. The lock is held, so the directories
// found by Open plus the new release are all there is.
func (h *Host) pruneCandidates() []string {
	names := append(slices.Clone(h.existing), h.ReleaseID)
	list := releasesFromNames(names, h.rlog, h.CurrentID)
	for i := range list {
		if list[i].ID == h.ReleaseID {
			list[i].Status = StatusSuccess
		}
	}
	keep := map[string]bool{h.CurrentID: true}
	if t := rollbackTarget(list, h.CurrentID); t != "" {
		keep[t] = true
	}
	kept := 0
	for i := len(list) - 1; i >= 0 && kept < h.S.KeepReleases; i-- {
		if list[i].Status == StatusSuccess {
			keep[list[i].ID] = true
			kept++
		}
	}
	var old []string
	for _, r := range list {
		if !keep[r.ID] {
			old = append(old, r.ID)
		}
	}
	return old
}

// prune deletes old releases. Trouble deleting is a warning: the new
// release is live by now.
//
// A release is first renamed out of releases/ into .atomic-deploy/trash,
// so it is either whole and listed or gone: one that cannot be deleted
// completely (a read-only directory, another user's files) never stays
// half deleted where a rollback could switch to it. One that cannot be
// moved stays as it is, with a warning; what the trash keeps is deleted
// again by the next prune.
func (h *Host) prune(ctx context.Context, ids []string) {
	if len(ids) == 0 {
		return
	}
	trash := h.L.Trash()
	if err := h.T.MkdirAll(ctx, trash, 0o755); err != nil {
		h.Log.Warnf("%s: could not remove old releases %s: %v", h.Name, strings.Join(ids, ", "), err)
		return
	}
	var leftovers []string
	if entries, err := h.T.ReadDir(ctx, trash); err == nil {
		for _, e := range entries {
			leftovers = append(leftovers, path.Join(trash, e.Name()))
		}
	}
	forEach(ctx, 4, leftovers, func(ctx context.Context, p string) error {
		h.T.RemoveAll(ctx, p) // reported when it was put there
		return nil
	})
	forEach(ctx, 4, ids, func(ctx context.Context, id string) error {
		aside := path.Join(trash, id+"-"+randomToken())
		if err := h.T.Rename(ctx, h.L.Release(id), aside); err != nil {
			h.Log.Warnf("%s: could not remove old release %s; it stays as it is: %v", h.Name, id, err)
			return nil
		}
		h.T.Remove(ctx, h.L.Manifest(id))
		if err := h.T.RemoveAll(ctx, aside); err != nil {
			h.Log.Warnf("%s: old release %s is out of releases/, but %s could not be deleted completely (the next deploy tries again): %v", h.Name, id, aside, err)
		}
		return nil
	})
}

// safePathElement reports whether name can be handed to the lock holder's
// shell as one line and used as one path element.
func safePathElement(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\n\x00")
}

// rollbackTarget is the newest successful release older than current.
func rollbackTarget(list []ReleaseInfo, currentID string) string {
	for i := len(list) - 1; i >= 0; i-- {
		r := list[i]
		if r.ID < currentID && r.Status == StatusSuccess {
			return r.ID
		}
	}
	return ""
}

// ResolveRollback checks a rollback target: id, or the previous successful
// release when id is empty. It changes nothing.
func (h *Host) ResolveRollback(ctx context.Context, id string) (string, error) {
	list, err := listReleases(ctx, h.T, h.L, h.rlog, h.CurrentID)
	if err != nil {
		return "", err
	}
	if id == "" {
		if id = rollbackTarget(list, h.CurrentID); id == "" {
			return "", fmt.Errorf("no earlier successful release on %s to roll back to (live: %s)", h.Name, orNone(h.CurrentID))
		}
		return id, nil
	}
	for _, r := range list {
		if r.ID != id {
			continue
		}
		if r.Status == StatusFailed || r.Status == StatusStarted {
			return "", fmt.Errorf("release %s on %s is marked %s and cannot be a rollback target", id, h.Name, r.Status)
		}
		return id, nil
	}
	return "", fmt.Errorf("release %s does not exist on %s", id, h.Name)
}

// RollbackTo switches `current` to a target checked by ResolveRollback and
// logs the change: the release that was live is marked rolled-back, so an
// automatic rollback never picks it again.
func (h *Host) RollbackTo(ctx context.Context, id string) error {
	h.ReleaseID = id
	if id == h.CurrentID {
		return nil
	}
	if err := h.switchTo(ctx, id); err != nil {
		return err
	}
	h.switched = true
	now := time.Now().UTC()
	prev := h.CurrentID
	if prev != "" {
		if err := h.appendLog(ctx, Record{ID: prev, Status: StatusRolledBack, FinishedAt: now, Message: "rolled back to " + id}); err != nil {
			h.Log.Warnf("%s: could not write the releases log: %v", h.Name, err)
		}
	}
	if err := h.appendLog(ctx, Record{ID: id, Status: StatusSuccess, FinishedAt: now, Message: "rollback from " + orNone(prev), Actor: h.S.Actor, RunURL: h.S.RunURL}); err != nil {
		h.Log.Warnf("%s: could not write the releases log: %v", h.Name, err)
	}
	return nil
}

// Releases lists the releases on the host (oldest first).
func (h *Host) Releases(ctx context.Context) ([]ReleaseInfo, error) {
	return listReleases(ctx, h.T, h.L, h.rlog, h.CurrentID)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
