// Package app wires configuration, release building, transports, the deploy
// steps and the report together. It is the only place that reads the
// process environment; everything below it gets values.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/report"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/local"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/sshx"
	"github.com/atomic-deploy/atomic-deploy/internal/version"
)

// IO is where the program reads and writes.
type IO struct {
	Stdout io.Writer
	Stderr io.Writer
	IsTTY  bool
}

// Main runs the program and returns its exit code. args exclude the program name.
func Main(ctx context.Context, args []string, environ []string, stdio IO) int {
	env := envMap(environ)
	inActions := env["GITHUB_ACTIONS"] == "true" && len(args) == 0

	var (
		lookup  config.Lookup
		command string
		log     *report.Log
	)
	if inActions {
		log = report.NewActions(stdio.Stdout, func(k string) string { return env[k] })
		lookup = actionsLookup(env)
		if path, _ := lookup("config-file"); strings.TrimSpace(path) != "" {
			file, err := readConfigFile(strings.TrimSpace(path), true)
			if err != nil {
				log.Errorf("Invalid input: config-file", "%v", err)
				return 2
			}
			lookup = layered(lookup, file, false)
		}
	} else {
		log = report.NewTerminal(stdio.Stderr, stdio.IsTTY)
		var err error
		var done bool
		command, lookup, done, err = parseCommandLine(args, env, stdio.Stdout)
		if done {
			return 0
		}
		if err != nil {
			fmt.Fprintf(stdio.Stderr, "atomic-deploy: %v\nRun 'atomic-deploy --help' for usage.\n", err)
			return 2
		}
	}

	if err := hideSecretEnv(); err != nil {
		log.Warnf("the secret inputs could not be hidden from the build and hooks (they can read /proc/%d/environ): %v", os.Getpid(), err)
	}
	children := childEnv(environ)
	rc := runContext(env, children, lookup)
	// A name alone in env or secret-env reads the environment the build
	// gets too: the step's variables, not atomic-deploy's own secrets.
	childVars := envMap(children)
	rc.Getenv = func(name string) (string, bool) { v, ok := childVars[name]; return v, ok }
	cfg, err := config.Parse(lookup, rc)
	if err != nil {
		// Mask what we can before saying anything: the values are not validated yet.
		log.Mask(rawSecrets(lookup))
		for _, e := range unjoin(err) {
			var ie *config.InputError
			if errors.As(e, &ie) {
				log.Errorf("Invalid input: "+ie.Input, "%s", ie.Reason)
			} else {
				log.Errorf("Invalid input", "%v", e)
			}
		}
		return 2
	}
	log.Mask(cfg.Secrets())
	LimitMemory(env["GOMEMLIMIT"], len(cfg.Hosts))
	if command == "plan" || (command != "releases" && (cfg.Mode == config.ModeDeploy || cfg.Mode == config.ModePrepare)) {
		if err := checkSource(cfg.Source); err != nil {
			log.Errorf("Invalid input: "+err.Input, "%s", err.Reason)
			return 2
		}
	}

	a := &run{cfg: cfg, log: log, env: env, childEnv: children, inActions: inActions, core: deployCore}
	switch command {
	case "releases":
		return a.releases(ctx, stdio.Stdout)
	case "plan":
		return a.plan(ctx, stdio.Stdout)
	}
	return a.main(ctx)
}

// checkSource refuses a source that is not a directory before anything
// runs (the build runs in it, and an empty release is never meant).
func checkSource(source string) *config.InputError {
	fi, err := os.Stat(source)
	where := source
	if wd, werr := os.Getwd(); werr == nil && !filepath.IsAbs(source) {
		where = fmt.Sprintf("%s (in %s)", source, wd)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &config.InputError{Input: "source", Reason: where + " does not exist"}
	case err != nil:
		return &config.InputError{Input: "source", Reason: err.Error()}
	case !fi.IsDir():
		return &config.InputError{Input: "source", Reason: where + " is not a directory"}
	}
	return nil
}

type run struct {
	cfg *config.Config
	log *report.Log
	env map[string]string
	// childEnv is the environment of what runs on this machine: the build
	// command and, with no host, the hooks (see childEnv).
	childEnv  []string
	inActions bool
	core      core
}

