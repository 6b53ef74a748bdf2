// Package config turns Actions inputs or CLI flags into a validated Config.
// Every error names the input it is about, and nothing below this package
// reads the environment.
package config

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
)

// Modes.
const (
	ModeDeploy   = "deploy"
	ModePrepare  = "prepare"  // upload and before-activate; switch nothing
	ModeActivate = "activate" // switch to a prepared release
	ModeRollback = "rollback"
	ModeUnlock   = "unlock"
)

// maxConnectRetries keeps a typo from retrying a dead host for an hour:
// the waits grow to 10 s each.
const maxConnectRetries = 10

// Config is everything one run needs, validated.
type Config struct {
	Mode  string
	Hosts []Host // empty: this machine's filesystem

	PrivateKey            string
	Passphrase            string
	Password              string
	KnownHosts            string
	Fingerprints          []HostFingerprint
	InsecureIgnoreHostKey bool
	JumpHost              *Host
	ConnectTimeout        time.Duration // one attempt
	ConnectRetries        int

	Path    string // deploy root, absolute and clean
	Source  string
	Exclude []string
	Build   string
	Preset  string
	// MaintenanceMode wraps the hooks in php artisan down/up (preset.go).
	MaintenanceMode bool

	SharedDirs         []string
	SharedFiles        []string
	WritableDirs       []string
	WritableMode       string // "" (chmod), "acl" or "chgrp"
	WritableUser       string // the web server's user (acl) or group (chgrp)
	BeforeActivate     string
	BeforeActivateOnce string
	AfterActivate      string
	OnFailure          string
	CommandTimeout     time.Duration     // per hook; 0: no limit
	Env                map[string]string // env: set in every hook
	SecretEnv          map[string]string // secret-env: set in every hook, masked

	OpcacheReset        string   // "", OpcacheFPMReload or OpcacheURL
	OpcacheResetCommand string   // fpm-reload
	OpcacheResetURLs    []string // url

	KeepReleases       int
	HealthcheckURL     string
	HealthcheckTimeout time.Duration
	HealthcheckExpect  string
	LockTimeout        time.Duration
	AutoRollback       bool
	Reuse              string // copy or hardlink
	Force              bool
	ReleaseID          string
	Concurrency        int

	// Staged releases and rollouts (staged.go).
	Rollout      string        // RolloutAll, RolloutCanary or RolloutBatches
	Canary       int           // rollout: canary: hosts switched first
	BatchSize    int           // rollout: batches: hosts a batch, or 0 for BatchPercent
	BatchPercent int           // rollout: batches: percent of the hosts a batch
	PreparedTTL  time.Duration // a prepared release is not pruned while younger

	// Where the run comes from, recorded in the releases log.
	Revision string
	Actor    string
	RunURL   string
}

// Remote reports whether the run targets servers over SSH.
func (c *Config) Remote() bool { return len(c.Hosts) > 0 }

// Secrets returns the values that must never be printed: the secret
// inputs (each value of secret-env) and the passwords in healthcheck-url
// and opcache-reset-url.
func (c *Config) Secrets() []string {
	var s []string
	urlPasswords := URLPasswords(c.HealthcheckURL)
	for _, u := range c.OpcacheResetURLs {
		urlPasswords = append(urlPasswords, URLPasswords(u)...)
	}
	for _, v := range append([]string{c.PrivateKey, c.Passphrase, c.Password}, urlPasswords...) {
		if v != "" {
			s = append(s, v)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.SecretEnv)) {
		if v := c.SecretEnv[name]; v != "" {
			s = append(s, v)
		}
	}
	return s
}

// InputError is a bad value for one input.
type InputError struct {
	Input  string
	Reason string
}

func (e *InputError) Error() string { return fmt.Sprintf("input %q: %s", e.Input, e.Reason) }

// Lookup returns the raw value of an input and whether it was given at all.
type Lookup func(name string) (string, bool)

// Context carries facts about the run that are not inputs.
type Context struct {
	Revision string
	Actor    string
	RunURL   string
	// Getenv reads the runner's environment, for a name alone in env or
	// secret-env; nil: nothing is set.
	Getenv func(name string) (string, bool)
}

