package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/health"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/report"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
)

const (
	stagedID   = "20261125231842"
	stagedPrev = "20261124100000"
	runSHA     = "0123456789abcdef0123456789abcdef01234567"
)

// coreCall is what the run asked of the core.
type coreCall struct {
	fn   string
	opts deploy.Options
	m    *release.Manifest
	id   string
}

// fakeCore stands in for the deploy core (whose Prepare and Activate are
// tested in internal/deploy): it records the call and answers res, err.
func fakeCore(t *testing.T, res *deploy.Result, err error) *[]coreCall {
	t.Helper()
	var calls []coreCall
	saved := deployCore
	t.Cleanup(func() { deployCore = saved })
	withManifest := func(fn string) func(context.Context, deploy.Options, *release.Manifest) (*deploy.Result, error) {
		return func(ctx context.Context, o deploy.Options, m *release.Manifest) (*deploy.Result, error) {
			calls = append(calls, coreCall{fn: fn, opts: o, m: m})
			return res, err
		}
	}
	deployCore = core{
		deploy:  withManifest("deploy"),
		prepare: withManifest("prepare"),
		activate: func(ctx context.Context, o deploy.Options, id string) (*deploy.Result, error) {
			calls = append(calls, coreCall{fn: "activate", opts: o, id: id})
			return res, err
		},
	}
	return &calls
}

type stagedRun struct {
	code            int
	stdout, summary string
	outputs         map[string]string
}

// runStaged runs Main as the Actions runner does, with inputs over the
// table's defaults.
func runStaged(t *testing.T, inputs map[string]string) stagedRun {
	t.Helper()
	dir := t.TempDir()
	env := map[string]string{
		"GITHUB_ACTIONS": "true", "GITHUB_SHA": runSHA, "GITHUB_ACTOR": "octocat", "HOME": dir,
		"GITHUB_OUTPUT": filepath.Join(dir, "output"), "GITHUB_STEP_SUMMARY": filepath.Join(dir, "summary"),
	}
	for _, in := range config.Inputs {
		env["INPUT_"+strings.ToUpper(in.Name)] = in.Default
	}
	for k, v := range inputs {
		env["INPUT_"+strings.ToUpper(k)] = v
	}
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	var stdout bytes.Buffer
	code := Main(context.Background(), nil, environ, IO{Stdout: &stdout, Stderr: &stdout})
	out, _ := os.ReadFile(env["GITHUB_OUTPUT"])
	sum, _ := os.ReadFile(env["GITHUB_STEP_SUMMARY"])
	outputs, err := report.ParseOutputs(string(out))
	if err != nil {
		t.Fatalf("outputs: %v\n%s", err, out)
	}
	return stagedRun{code: code, stdout: stdout.String(), summary: string(sum), outputs: outputs}
}

func wantOutputs(t *testing.T, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("output %s = %q, want %q", k, got[k], v)
		}
	}
}