func (a *run) main(ctx context.Context) int {
	cfg := a.cfg
	targets, err := a.targets()
	if err != nil {
		a.log.Errorf("Invalid input", "%v", err)
		return 2
	}
	opts := a.options(targets)

	var res *deploy.Result
	switch cfg.Mode {
	case config.ModeDeploy, config.ModePrepare:
		if cfg.Remote() {
			// The connections are made while the release is described:
			// neither waits for the other, and connecting changes nothing.
			var closeUnused func()
			opts.Targets, closeUnused = dialEarly(ctx, targets, cfg.Concurrency)
			defer closeUnused()
		}
		var m *release.Manifest
		if m, err = a.describe(ctx, &opts); err != nil {
			a.log.Errorf("Release not prepared", "%v", err)
			return 1
		}
		if cfg.Mode == config.ModePrepare {
			res, err = a.core.prepare(ctx, opts, m)
			break
		}
		opts.Verify = a.verify()
		res, err = a.core.deploy(ctx, opts, m)
	case config.ModeActivate:
		// Nothing to build or describe: the release is on the hosts.
		opts.Verify = a.verify()
		res, err = a.core.activate(ctx, opts, cfg.ReleaseID)
	case config.ModeRollback:
		res, err = deploy.Rollback(ctx, opts, cfg.ReleaseID)
	case config.ModeUnlock:
		res, err = deploy.Unlock(ctx, opts)
	}
	err = a.resetAfterRollback(ctx, res, err)
	if werr := a.writeReport(res, err); werr != nil {
		a.log.Errorf("Report", "%v", werr)
		if err == nil {
			err = werr
		}
	}
	if err != nil {
		a.log.Errorf(title(cfg.Mode, res), "%v", err)
		return 1
	}
	return 0
}

func title(mode string, res *deploy.Result) string {
	switch {
	case res != nil && res.RolledBack && mode == config.ModeActivate:
		return "Activate failed and was rolled back"
	case res != nil && res.RolledBack:
		return "Deploy failed and was rolled back"
	case mode == config.ModePrepare:
		return "Prepare failed"
	case mode == config.ModeActivate:
		return "Activate failed"
	case mode == config.ModeRollback:
		return "Rollback failed"
	case mode == config.ModeUnlock:
		return "Unlock failed"
	}
	return "Deploy failed"
}

func (a *run) options(targets []deploy.Target) deploy.Options {
	cfg := a.cfg
	parallel := 256
	if !cfg.Remote() {
		parallel = 16
	}
	runner, _ := os.Hostname()
	return deploy.Options{
		Targets: targets,
		Root:    cfg.Path,
		Settings: &deploy.Settings{
			SharedDirs: cfg.SharedDirs, SharedFiles: cfg.SharedFiles,
			WritableDirs: cfg.WritableDirs, WritableMode: cfg.WritableMode, WritableUser: cfg.WritableUser,
			BeforeActivate: cfg.BeforeActivate, BeforeActivateOnce: cfg.BeforeActivateOnce, AfterActivate: cfg.AfterActivate, OnFailure: cfg.OnFailure, AfterSwitch: afterSwitch(cfg),
			HookEnv: cfg.HookEnv(), HookTimeout: cfg.CommandTimeout,
			KeepReleases: cfg.KeepReleases, Revision: cfg.Revision, Actor: cfg.Actor, RunURL: cfg.RunURL,
			Runner: runner, Parallel: parallel, Reuse: cfg.Reuse, Lock: deploy.LockOptions{TTL: deploy.DefaultLockOptions.TTL, Wait: cfg.LockTimeout},
			ProgressEvery: 3 * time.Second,
		},
		Log:          a.log,
		Groups:       a.log.Group,
		Concurrency:  cfg.Concurrency,
		AutoRollback: cfg.AutoRollback, Force: cfg.Force,
		ReleaseID:   releaseIDForDeploy(cfg),
		Rollout:     deploy.Rollout{Canary: cfg.Canary, BatchSize: cfg.BatchHosts()},
		PreparedTTL: cfg.PreparedTTL,
	}
}

// releaseIDForDeploy is the id a new release is made as (deploy,
// prepare); activate and rollback name theirs as an argument.
func releaseIDForDeploy(cfg *config.Config) string {
	if cfg.Mode == config.ModeDeploy || cfg.Mode == config.ModePrepare {
		return cfg.ReleaseID
	}
	return ""
}