// Parse reads every input through lookup (falling back to the table's
// defaults), applies the preset, and validates. All input errors are
// returned together so a user fixes them in one go.
func Parse(lookup Lookup, rc Context) (*Config, error) {
	get := func(name string) string {
		if v, ok := lookup(name); ok {
			return strings.TrimSpace(v)
		}
		for _, in := range Inputs {
			if in.Name == name {
				return in.Default
			}
		}
		panic("config: unknown input " + name)
	}
	var errs []error
	fail := func(input, format string, a ...any) {
		errs = append(errs, &InputError{Input: input, Reason: fmt.Sprintf(format, a...)})
	}

	c := &Config{
		Mode:               strings.ToLower(get("mode")),
		PrivateKey:         get("private-key"),
		Passphrase:         get("passphrase"),
		Password:           get("password"),
		KnownHosts:         get("known-hosts"),
		Build:              get("build"),
		Preset:             strings.ToLower(get("preset")),
		BeforeActivate:     get("before-activate"),
		AfterActivate:      get("after-activate"),
		OnFailure:          get("on-failure"),
		HealthcheckURL:     get("healthcheck-url"),
		HealthcheckExpect:  get("healthcheck-expect"),
		BeforeActivateOnce: get("before-activate-once"),
		ReleaseID:          get("release-id"),
		Revision:           rc.Revision,
		Actor:              rc.Actor,
		RunURL:             rc.RunURL,
	}
	if v, ok := lookup("private-key"); ok {
		c.PrivateKey = strings.TrimSpace(v) + "\n" // PEM parsers want the final newline
		if strings.TrimSpace(v) == "" {
			c.PrivateKey = ""
		}
	}

	switch c.Mode {
	case ModeDeploy, ModePrepare, ModeActivate, ModeRollback, ModeUnlock:
	default:
		fail("mode", "%q is not one of deploy, prepare, activate, rollback, unlock", get("mode")) // as given: the log redacts secrets by exact spelling
	}

	port, err := parsePort(get("port"))
	if err != nil {
		fail("port", "%v", err)
	}
	username := get("username")
	if username != "" {
		if err := validUser(username); err != nil {
			fail("username", "%v", err)
		}
	}
	for _, spec := range splitList(get("host"), true) {
		h, err := ParseHost(spec, username, port)
		if err != nil {
			fail("host", "%v", err)
			continue
		}
		c.Hosts = append(c.Hosts, h)
	}
	if dup := duplicateHost(c.Hosts); dup != "" {
		fail("host", "%s is listed twice", dup)
	}
	if jh := get("jump-host"); jh != "" {
		h, err := ParseHost(jh, username, 22)
		if err != nil {
			fail("jump-host", "%v", err)
		} else {
			c.JumpHost = &h
		}
	}
	c.Fingerprints = parseFingerprints(splitList(get("fingerprint"), true), c.servers(), fail)
	if c.InsecureIgnoreHostKey, err = parseBool(get("insecure-ignore-host-key")); err != nil {
		fail("insecure-ignore-host-key", "%v", err)
	}
	if c.AutoRollback, err = parseBool(get("auto-rollback")); err != nil {
		fail("auto-rollback", "%v", err)
	}
	if c.Force, err = parseBool(get("force")); err != nil {
		fail("force", "%v", err)
	}
	switch c.Reuse = strings.ToLower(get("reuse")); c.Reuse {
	case "copy", "hardlink":
	default:
		fail("reuse", "%q is not copy or hardlink", get("reuse"))
	}

	c.Path, err = validDeployPath(get("path"))
	if err != nil {
		fail("path", "%v", err)
	}
	c.Source = get("source")
	if c.Source == "" {
		c.Source = "."
	}
	c.Exclude = splitList(get("exclude"), false)
	for _, p := range c.Exclude {
		if err := release.CheckExcludePattern(p); err != nil {
			fail("exclude", "%v", err)
		}
	}

	if c.Preset != "" && c.Preset != "laravel" {
		fail("preset", "%q is not a known preset (known: laravel)", get("preset"))
	}
	c.SharedDirs = relPaths(get("shared-dirs"), "shared-dirs", fail)
	c.SharedFiles = relPaths(get("shared-files"), "shared-files", fail)
	c.WritableDirs = relPaths(get("writable-dirs"), "writable-dirs", fail)
	if c.Preset == "laravel" {
		applyLaravel(c, lookup)
	}
	if c.MaintenanceMode, err = parseBool(get("maintenance-mode")); err != nil {
		fail("maintenance-mode", "%v", err)
	} else if c.MaintenanceMode {
		applyMaintenance(c, fail)
	}
	checkOverlap(c.SharedDirs, c.SharedFiles, fail)
	c.WritableMode, c.WritableUser = parseWritableMode(strings.ToLower(get("writable-mode")), get("writable-user"), len(c.WritableDirs) > 0, fail)

	if c.KeepReleases, err = strconv.Atoi(get("keep-releases")); err != nil || c.KeepReleases < 1 {
		fail("keep-releases", "%q must be a whole number of at least 1", get("keep-releases"))
	}
	if c.Concurrency, err = strconv.Atoi(get("concurrency")); err != nil || c.Concurrency < 1 {
		fail("concurrency", "%q must be a whole number of at least 1", get("concurrency"))
	}
	if c.HealthcheckTimeout, err = ParseDuration(get("healthcheck-timeout")); err != nil {
		fail("healthcheck-timeout", "%v", err)
	}
	if c.LockTimeout, err = ParseDuration(get("lock-timeout")); err != nil {
		fail("lock-timeout", "%v", err)
	}
	if c.ConnectTimeout, err = ParseDuration(get("connect-timeout")); err != nil || c.ConnectTimeout == 0 {
		fail("connect-timeout", "%q must be a duration above 0 (e.g. 20s)", get("connect-timeout"))
	}
	if c.ConnectRetries, err = strconv.Atoi(get("connect-retries")); err != nil || c.ConnectRetries < 0 || c.ConnectRetries > maxConnectRetries {
		fail("connect-retries", "%q must be a whole number from 0 to %d", get("connect-retries"), maxConnectRetries)
	}
	if v := get("command-timeout"); v != "" {
		if c.CommandTimeout, err = ParseDuration(v); err != nil {
			fail("command-timeout", "%v; empty or 0 means no limit", err)
		}
	}
	// Not trimmed: a value may end in white space.
	envText, _ := lookup("env")
	secretEnvText, _ := lookup("secret-env")
	c.Env, c.SecretEnv = parseHookEnvs(envText, secretEnvText, rc.Getenv, fail)
	if c.HealthcheckExpect != "" && c.HealthcheckURL == "" {
		fail("healthcheck-expect", "needs healthcheck-url")
	}
	if c.HealthcheckURL != "" {
		checkHealthcheckURL(c, fail)
	}
	parseOpcacheReset(c, strings.ToLower(get("opcache-reset")), get("opcache-reset-command"), splitList(get("opcache-reset-url"), false), fail)
	if c.ReleaseID != "" {
		if err := ValidReleaseID(c.ReleaseID); err != nil {
			fail("release-id", "%v", err)
		}
	}
	if c.PreparedTTL, err = ParseDuration(get("prepared-ttl")); err != nil || c.PreparedTTL == 0 {
		fail("prepared-ttl", "%q must be a duration above 0 (e.g. 24h, 90m)", get("prepared-ttl"))
	}
	parseStaged(c, get, fail)

	if len(c.Hosts) > 0 {
		if c.PrivateKey == "" && c.Password == "" {
			fail("private-key", "an SSH private key (or a password) is required to deploy to %s", c.Hosts[0].Name)
		}
		if c.KnownHosts == "" && len(splitList(get("fingerprint"), true)) == 0 && !c.InsecureIgnoreHostKey {
			fail("known-hosts", "the servers' host keys must be pinned: give known-hosts (ssh-keyscan -p PORT HOST output, checked out of band) or fingerprint; insecure-ignore-host-key: true skips the check but lets anyone on the path impersonate the server")
		} else if c.KnownHosts == "" && len(c.Fingerprints) > 0 {
			for _, h := range c.servers() {
				if len(c.FingerprintsFor(h)) == 0 {
					fail("fingerprint", "no fingerprint for %s (and no known-hosts to check it against): add a line %s=SHA256:… (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on that server prints it)", pinName(h.Name, h.Port), pinName(h.Name, h.Port))
				}
			}
		}
		for _, h := range c.Hosts {
			if h.User == "" {
				fail("username", "no SSH user for %s: set username or write user@%s in host", h.Name, h.Name)
				break
			}
		}
	} else if c.JumpHost != nil {
		fail("jump-host", "a jump host needs a host to jump to")
	}
	if (c.Mode == ModeDeploy || c.Mode == ModePrepare) && c.Path != "" && len(c.Hosts) == 0 && c.Path == "/" {
		fail("path", "refusing to deploy into /")
	}
	if len(errs) > 0 {
		hideSecrets(append(c.Secrets(), SecretEnvValues(secretEnvText)...), errs)
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// hideSecrets keeps secret values out of error messages, should one be
// pasted into the wrong input: whole, line by line, and as %q spells them.
func hideSecrets(secrets []string, errs []error) {
	var pairs []string
	for _, s := range secrets {
		for _, part := range append([]string{s}, strings.Split(s, "\n")...) {
			if part = strings.TrimSpace(part); len(part) >= 4 {
				q := strconv.Quote(part)
				pairs = append(pairs, part, "***", q[1:len(q)-1], "***")
			}
		}
	}
	if len(pairs) == 0 {
		return
	}
	r := strings.NewReplacer(pairs...)
	for _, e := range errs {
		if ie, ok := e.(*InputError); ok {
			ie.Reason = r.Replace(ie.Reason)
		}
	}
}

var (
	fingerprintRE = regexp.MustCompile(`^SHA256:[A-Za-z0-9+/]{43}=?$`)
	userRE        = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	hostRE        = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)
	releaseIDRE   = regexp.MustCompile(`^[0-9]{14}$`)
)
