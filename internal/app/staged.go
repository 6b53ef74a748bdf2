package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/health"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/words"
)

// core is the deploy core's entry points that a run calls; tests of the
// wiring give it fakes that return made-up results.
type core struct {
	deploy   func(ctx context.Context, o deploy.Options, m *release.Manifest) (*deploy.Result, error)
	prepare  func(ctx context.Context, o deploy.Options, m *release.Manifest) (*deploy.Result, error)
	activate func(ctx context.Context, o deploy.Options, id string) (*deploy.Result, error)
}

var deployCore = core{deploy: deploy.Deploy, prepare: deploy.Prepare, activate: deploy.Activate}

// describe builds the release (the build command, then the source walk)
// for deploy and prepare. Hashing waits for nothing but the disk: it runs
// while the hosts are dialled and locked, and the core waits for it
// (opts.ManifestReady) before planning.
func (a *run) describe(ctx context.Context, opts *deploy.Options) (*release.Manifest, error) {
	cfg := a.cfg
	end := a.log.Group("Prepare release from " + cfg.Source)
	m, err := release.Describe(ctx, release.Options{Source: cfg.Source, Exclude: cfg.Exclude, Build: cfg.Build, Revision: cfg.Revision,
		SharedDirs: cfg.SharedDirs, SharedFiles: cfg.SharedFiles,
		Env: a.childEnv, Stdout: a.log.Writer("build"), Stderr: a.log.Writer("build")})
	if err == nil {
		n, size := m.Files()
		a.log.Infof("%s, %s, revision %s", words.Count(int64(n), "file"), words.Bytes(size), cfg.Revision)
	}
	end()
	if err != nil {
		return nil, err
	}
	hashed := make(chan error, 1)
	go func() { hashed <- m.Hash(ctx) }()
	opts.ManifestReady = func(ctx context.Context) error {
		select {
		case err := <-hashed:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return m, nil
}

// verify is what the core runs after each step of the rollout (every
// host at once, without one): opcache-reset-url, then the health check.
// nil when there is neither.
func (a *run) verify() func(ctx context.Context, id, previousID string, hosts []string) error {
	var check func(ctx context.Context, id, previousID string, hosts []string) error
	if a.cfg.HealthcheckURL != "" {
		check = a.healthCheck
	}
	return a.withOPcacheReset(check)
}

// healthCheck checks the hosts of one step. With {host} in
// healthcheck-url each of them is checked at its own URL, all at once, and
// every one that fails is named; without it the URL is one address for
// the site (a load balancer) and is checked once for the step.
func (a *run) healthCheck(ctx context.Context, id, previousID string, hosts []string) error {
	cfg := a.cfg
	check := func(url string) error {
		return health.Check{URL: url, Timeout: cfg.HealthcheckTimeout, Expect: cfg.HealthcheckExpect}.Run(ctx, id, previousID)
	}
	if !cfg.HealthcheckPerHost() {
		a.log.Infof("health check: %s", config.RedactURL(cfg.HealthcheckURL))
		return check(cfg.HealthcheckURL)
	}
	urls := make([]string, len(hosts))
	for i, name := range hosts {
		h, ok := a.hostNamed(name)
		if !ok {
			return fmt.Errorf("health check: %s is not in host, so {host} cannot be filled in for it", name)
		}
		urls[i] = cfg.HealthcheckURLFor(h)
		a.log.Infof("health check %s: %s", name, config.RedactURL(urls[i]))
	}
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, url := range urls {
		wg.Go(func() {
			if err := check(url); err != nil {
				errs[i] = fmt.Errorf("%s: %w", hosts[i], err)
			}
		})
	}
	wg.Wait()
	return hostsFailed(errs)
}

// hostsFailed joins the errors of the hosts that failed, saying how many
// when there are several, as the core does.
func hostsFailed(errs []error) error {
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) < 2 {
		return errors.Join(failed...)
	}
	lines := make([]string, len(failed))
	for i, err := range failed {
		lines[i] = "  * " + err.Error()
	}
	return &manyHostsError{errs: failed, text: fmt.Sprintf("health check failed on %d of %s:\n%s", len(failed), words.Count(int64(len(errs)), "host"), strings.Join(lines, "\n"))}
}

// manyHostsError keeps every host's error reachable (errors.As finds a
// health.StaleError among them) behind one message.
type manyHostsError struct {
	errs []error
	text string
}

func (e *manyHostsError) Error() string   { return e.text }
func (e *manyHostsError) Unwrap() []error { return e.errs }

// hostNamed is the host of host whose target is called name.
func (a *run) hostNamed(name string) (config.Host, bool) {
	for _, h := range a.cfg.Hosts {
		if h.String() == name {
			return h, true
		}
	}
	return config.Host{}, false
}