// targets builds one dialer per host; every host's SSH settings are
// validated before any connection is made.
func (a *run) targets() ([]deploy.Target, error) {
	cfg := a.cfg
	if !cfg.Remote() {
		return []deploy.Target{{Name: "local", Dial: func(context.Context) (transport.Transport, error) { return local.NewWithEnv(a.childEnv), nil }}}, nil
	}
	if cfg.InsecureIgnoreHostKey {
		a.log.Warnf("insecure-ignore-host-key is true: host keys are NOT checked, so anyone on the network path can impersonate the server and receive the release and credentials. Pin known-hosts or fingerprint instead.")
	}
	var targets []deploy.Target
	var errs []error
	for _, h := range cfg.Hosts {
		sc := sshx.Config{
			Host: h.Name, Port: h.Port, User: h.User,
			PrivateKey: cfg.PrivateKey, Passphrase: cfg.Passphrase, Password: cfg.Password,
			KnownHosts: cfg.KnownHosts, Fingerprints: cfg.FingerprintsFor(h), InsecureIgnoreHostKey: cfg.InsecureIgnoreHostKey,
			ConnectTimeout: cfg.ConnectTimeout, ConnectRetries: cfg.ConnectRetries,
			OnRetry: func(err error, attempt int, wait time.Duration) {
				a.log.Infof("%s: %v; trying again in %s (attempt %d of %d)", h, err, wait.Round(100*time.Millisecond), attempt+1, cfg.ConnectRetries+1)
			},
		}
		if cfg.JumpHost != nil {
			sc.JumpHost = cfg.JumpHost.String()
			sc.JumpHostFingerprints = cfg.FingerprintsFor(*cfg.JumpHost)
		}
		if err := sc.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", h, err))
			continue
		}
		targets = append(targets, deploy.Target{Name: h.String(), Dial: func(ctx context.Context) (transport.Transport, error) {
			start := time.Now()
			t, err := sshx.Dial(ctx, sc)
			switch {
			case err != nil:
				return nil, err
			case !a.trace():
				return t, nil
			}
			a.log.Infof("trace %s: connected in %s", h, time.Since(start).Round(time.Millisecond))
			return transport.Trace(t, a.log.Writer("trace")), nil
		}})
	}
	return targets, errors.Join(errs...)
}

// trace reports whether every remote operation is logged: asked for with
// ATOMIC_DEPLOY_TRACE, or by re-running a job with debug logging, which sets
// RUNNER_DEBUG=1.
func (a *run) trace() bool {
	return a.env["ATOMIC_DEPLOY_TRACE"] != "" || a.env["RUNNER_DEBUG"] == "1"
}

// dialEarly starts dialling every target now, at most parallel at a time,
// and returns targets whose Dial hands over that connection (once: a run
// dials each target once), with a func for the end of the run that stops
// the dialling and closes the connections never handed over.
func dialEarly(ctx context.Context, targets []deploy.Target, parallel int) ([]deploy.Target, func()) {
	ctx, cancel := context.WithCancel(ctx)
	type dialed struct {
		t   transport.Transport
		err error
	}
	sem := make(chan struct{}, max(parallel, 1))
	results := make([]chan dialed, len(targets))
	taken := make([]atomic.Bool, len(targets))
	early := make([]deploy.Target, len(targets))
	for i, tg := range targets {
		results[i] = make(chan dialed, 1)
		go func() {
			sem <- struct{}{}
			t, err := tg.Dial(ctx)
			<-sem
			results[i] <- dialed{t, err}
		}()
		early[i] = deploy.Target{Name: tg.Name, Dial: func(dctx context.Context) (transport.Transport, error) {
			taken[i].Store(true)
			select {
			case d := <-results[i]:
				return d.t, d.err
			case <-dctx.Done():
				go func() {
					if d := <-results[i]; d.t != nil {
						d.t.Close()
					}
				}()
				return nil, dctx.Err()
			}
		}}
	}
	closeUnused := func() {
		cancel()
		for i := range targets {
			if taken[i].Load() {
				continue
			}
			if d := <-results[i]; d.t != nil {
				d.t.Close()
			}
		}
	}
	return early, closeUnused
}

