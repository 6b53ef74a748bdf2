package app

import (
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
	statusPrepared   = "prepared"
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
func (a *run) outputs(res *deploy.Result, runErr error) ([]report.Output, live) {
	cfg := a.cfg
	duration := report.Output{Name: "duration", Value: res.Duration.Round(time.Millisecond).String()}
	if cfg.Mode == config.ModeUnlock {
		// Unlock switches nothing: no release output means anything.
		return []report.Output{{Name: "status", Value: statusOf(res, runErr)}, duration}, live{}
	}
	now := a.liveNow(res)
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
	case res.Mode == config.ModePrepare:
		return statusPrepared
	case res.Unchanged():
		return statusUnchanged
	case res.Mode == config.ModeRollback:
		return statusRolledBack
	}
	return statusDeployed
}

// attempted is the release the run worked on: the new one of a deploy
// (Deploy reports the previous one as ReleaseID after rolling back), the
// one a prepare left on the hosts, the one an activate switched to, or a
// rollback's target.
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

// liveNow says what the run left live: the release every host serves (as
// deploy read it at the end of the run), and its recorded revision.
func (a *run) liveNow(res *deploy.Result) live {
	var now live
	for i, h := range res.Hosts {
		if !h.LiveKnown {
			return live{} // a host was not reached, or current could not be read
		}
		if i > 0 && h.Live != now.id {
			a.log.Infof("the hosts are not on one release (%s: %s, %s: %s)", res.Hosts[0].Name, orDash(now.id), h.Name, orDash(h.Live))
			return live{}
		}
		now = live{id: h.Live, revision: h.LiveRevision, known: true}
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
