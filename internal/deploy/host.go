package deploy

import (
	"context"
	"io"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
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
	WritableMode       string // how writable-dirs are opened: chmod (""), acl or chgrp (writable.go)
	WritableUser       string // the web server's user (acl) or group (chgrp)
	BeforeActivate     string
	BeforeActivateOnce string // run by Deploy on the first host only
	AfterActivate      string
	// HookEnv is set in every hook's environment (the env and secret-env
	// inputs), next to RELEASE_ID and the others, which it cannot replace:
	// config refuses those names.
	HookEnv       map[string]string
	HookTimeout   time.Duration // a hook running longer is ended; 0: no limit
	KeepReleases  int
	Revision      string
	Actor         string
	RunURL        string
	Runner        string        // the machine running the deploy, shown to lock waiters
	Parallel      int           // file operations in flight per host
	Lock          LockOptions   // lease and wait
	ProgressEvery time.Duration // 0: no progress reports
	NoTar         bool          // never upload as a tar stream (tests of the SFTP path)
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

	lock   hostLock
	gnuTar bool // upload as one tar stream (see tarstream.go)

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

// canExec reports whether commands run on the server: known without asking
// once the lock command ran.
func (h *Host) canExec() bool { return h.shellRan || h.T.CanExec() }

// parallel runs fns at once and returns the first error.
func parallel(ctx context.Context, fns ...func(context.Context) error) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, fn := range fns {
		g.Go(func() error { return fn(ctx) })
	}
	return g.Wait()
}

// Existing lists the release directories found by Open.
func (h *Host) Existing() []string { return h.existing }

func (h *Host) appendLog(ctx context.Context, r Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rlog.append(ctx, h.T, h.L, r)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