// TestPrepareBuildsLikeDeploy: mode prepare builds and describes the
// release exactly as deploy does, hands it to deploy.Prepare with the id
// and TTL given, checks nothing after (it switches nothing), and its
// outputs say prepared, with release-id still the live release.
func TestPrepareBuildsLikeDeploy(t *testing.T) {
	source := t.TempDir()
	os.WriteFile(filepath.Join(source, "index.html"), []byte("hi\n"), 0o644)
	res := &deploy.Result{Mode: "prepare", ReleaseID: stagedID, PreviousID: stagedPrev, Duration: time.Second, Hosts: []deploy.HostResult{{
		Name: "local", ReleaseID: stagedID, PreviousID: stagedPrev, Outcome: deploy.OutcomeNotRun,
		Live: stagedPrev, LiveRevision: "oldrev", LiveKnown: true, Stats: deploy.Stats{FilesUploaded: 2, BytesUploaded: 9},
	}}}
	calls := fakeCore(t, res, nil)
	r := runStaged(t, map[string]string{"mode": "prepare", "path": deploytest.LocalRoot(t, "site"), "source": source,
		"build": "echo built > built.txt", "release-id": stagedID, "prepared-ttl": "36h", "healthcheck-url": "http://127.0.0.1:1/up"})
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stdout)
	}
	if len(*calls) != 1 || (*calls)[0].fn != "prepare" {
		t.Fatalf("core calls %+v, want one Prepare", *calls)
	}
	c := (*calls)[0]
	var paths []string
	for _, e := range c.m.Entries {
		paths = append(paths, e.Path)
	}
	if !slices.Contains(paths, "index.html") || !slices.Contains(paths, "built.txt") {
		t.Errorf("the release holds %q, want the source and what the build wrote", paths)
	}
	if c.opts.ManifestReady == nil || c.opts.ManifestReady(context.Background()) != nil {
		t.Error("Prepare cannot wait for the release's hashes")
	}
	if c.opts.ReleaseID != stagedID || c.opts.PreparedTTL != 36*time.Hour || c.opts.Verify != nil {
		t.Errorf("options: release id %q, ttl %s, verify set %v; want %s, 36h, no check (nothing switches)", c.opts.ReleaseID, c.opts.PreparedTTL, c.opts.Verify != nil, stagedID)
	}
	wantOutputs(t, r.outputs, map[string]string{
		"status": "prepared", "release-id": stagedPrev, "deployed-release-id": stagedID, "previous-release-id": stagedPrev,
		"revision": "oldrev", "files-uploaded": "2", "bytes-uploaded": "9", "rolled-back": "false",
	})
}

// TestActivateBuildsNothing: mode activate needs no source (it need not
// exist) and runs no build; it hands release-id to deploy.Activate with
// the health check, and its outputs are those of a deploy. The summary's
// revision is the one recorded for the release, not this run's commit.
func TestActivateBuildsNothing(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "built")
	inputs := map[string]string{"mode": "activate", "release-id": stagedID, "path": deploytest.LocalRoot(t, "site"),
		"source": filepath.Join(t.TempDir(), "not-there"), "build": "touch " + marker, "healthcheck-url": "http://127.0.0.1:1/up", "force": "true"}
	live := deploy.HostResult{Name: "local", ReleaseID: stagedID, PreviousID: stagedPrev, Outcome: deploy.OutcomeDeployed, Batch: 1,
		Live: stagedID, LiveRevision: "prepared-rev", LiveKnown: true}
	calls := fakeCore(t, &deploy.Result{Mode: "activate", ReleaseID: stagedID, PreviousID: stagedPrev, Hosts: []deploy.HostResult{live}}, nil)
	r := runStaged(t, inputs)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stdout)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("activate ran the build")
	}
	if len(*calls) != 1 || (*calls)[0].fn != "activate" || (*calls)[0].id != stagedID {
		t.Fatalf("core calls %+v, want one Activate of %s", *calls, stagedID)
	}
	if o := (*calls)[0].opts; o.Verify == nil || !o.Force || o.ReleaseID != "" {
		t.Errorf("options: verify set %v, force %v, release id %q; want the health check, force, the id as Activate's argument only", o.Verify != nil, o.Force, o.ReleaseID)
	}
	wantOutputs(t, r.outputs, map[string]string{
		"status": "deployed", "release-id": stagedID, "deployed-release-id": stagedID, "previous-release-id": stagedPrev,
		"revision": "prepared-rev", "rolled-back": "false",
	})
	if !strings.Contains(r.summary, "Revision `prepared-rev`") || strings.Contains(r.summary, runSHA) {
		t.Errorf("the summary does not name the release's revision:\n%s", r.summary)
	}

	t.Run("rolled back", func(t *testing.T) {
		back := live
		back.Outcome, back.Live, back.LiveRevision = deploy.OutcomeRolledBack, stagedPrev, "oldrev"
		fakeCore(t, &deploy.Result{Mode: "activate", ReleaseID: stagedPrev, PreviousID: stagedPrev, RolledBack: true, Hosts: []deploy.HostResult{back}},
			errors.New("health check failed; rolled back to "+stagedPrev))
		r := runStaged(t, inputs)
		if r.code != 1 || !strings.Contains(r.stdout, "::error title=Activate failed and was rolled back::") {
			t.Fatalf("exit %d, want 1 with the error titled for activate\n%s", r.code, r.stdout)
		}
		wantOutputs(t, r.outputs, map[string]string{
			"status": "rolled-back", "release-id": stagedPrev, "deployed-release-id": stagedID, "revision": "oldrev", "rolled-back": "true",
		})
	})
}

