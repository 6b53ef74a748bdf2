package deploy

import (
	"context"
	"io"
	"strings"
	"sync"
	"time"

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
	OnFailure          string // run in the live release of every host when a deploy fails (Deploy)
	// AfterSwitch runs on each host right after every switch of current:
	// a deploy's, an automatic rollback's, a rollback's (reload php-fpm so
	// OPcache forgets the release that is no longer live).
	AfterSwitch Hook
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
	Reuse         string        // how a file of the live release is reused: ReuseCopy ("") or ReuseHardlink
}

// How an unchanged file of the live release becomes part of the new one.
const (
	// ReuseCopy makes a private copy on the server: no two releases share
	// an inode, so nothing that writes into one release changes another.
	ReuseCopy = "copy"
	// ReuseHardlink links it: faster where the filesystem has no reflinks,
	// but a hook or the app writing into a file in place changes every
	// release holding it.
	ReuseHardlink = "hardlink"
)

// Hook is a script run on the servers, and what the log and errors call it.
type Hook struct {
	Name, Script string
}

// Stats are one host's numbers for outputs and the summary.
type Stats struct {
	FilesUploaded int
	FilesReused   int
	BytesUploaded int64
	BytesReused   int64
}

// Host runs the steps of one deploy, rollback or unlock on one target:
// Open, Prepare, Activate, AfterActivate, Finish (or Revert, Abort, Close
// when something fails), called by the fleet functions (fleet_*.go). Each
// step leaves `current` pointing at a complete release whatever happens.
// What a step knows is in three groups with names: what the server can do
// (caps), what Open read of the deploy root (root), and what this run has
// done to its release (state).
type Host struct {
	Name string
	T    transport.Transport
	L    Layout
	S    *Settings
	Log  Logger

	ReleaseID  string // the release being deployed, or rolled back to
	Stats      Stats
	SwitchedAt time.Time // when the switch to ReleaseID returned

	caps   serverCaps
	root   rootState
	lock   hostLock
	upload uploader // chosen by Open from caps

	state     releaseState
	inline    inlineSwitch // what the last command of Prepare does after its work (Deploy decides)
	nextLink  string       // temporary link to the new release, renamed over current by Activate
	confirmed bool         // ConfirmSwitch found the lock held and nextLink in place
	sealed    bool         // the release's seal is stored (seal.go)
	resealed  bool         // before-activate-once runs here in this run and seals the release: Prepare need not (Deploy sets it)
	linkless  bool         // Prepare makes no link for a switch (mode: prepare)
	phases    []Phase      // what was done, and when (Result.Phases)

	preparedTTL time.Duration     // how long a release this run prepares is kept from pruning
	uploadMTime time.Time         // the mtime of the files the tar stream carries (zero: now)
	adopted     Record            // the prepared release's record (AdoptPrepared)
	rolledBack  []Record          // what RollbackTo logs as the lock is let go (FinishRollback)
	manifest    *release.Manifest // the new release's, without what shared/ holds
	mu          sync.Mutex        // guards root.log from steps running at once
}

// serverCaps is what the server can do, as far as a deploy cares. Open
// learns it from the lock holder's printout, or asks.
type serverCaps struct {
	shell      bool // commands run
	gnuTar     bool // the upload goes as one tar stream (upload_tar.go)
	gnuCp      bool // ... which copies reused files with cp --parents --reflink
	deltaTools bool // awk and sha256sum: the manifest goes as a delta (manifestdelta.go)
}

// releaseState is what this run has done to releases/<ReleaseID>; Abort,
// Revert and Finish act on it.
type releaseState int

const (
	notCreated releaseState = iota // nothing of it is on the server
	prepared                       // complete, made by an earlier run (mode: prepare): never removed by this one
	created                        // its directory exists, maybe not whole; never live: Abort removes it
	maybeLive                      // it is, may be, or was live (an answer was lost, or it was switched back): kept
	live                           // current points at it
	recorded                       // live, and its success is in the releases log
)

// switched reports whether current points at the release.
func (s releaseState) switched() bool { return s >= live }

// inlineSwitch is what the last command of Prepare (the upload's, or
// before-activate's when there is one) does after its work.
type inlineSwitch int

const (
	switchLater     inlineSwitch = iota // nothing: Activate renames
	switchInline                        // it renames the new link over current
	switchAndRecord                     // ... and appends the success record
)

// canExec reports whether commands run on the server.
func (h *Host) canExec() bool { return h.caps.shell }

// Existing lists the release directories found by Open.
func (h *Host) Existing() []string { return h.root.releases }

func (h *Host) appendLog(ctx context.Context, r Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.root.log.append(ctx, h.T, h.L, r)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// copiesAhead says whether the lock holder should copy the live release
// before upload.sh would (while the client plans, or after the deploy
// before, the spare): where reused files become private copies made by
// upload.sh, which then takes that copy instead of copying them itself.
func (s *Settings) copiesAhead() bool { return s.Reuse != ReuseHardlink && !s.NoTar }

// needShell names the settings that need a shell on the server ("" for
// none): a deploy over SFTP alone is refused before it touches anything.
func (s *Settings) needShell() string {
	var names []string
	for _, h := range []Hook{{"before-activate", s.BeforeActivate}, {"before-activate-once", s.BeforeActivateOnce},
		{"after-activate", s.AfterActivate}, {"on-failure", s.OnFailure}, s.AfterSwitch} {
		if h.Script != "" {
			names = append(names, h.Name)
		}
	}
	if s.WritableMode != "" && s.WritableMode != WritableChmod {
		names = append(names, "writable-mode "+s.WritableMode+" (setfacl or chgrp)")
	}
	return strings.Join(names, ", ")
}

// timed records phase name from now until the returned func is called.
func (h *Host) timed(name string) (end func()) {
	start := time.Now()
	return func() { h.phases = append(h.phases, Phase{Name: name, Start: start, End: time.Now()}) }
}

// warmAhead has the transport warm a shell for the next command as soon
// as this one has started (it reads its input), when more says another
// follows: that one then starts with no session to open (two round trips).
func (h *Host) warmAhead(stdin io.Reader, more bool) io.Reader {
	if !more || !h.canExec() {
		return stdin
	}
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	return &onFirstRead{r: stdin, fn: h.T.Warm}
}

// onFirstRead calls fn once, when it is first read from.
type onFirstRead struct {
	r    io.Reader
	fn   func()
	once sync.Once
}

func (o *onFirstRead) Read(p []byte) (int, error) {
	o.once.Do(o.fn)
	return o.r.Read(p)
}

// revision is the revision of this run's release: the one it was prepared
// with, for a prepared release activated later (by another run, from
// another commit), else this run's.
func (h *Host) revision() string {
	if h.adopted.Revision != "" {
		return h.adopted.Revision
	}
	return h.S.Revision
}
