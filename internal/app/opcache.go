package app

import (
	"context"
	"fmt"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/health"
)

// afterSwitch is the hook deploy runs on every server right after every
// switch of current: opcache-reset-command, for opcache-reset: fpm-reload.
func afterSwitch(cfg *config.Config) deploy.Hook {
	if cfg.OpcacheReset != config.OpcacheFPMReload {
		return deploy.Hook{}
	}
	return deploy.Hook{Name: "opcache-reset-command", Script: cfg.OpcacheResetCommand}
}

// withOPcacheReset makes verify (the health check, or nil) start by
// requesting opcache-reset-url, for opcache-reset: url. Deploy calls it
// once every host switched and ran after-activate; a failure rolls back
// like a failed health check.
func (a *run) withOPcacheReset(verify func(ctx context.Context, id, previousID string, hosts []string) error) func(ctx context.Context, id, previousID string, hosts []string) error {
	if a.cfg.OpcacheReset != config.OpcacheURL {
		return verify
	}
	return func(ctx context.Context, id, previousID string, hosts []string) error {
		if err := a.resetOPcache(ctx); err != nil {
			return err
		}
		if verify == nil {
			return nil
		}
		return verify(ctx, id, previousID, hosts)
	}
}

// resetOPcache requests every opcache-reset-url once.
func (a *run) resetOPcache(ctx context.Context) error {
	for _, u := range a.cfg.OpcacheResetURLs {
		a.log.Infof("opcache-reset: requesting %s", health.Shown(u))
		if err := health.Request(ctx, nil, u, a.cfg.HealthcheckTimeout); err != nil {
			return fmt.Errorf("opcache-reset-url %w", err)
		}
	}
	return nil
}

// resetAfterRollback resets OPcache again once current went back (mode
// rollback, or a deploy that rolled back), so PHP forgets the release that
// is no longer live. A deploy that rolled back has failed already: its
// error gains a line. A rollback whose reset fails fails.
func (a *run) resetAfterRollback(ctx context.Context, res *deploy.Result, err error) error {
	if a.cfg.OpcacheReset != config.OpcacheURL || res == nil {
		return err
	}
	rolledBack := (a.cfg.Mode == config.ModeRollback && err == nil) || res.RolledBack
	if !rolledBack {
		return err
	}
	rerr := a.resetOPcache(context.WithoutCancel(ctx))
	switch {
	case rerr == nil:
		return err
	case err == nil:
		return fmt.Errorf("current is back on %s, but OPcache may still serve the release it left: %w", res.ReleaseID, rerr)
	}
	return fmt.Errorf("%w; after the rollback, OPcache may still serve the release that was rolled back: %v", err, rerr)
}