// TestStagedInputsRefusedBeforeAnything: the CLI's prepare and activate
// commands set the mode; activate without release-id, and prepare without
// a source, are refused (exit 2) before the core is called.
func TestStagedInputsRefusedBeforeAnything(t *testing.T) {
	calls := fakeCore(t, nil, errors.New("not reached"))
	root := deploytest.LocalRoot(t, "site")
	for _, tt := range []struct {
		args   []string
		phrase string
	}{
		{[]string{"activate", "--path", root}, "Invalid input: release-id: mode: activate needs the id of the prepared release"},
		{[]string{"prepare", "--path", root, "--source", filepath.Join(t.TempDir(), "gone")}, "does not exist"},
		{[]string{"activate", "--path", root, "--release-id", stagedID, "--rollout", "canary"}, "rollout: canary needs at least 2 hosts"},
	} {
		var out bytes.Buffer
		code := Main(context.Background(), tt.args, nil, IO{Stdout: &out, Stderr: &out})
		if code != 2 || !strings.Contains(out.String(), tt.phrase) {
			t.Errorf("%q: exit %d, want 2 saying %q\n%s", tt.args, code, tt.phrase, out.String())
		}
	}
	if len(*calls) != 0 {
		t.Errorf("the core was called: %+v", *calls)
	}
}

// TestRolloutOptions: rollout inputs become deploy.Options.Rollout, a
// batch-size percentage counted over the hosts.
func TestRolloutOptions(t *testing.T) {
	hosts := "deploy@web1, deploy@web2, deploy@web3, deploy@web4, deploy@web5, deploy@web6, deploy@web7, deploy@web8, deploy@web9, deploy@web10"
	for _, tt := range []struct {
		inputs map[string]string
		want   deploy.Rollout
	}{
		{map[string]string{}, deploy.Rollout{}},
		{map[string]string{"rollout": "canary"}, deploy.Rollout{Canary: 1}},
		{map[string]string{"rollout": "canary", "canary": "3"}, deploy.Rollout{Canary: 3}},
		{map[string]string{"rollout": "batches", "batch-size": "4"}, deploy.Rollout{BatchSize: 4}},
		{map[string]string{"rollout": "batches", "batch-size": "25%"}, deploy.Rollout{BatchSize: 3}},
	} {
		in := map[string]string{"host": hosts, "path": "/srv/app", "private-key": "key", "known-hosts": "x", "mode": "activate", "release-id": stagedID}
		for k, v := range tt.inputs {
			in[k] = v
		}
		cfg, err := config.Parse(func(name string) (string, bool) { v, ok := in[name]; return v, ok }, config.Context{})
		if err != nil {
			t.Fatalf("%v: %v", tt.inputs, err)
		}
		o := (&run{cfg: cfg}).options(nil)
		if o.Rollout != tt.want || o.PreparedTTL != deploy.DefaultPreparedTTL {
			t.Errorf("%v: rollout %+v, ttl %s; want %+v, %s", tt.inputs, o.Rollout, o.PreparedTTL, tt.want, deploy.DefaultPreparedTTL)
		}
	}
}

