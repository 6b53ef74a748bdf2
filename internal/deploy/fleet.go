package deploy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"
	"golang.org/x/sync/errgroup"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/atomic-deploy/atomic-deploy/internal/words"
)

// Target is one host to deploy to, and how to reach it.
type Target struct {
	Name string
	Dial func(ctx context.Context) (transport.Transport, error)
}

// Options configure a run over one or many hosts.
type Options struct {
	Targets      []Target
	Root         string
	Settings     *Settings
	Log          Logger
	Groups       func(title string) (end func()) // log sections; may be nil
	Concurrency  int                             // hosts worked on at once
	AutoRollback bool
	ReleaseID    string           // fixed release id, or "" for the current time
	Force        bool             // roll back to a release the log has no record of
	Now          func() time.Time // clock for release ids
	// Verify runs after the hosts of a step of the rollout (every host,
	// with no rollout) switched and ran after-activate: the health check,
	// given the names of those hosts. An error rolls every switched host
	// back when AutoRollback.
	Verify func(ctx context.Context, releaseID, previousID string, hosts []string) error
	// Rollout is how the switch moves across the hosts.
	Rollout Rollout
	// PreparedTTL keeps a release Prepare makes from being pruned for that
	// long (its record says until when); 0 means DefaultPreparedTTL.
	PreparedTTL time.Duration
	// ManifestReady, when set, is waited for after every host is connected
	// and locked and before anything is planned: the runner hashes the
	// release while it connects (see release.Describe).
	ManifestReady func(ctx context.Context) error
}

// Host outcomes in a Result.
const (
	OutcomeDeployed   = "deployed"
	OutcomeRolledBack = "rolled back"
	OutcomeFailed     = "failed"
	OutcomeNotRun     = "not switched"
	OutcomeUnlocked   = "unlocked"
	OutcomePrepared   = "prepared"
	OutcomeNoLock     = "no lock"
)

// HostResult is what happened on one host.
type HostResult struct {
	Name       string
	ReleaseID  string
	PreviousID string
	Stats
	Duration   time.Duration
	SwitchedAt time.Time
	Outcome    string
	Err        error
	// Live is the release current points at when the run ended, with the
	// revision recorded for it; LiveKnown is false where that could not be
	// told (the host was never reached, or current could not be read).
	Live, LiveRevision string
	LiveKnown          bool
	// Batch is the step of the rollout the host switched in (1 the first:
	// the canaries, or the first batch); 0 when it did not switch.
	Batch int
	// Phases are what the run did on the host, and when, in order.
	Phases []Phase
}

// Phase is a span of a run on one host.
type Phase struct {
	Name       string // one of the Phase* names
	Start, End time.Time
}

// The phases of a run on one host.
const (
	PhaseConnect = "connect" // dial, lock, read the deploy root
	PhaseUpload  = "upload"  // the release's files, shared paths, writable dirs
	PhaseHooks   = "hooks"   // before-activate, before-activate-once
	PhaseSwitch  = "switch"  // the rename of current
	PhaseCheck   = "check"   // after-activate and the health check
)

// Rollout says how the switch moves across the hosts (Deploy, Activate).
// The zero value switches every host at once, all or none.
type Rollout struct {
	// Canary hosts (the first ones) are switched and checked first; the
	// others follow together once they passed. A failure puts the
	// canaries back, and no other host switched.
	Canary int
	// BatchSize hosts are switched and checked at a time, batch after
	// batch; a failure puts every host switched so far back, the last
	// batch first.
	BatchSize int
}

// Result is what a run did, for outputs and the summary.
type Result struct {
	Mode       string
	ReleaseID  string
	PreviousID string
	RolledBack bool
	Hosts      []HostResult
	Duration   time.Duration
}

// Unchanged says that the run found its release live on every host
// already (a rollback to the live release, an activate run again), so it
// switched nothing.
func (r *Result) Unchanged() bool {
	for _, h := range r.Hosts {
		if h.ReleaseID == "" || h.ReleaseID != h.PreviousID {
			return false
		}
	}
	return len(r.Hosts) > 0
}

// Totals sums the per-host statistics.
func (r *Result) Totals() Stats {
	var s Stats
	for _, h := range r.Hosts {
		s.FilesUploaded += h.FilesUploaded
		s.FilesReused += h.FilesReused
		s.BytesUploaded += h.BytesUploaded
		s.BytesReused += h.BytesReused
	}
	return s
}

