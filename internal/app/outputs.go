package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/report"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/sshx"
)

// Values of the status output (see config.Outputs for what each means in
// each mode).
const (
	statusDeployed   = "deployed"
	statusRolledBack = "rolled-back"
	statusFailed     = "failed"
	statusUnchanged  = "unchanged"
)

// live is what a run left live: the release every host serves and the
// revision recorded for it. id is "" when no release is live, or when it
// is not known (known false: hosts not on one release, or not readable).
type live struct {
	id, revision string
	known        bool
}

// outputs are the step outputs of a run that returned res and runErr.
func (a *run) outputs(ctx context.Context, targets []deploy.Target, res *deploy.Result, runErr error) ([]report.Output, live) {
	cfg := a.cfg
	duration := report.Output{Name: "duration", Value: res.Duration.Round(time.Millisecond).String()}
	if cfg.Mode == config.ModeUnlock {
		// Unlock switches nothing: no release output means anything.
		return []report.Output{{Name: "status", Value: statusOf(res, runErr)}, duration}, live{}
	}
	now := a.liveNow(ctx, targets, res, runErr)
	releasePath := ""
	if now.id != "" {
		releasePath = deploy.Layout{Root: cfg.Path}.Release(now.id)
	}
	tot := res.Totals()
	return []report.Output{
		{Name: "status", Value: statusOf(res, runErr)},
		{Name: "release-id", Value: now.id},
		{Name: "release-path", Value: releasePath},
		{Name: "deployed-release-id", Value: attempted(res)},
		{Name: "previous-release-id", Value: res.PreviousID},
		{Name: "revision", Value: now.revision},
		{Name: "files-uploaded", Value: fmt.Sprint(tot.FilesUploaded)},
		{Name: "files-reused", Value: fmt.Sprint(tot.FilesReused)},
		{Name: "bytes-uploaded", Value: fmt.Sprint(tot.BytesUploaded)},
		duration,
		{Name: "rolled-back", Value: fmt.Sprint(res.RolledBack)},
	}, now
}

func statusOf(res *deploy.Result, runErr error) string {
	switch {
	case res.RolledBack:
		return statusRolledBack
	case runErr != nil:
		return statusFailed
	case res.Mode == config.ModeUnlock:
		return statusUnchanged
	case res.Mode == config.ModeRollback:
		for _, h := range res.Hosts {
			if h.ReleaseID != h.PreviousID {
				return statusRolledBack
			}
		}
		return statusUnchanged
	}
	return statusDeployed
}

// attempted is the release the run tried to put live: the new one of a
// deploy (Deploy reports the previous one as ReleaseID after rolling back)
// or a rollback's target.
func attempted(res *deploy.Result) string {
	for _, h := range res.Hosts {
		if h.ReleaseID != "" {
			return h.ReleaseID
		}
	}
	if res.RolledBack {
		return ""
	}
	return res.ReleaseID
}

// liveNow says what the run left live. After a deploy that succeeded it is
// the new release, with this run's revision. Otherwise the result does not
// say what every host serves, nor the revision recorded for a release
// deployed earlier, so they are read back from the hosts (read-only, no
// lock): from the first host after a rollback that succeeded (every host
// is on its target), from every host the run reached after a failure.
func (a *run) liveNow(ctx context.Context, targets []deploy.Target, res *deploy.Result, runErr error) live {
	if runErr == nil && res.Mode == config.ModeDeploy {
		return live{id: res.ReleaseID, revision: a.cfg.Revision, known: true}
	}
	var read []deploy.Target
	if runErr == nil {
		read = targets[:min(1, len(targets))]
	} else {
		for i, t := range targets {
			if i < len(res.Hosts) && !reached(res.Hosts[i]) {
				return live{} // what it serves is not known
			}
			read = append(read, t)
		}
	}
	if len(read) == 0 {
		return live{}
	}
	// The job may be cancelled; the answer is still worth a bounded wait.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ConnectTimeout+15*time.Second)
	defer cancel()
	lists, err := deploy.ListReleases(ctx, a.options(read))
	if err != nil || len(lists) != len(read) {
		a.log.Infof("could not read back which release is live: %v", err)
		return live{}
	}
	var now live
	for i, t := range read {
		var id, revision string
		for _, r := range lists[t.Name] {
			if r.Current {
				id, revision = r.ID, r.Revision
			}
		}
		if i > 0 && id != now.id {
			a.log.Infof("the hosts are not on one release (%s: %s, %s: %s)", read[0].Name, orDash(now.id), t.Name, orDash(id))
			return live{}
		}
		now = live{id: id, revision: revision, known: true}
	}
	return now
}

// reached reports whether the run connected to the host. One it could not
// reach is not dialled again after the run: that would wait out
// connect-timeout and the retries once more.
func reached(h deploy.HostResult) bool {
	var ce *sshx.ConnectError
	return !errors.As(h.Err, &ce)
}