// healthServer answers /<name>/up: 200 naming the new release for the
// names in ok, 200 naming the previous one for those in stale, 503 for the
// rest; it counts the requests by path.
func healthServer(t *testing.T, ok, stale []string) (*httptest.Server, func() map[string]int) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path]++
		mu.Unlock()
		name := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/up")
		switch {
		case slices.Contains(ok, name):
			fmt.Fprintf(w, "release %s", stagedID)
		case slices.Contains(stale, name):
			fmt.Fprintf(w, "release %s", stagedPrev)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(seen)
	}
}

func healthRun(t *testing.T, url string) (*run, *bytes.Buffer) {
	t.Helper()
	in := map[string]string{"host": "deploy@web1, deploy@web2:2222, deploy@[::1]:22, deploy@web4", "path": "/srv/app", "private-key": "key", "known-hosts": "x",
		"healthcheck-url": url, "healthcheck-timeout": "1s", "healthcheck-expect": "{release-id}"}
	cfg, err := config.Parse(func(name string) (string, bool) { v, ok := in[name]; return v, ok }, config.Context{})
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	return &run{cfg: cfg, log: report.NewTerminal(&log, false)}, &log
}

// TestHealthCheckEachHost: with {host} in healthcheck-url, each host
// switched in a step is checked at its own URL (its name from host,
// without user and port), all of them, and each one that fails is named;
// hosts of other steps are not asked. The stale-release trap still
// reports the stale host.
func TestHealthCheckEachHost(t *testing.T) {
	srv, seen := healthServer(t, []string{"web1", "web4"}, []string{"[::1]"})
	a, log := healthRun(t, srv.URL+"/{host}/up")
	verify := a.verify()
	ctx := context.Background()

	if err := verify(ctx, stagedID, stagedPrev, []string{"deploy@web1:22"}); err != nil {
		t.Fatalf("the canary's check: %v", err)
	}
	if got := seen(); got["/web1/up"] != 1 || len(got) != 1 {
		t.Errorf("the canary step asked %v, want /web1/up once", got)
	}
	err := verify(ctx, stagedID, stagedPrev, []string{"deploy@web2:2222", "deploy@[::1]:22", "deploy@web4:22"})
	if err == nil {
		t.Fatal("a step with a failing host and a stale one passed")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "health check failed on 2 of 3 hosts:\n") || !strings.Contains(msg, "deploy@web2:2222: health check failed: "+srv.URL+"/web2/up did not pass") ||
		!strings.Contains(msg, "deploy@[::1]:22: health check: "+srv.URL+"/[::1]/up still serves the previous release") || strings.Contains(msg, "web4") {
		t.Errorf("error does not name the two failing hosts (only):\n%s", msg)
	}
	var stale *health.StaleError
	if !errors.As(err, &stale) {
		t.Errorf("the stale-release trap is not a *health.StaleError: %v", err)
	}
	if got := seen(); got["/web4/up"] != 1 || got["/web2/up"] < 1 || got["/[::1]/up"] < 1 {
		t.Errorf("the step asked %v, want every host of it", got)
	}
	if !strings.Contains(log.String(), "health check deploy@web2:2222: "+srv.URL+"/web2/up") {
		t.Errorf("the log does not say which URL each host is checked at:\n%s", log.String())
	}
}

// TestHealthCheckOncePerStep: without {host} the URL is the site's (a
// load balancer): one check per step, whatever the number of hosts in it.
func TestHealthCheckOncePerStep(t *testing.T) {
	srv, seen := healthServer(t, []string{"lb"}, nil)
	a, _ := healthRun(t, srv.URL+"/lb/up")
	verify := a.verify()
	for step, hosts := range [][]string{{"deploy@web1:22"}, {"deploy@web2:2222", "deploy@[::1]:22", "deploy@web4:22"}} {
		if err := verify(context.Background(), stagedID, stagedPrev, hosts); err != nil {
			t.Fatalf("step %d: %v", step+1, err)
		}
		if got := seen()["/lb/up"]; got != step+1 {
			t.Errorf("after step %d the URL was asked %d times, want %d", step+1, got, step+1)
		}
	}
}