type runner struct {
	o       Options
	hosts   []*Host
	results []HostResult
	started []time.Time
	// uploadMTime is what every file this run uploads gets as its mtime:
	// one time for all hosts, so that their manifests come out alike and
	// are encoded and read once for the fleet (memo.go).
	uploadMTime time.Time
}

func newRunner(o Options) *runner {
	if o.Concurrency < 1 {
		o.Concurrency = 10
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PreparedTTL == 0 {
		o.PreparedTTL = DefaultPreparedTTL
	}
	if o.Groups == nil {
		o.Groups = func(string) func() { return func() {} }
	}
	r := &runner{o: o, hosts: make([]*Host, len(o.Targets)), results: make([]HostResult, len(o.Targets)), started: make([]time.Time, len(o.Targets)),
		uploadMTime: time.Now().Truncate(time.Second)} // what a tar header carries exactly
	for i, t := range o.Targets {
		r.results[i] = HostResult{Name: t.Name, Outcome: OutcomeNotRun}
	}
	return r
}

// each runs fn for every target, at most limit at a time, and collects
// the errors by host: one host's failure stops no other.
func (r *runner) each(ctx context.Context, limit int, fn func(ctx context.Context, i int) error) error {
	return r.eachOf(ctx, limit, indexes(r.o.Targets), fn)
}

// eachOf is each for the targets at the indexes given.
func (r *runner) eachOf(ctx context.Context, limit int, targets []int, fn func(ctx context.Context, i int) error) error {
	var (
		mu   sync.Mutex
		errs *multierror.Error
		g    errgroup.Group
	)
	g.SetLimit(max(limit, 1))
	for _, i := range targets {
		g.Go(func() error {
			if err := fn(ctx, i); err != nil {
				mu.Lock()
				if r.results[i].Err == nil {
					r.results[i].Err = err
				}
				errs = multierror.Append(errs, fmt.Errorf("%s: %w", r.o.Targets[i].Name, err))
				mu.Unlock()
			}
			return nil
		})
	}
	g.Wait()
	if errs == nil {
		return nil
	}
	sort.Slice(errs.Errors, func(i, j int) bool { return errs.Errors[i].Error() < errs.Errors[j].Error() })
	errs.ErrorFormat = hostErrors
	return errs
}

// names are the targets' names, in order.
func (r *runner) names() []string {
	names := make([]string, len(r.o.Targets))
	for i, t := range r.o.Targets {
		names[i] = t.Name
	}
	return names
}

func hostErrors(es []error) string {
	if len(es) == 1 {
		return es[0].Error()
	}
	s := fmt.Sprintf("%d hosts failed:", len(es))
	for _, e := range es {
		s += "\n  * " + e.Error()
	}
	return s
}

// open dials and opens every host; on any failure every opened host is
// closed again and nothing has changed.
func (r *runner) open(ctx context.Context, w rootWant, needShell string) error {
	end := r.o.Groups("Connect and lock (" + words.Count(int64(len(r.o.Targets)), "host") + ")")
	defer end()
	err := r.each(ctx, r.o.Concurrency, func(ctx context.Context, i int) error {
		r.started[i] = time.Now()
		t, err := r.o.Targets[i].Dial(ctx)
		if err != nil {
			return err
		}
		h := &Host{Name: r.o.Targets[i].Name, T: t, L: Layout{Root: r.o.Root}, S: r.o.Settings, Log: r.o.Log, preparedTTL: r.o.PreparedTTL, uploadMTime: r.uploadMTime}
		if err := h.Open(ctx, w, needShell); err != nil {
			t.Close()
			return err
		}
		h.phases = append(h.phases, Phase{Name: PhaseConnect, Start: r.started[i], End: time.Now()})
		r.hosts[i] = h
		r.results[i].PreviousID = h.root.currentID
		r.o.Log.Infof("%s: connected, locked %s (live release: %s)", h.Name, r.o.Root, orNone(h.root.currentID))
		return nil
	})
	if err != nil {
		r.closeAll(context.WithoutCancel(ctx))
	}
	return err
}

// closeAll unlocks and disconnects every open host, all at once: each
// waits for its server's answers.
func (r *runner) closeAll(ctx context.Context) {
	r.each(ctx, len(r.hosts), func(ctx context.Context, i int) error {
		h := r.hosts[i]
		if h == nil {
			return nil
		}
		r.results[i].Live, r.results[i].LiveKnown = h.liveAtEnd(ctx)
		r.results[i].Phases = h.phases
		r.results[i].LiveRevision = h.root.log.latest()[r.results[i].Live].Revision
		if err := h.Close(ctx); err != nil {
			r.o.Log.Warnf("%s: %v", h.Name, err)
		}
		h.T.Close()
		if !r.started[i].IsZero() {
			r.results[i].Duration = time.Since(r.started[i])
		}
		return nil
	})
	clear(r.hosts)
}

func (r *runner) result(mode, id string, start time.Time) *Result {
	res := &Result{Mode: mode, ReleaseID: id, Hosts: r.results, Duration: time.Since(start)}
	for _, h := range r.results {
		if h.PreviousID != "" {
			res.PreviousID = h.PreviousID
			break
		}
	}
	return res
}

// chooseID picks the release id: the one given, or the current UTC time,
// moved past every release already on any host so ids stay unique and
// sortable even when two deploys start within one second.
func (r *runner) chooseID() string {
	if r.o.ReleaseID != "" {
		return r.o.ReleaseID
	}
	t := r.o.Now().UTC().Truncate(time.Second)
	for _, h := range r.hosts {
		for _, id := range h.Existing() {
			if p, err := time.Parse(release.IDLayout, id); err == nil && !p.Before(t) {
				t = p.Add(time.Second)
			}
		}
	}
	return t.Format(release.IDLayout)
}

// switchedBack reads current on the hosts among (nil: every host) after a
// failed switch and says whether each is back on the release it had; a
// host still on the new one, or whose connection died (it may have
// switched before it did), is named.
func (r *runner) switchedBack(ctx context.Context, among []int) string {
	if among == nil {
		among = make([]int, len(r.hosts))
		for i := range among {
			among[i] = i
		}
	}
	var unsure, onIt []string
	for _, i := range among {
		h := r.hosts[i]
		switch live, err := h.liveID(ctx); {
		case err != nil:
			unsure = append(unsure, h.Name)
		case live == h.ReleaseID && live != r.results[i].PreviousID:
			onIt = append(onIt, h.Name)
		case live != r.results[i].PreviousID:
			unsure = append(unsure, h.Name)
		}
	}
	var said []string
	if len(onIt) > 0 {
		said = append(said, fmt.Sprintf("current points at it on %s (it could not be put back, or no release was live before); it is complete", strings.Join(onIt, ", ")))
	}
	if len(unsure) > 0 {
		said = append(said, fmt.Sprintf("%s may be on it or on the previous release (current could not be read back or put back); "+
			"both are complete, and the next deploy or a rollback settles it", strings.Join(unsure, ", ")))
	}
	if len(said) == 0 {
		return "every host is on its previous release"
	}
	return strings.Join(said, "; ")
}

// revertAll switches the switched hosts of targets back; the outcome says
// which.
func (r *runner) revertAll(ctx context.Context, targets []int, reason string) error {
	return r.eachOf(ctx, len(targets), targets, func(ctx context.Context, i int) error {
		h := r.hosts[i]
		if h == nil || !h.state.switched() {
			return nil
		}
		if err := h.Revert(ctx, reason); err != nil {
			r.results[i].Outcome = OutcomeFailed
			return err
		}
		r.results[i].Outcome = OutcomeRolledBack
		if err := h.AfterSwitch(ctx); err != nil {
			r.o.Log.Warnf("%s: back on the previous release, but %v", h.Name, err)
		}
		return nil
	})
}

// abortAll removes the release from hosts where it never went live.
func (r *runner) abortAll(ctx context.Context, reason string) {
	r.each(ctx, r.o.Concurrency, func(ctx context.Context, i int) error {
		h := r.hosts[i]
		if h == nil || h.state.switched() || r.results[i].Outcome == OutcomeRolledBack {
			return nil // live, or put back (and logged failed) already
		}
		if r.results[i].Outcome == OutcomeNotRun && r.results[i].Err != nil {
			r.results[i].Outcome = OutcomeFailed
		}
		if err := h.Abort(ctx, reason); err != nil {
			r.o.Log.Warnf("%s: cleaning up: %v", h.Name, err)
		}
		return nil
	})
}

// ErrLocked reports whether err is a lock held by someone else.
func ErrLocked(err error) bool {
	var le *LockedError
	return errors.As(err, &le)
}

// DefaultPreparedTTL is how long a prepared release is kept from pruning.
const DefaultPreparedTTL = 24 * time.Hour