// writeReport writes outputs and the job summary (Actions) or a short
// report (terminal).
func (a *run) writeReport(res *deploy.Result, runErr error) error {
	if res == nil {
		return nil
	}
	cfg := a.cfg
	outs, now := a.outputs(res, runErr)
	// The summary's heading names the live release after a rollback, the
	// attempted one otherwise; its revision goes with that release.
	revision := cfg.Revision
	switch {
	case res.Mode == config.ModeRollback || res.RolledBack:
		revision = now.revision
	case res.Mode == config.ModeActivate:
		// This run's commit is not the release's: the one recorded when
		// it was prepared is, once it is live.
		revision = ""
		if now.id != "" && now.id == attempted(res) {
			revision = now.revision
		}
	}
	summary := report.Summary(res, redactErr(a.log, runErr), revision) + report.SummaryFooter(version.String())
	var errs []error
	if p := a.env["GITHUB_OUTPUT"]; p != "" {
		errs = append(errs, report.AppendOutputs(p, outs))
	}
	errs = append(errs, report.AddStepSummary(func(k string) string { return a.env[k] }, a.log.Redact(summary)))
	if !a.inActions {
		for _, o := range outs {
			a.log.Infof("%s: %s", o.Name, o.Value)
		}
	}
	return errors.Join(errs...)
}

func redactErr(l *report.Log, err error) error {
	if err == nil {
		return nil
	}
	return errors.New(l.Redact(err.Error()))
}

func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// actionsLookup reads inputs the way the runner passes them: INPUT_ plus
// the name upper-cased with spaces as underscores and hyphens kept.
func actionsLookup(env map[string]string) config.Lookup {
	return func(name string) (string, bool) {
		v, ok := env["INPUT_"+strings.ToUpper(strings.ReplaceAll(name, " ", "_"))]
		return v, ok
	}
}

// rawSecrets are the secret inputs as given, and the passwords in
// healthcheck-url and opcache-reset-url, for masking before validation.
func rawSecrets(lookup config.Lookup) []string {
	var s []string
	for _, in := range config.Inputs {
		v, ok := lookup(in.Name)
		switch {
		case !ok || !in.Secret || v == "":
		case in.Name == "secret-env":
			s = append(s, config.SecretEnvValues(v)...) // its names stay readable in the messages
		default:
			s = append(s, v)
		}
	}
	if v, ok := lookup("healthcheck-url"); ok {
		s = append(s, config.URLPasswords(strings.TrimSpace(v))...)
	}
	if v, ok := lookup("opcache-reset-url"); ok {
		for _, line := range strings.Split(v, "\n") {
			s = append(s, config.URLPasswords(strings.TrimSpace(line))...)
		}
	}
	return s
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// runContext says where the run comes from, for the releases log; git
// runs with childEnv (a repository's config can make it run commands).
func runContext(env map[string]string, childEnv []string, lookup config.Lookup) config.Context {
	rc := config.Context{Revision: env["GITHUB_SHA"], Actor: env["GITHUB_ACTOR"]}
	if env["GITHUB_RUN_ID"] != "" {
		server := env["GITHUB_SERVER_URL"]
		if server == "" {
			server = "https://github.com"
		}
		rc.RunURL = server + "/" + env["GITHUB_REPOSITORY"] + "/actions/runs/" + env["GITHUB_RUN_ID"]
	}
	if rc.Actor == "" {
		rc.Actor = env["USER"]
	}
	if rc.Revision == "" {
		src, ok := lookup("source")
		if !ok || src == "" {
			src = "."
		}
		git := exec.Command("git", "-C", filepath.Clean(src), "rev-parse", "HEAD")
		git.Env = childEnv
		out, err := git.Output()
		if err == nil {
			rc.Revision = strings.TrimSpace(string(out))
		}
	}
	if rc.Revision == "" {
		rc.Revision = "unknown"
	}
	return rc
}

// StdIO is the process's own terminal.
func StdIO() IO {
	fi, err := os.Stderr.Stat()
	return IO{Stdout: os.Stdout, Stderr: os.Stderr, IsTTY: err == nil && fi.Mode()&os.ModeCharDevice != 0}
}
