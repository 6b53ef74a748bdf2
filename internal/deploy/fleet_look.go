package deploy

import (
	"context"
	"errors"
	"io/fs"
	"sync"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
)

// look connects to target i and reads its state (with what w asks for)
// without taking the lock or changing anything (a deploy root that does
// not exist yet is empty). The caller closes h.T.
func (r *runner) look(ctx context.Context, i int, w rootWant) (*Host, error) {
	t, err := r.o.Targets[i].Dial(ctx)
	if err != nil {
		return nil, err
	}
	h := &Host{Name: r.o.Targets[i].Name, T: t, L: Layout{Root: r.o.Root}, S: r.o.Settings, Log: r.o.Log}
	if _, err := t.Lstat(ctx, h.L.Releases()); errors.Is(err, fs.ErrNotExist) {
		h.root.log = &releaseLog{}
		return h, nil
	}
	warn := func(format string, args ...any) { h.Log.Warnf("%s: "+format, append([]any{h.Name}, args...)...) }
	if err := h.root.complete(ctx, t, h.L, w, warn); err != nil {
		t.Close()
		return nil, err
	}
	return h, nil
}

// ListReleases opens every host read-only (no lock) and lists its releases.
func ListReleases(ctx context.Context, o Options) (map[string][]ReleaseInfo, error) {
	var mu sync.Mutex
	out := map[string][]ReleaseInfo{}
	r := newRunner(o)
	err := r.each(ctx, o.Concurrency, func(ctx context.Context, i int) error {
		h, err := r.look(ctx, i, rootWant{})
		if err != nil {
			return err
		}
		defer h.T.Close()
		list, err := h.Releases(ctx)
		mu.Lock()
		out[h.Name] = list
		mu.Unlock()
		return err
	})
	return out, err
}

// HostPlan is what a deploy would do on one host.
type HostPlan struct {
	Host      string
	CurrentID string
	Plan      *Plan
	Removed   []string // paths of the live release that the new one lacks
}

// PlanAll computes, without a lock and without changing anything, what a
// deploy of m would upload and reuse on every host.
func PlanAll(ctx context.Context, o Options, m *release.Manifest) ([]HostPlan, error) {
	plans := make([]HostPlan, len(o.Targets))
	r := newRunner(o)
	err := r.each(ctx, o.Concurrency, func(ctx context.Context, i int) error {
		h, err := r.look(ctx, i, rootWant{plan: true})
		if err != nil {
			return err
		}
		defer h.T.Close()
		prev := h.root.live.manifest
		hp := HostPlan{Host: h.Name, CurrentID: h.root.currentID, Plan: MakePlan(m, prev, h.root.live.scan)}
		if prev != nil {
			idx := m.Index()
			for _, e := range prev.Entries {
				if idx[e.Path] == nil {
					hp.Removed = append(hp.Removed, e.Path)
				}
			}
		}
		plans[i] = hp
		return nil
	})
	return plans, err
}
