package fleetbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/atomic-deploy/atomic-deploy/internal/app"
	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/sshx"
)

// clientEnv makes the test binary a deploy client (clientMain): one run of
// mode prepare, activate or deploy (or only the connections) in a process
// of its own, so that its peak memory and CPU are the run's alone, as a
// job's would be.
const clientEnv = "FLEET_CLIENT"

func TestMain(m *testing.M) {
	if path := os.Getenv(clientEnv); path != "" {
		os.Exit(clientMain(path))
	}
	os.Exit(m.Run())
}

// clientConfig is what a client process is to do (a JSON file: it holds
// the test servers' throwaway client keys).
type clientConfig struct {
	Mode        string // prepare, activate, deploy, or connect (dial every host at once, then close)
	ReleaseID   string
	Root        string
	Source      string // prepare, deploy: the tree to release
	Concurrency int
	Hosts       []clientHost
	Profile     string // set: write a CPU profile of the run there
	Trace       string // set: log every remote operation there, as ATOMIC_DEPLOY_TRACE does
}

type clientHost struct {
	Name string
	SSH  sshx.Config
}

// clientResult is what a client process prints: the run's result, the
// errors as text.
type clientResult struct {
	Err      string
	Start    time.Time     // when the run was called (the process started before)
	Duration time.Duration // of the run; connect: until every host was connected
	Hosts    []clientHostResult
}

type clientHostResult struct {
	Name, Outcome, Err string
	SwitchedAt         time.Time
	Phases             []deploy.Phase
}

func clientMain(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var c clientConfig
	if err := json.Unmarshal(data, &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// The binary's memory limit, which the collector's work depends on.
	app.LimitMemory(os.Getenv("GOMEMLIMIT"), len(c.Hosts))
	log := &deploytest.Log{}
	set := deploy.Settings{KeepReleases: 3, Revision: "r1", Parallel: 64, Lock: deploy.DefaultLockOptions}
	o := deploy.Options{Root: c.Root, Settings: &set, Log: log, Concurrency: c.Concurrency, AutoRollback: true, ReleaseID: c.ReleaseID}
	for _, h := range c.Hosts {
		o.Targets = append(o.Targets, deploytest.SSHTarget(h.Name, h.SSH))
	}
	ctx := context.Background()
	if c.Profile != "" {
		stop, err := profileCPU(c.Profile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		defer stop()
	}
	start := time.Now()
	if c.Trace != "" {
		f, err := os.Create(c.Trace)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		defer f.Close()
		w := &testutil.SyncBuffer{}
		defer func() { f.WriteString(w.String()) }()
		o.Targets = tracedTargets(o.Targets, w, start)
	}
	var res *deploy.Result
	switch c.Mode {
	case "prepare", "deploy":
		var m *release.Manifest
		if m, err = release.Build(ctx, release.Options{Source: c.Source, Revision: "r1"}); err == nil {
			if c.Mode == "prepare" {
				res, err = deploy.Prepare(ctx, o, m)
			} else {
				res, err = deploy.Deploy(ctx, o, m)
			}
		}
	case "activate":
		res, err = deploy.Activate(ctx, o, c.ReleaseID)
	case "connect":
		res, err = connectAll(ctx, o.Targets)
	default:
		err = fmt.Errorf("unknown mode %q", c.Mode)
	}
	out := clientResult{Start: start}
	if err != nil {
		out.Err = err.Error() + "\n" + log.String()
	}
	if res != nil {
		out.Duration = res.Duration
		for _, h := range res.Hosts {
			hr := clientHostResult{Name: h.Name, Outcome: h.Outcome, SwitchedAt: h.SwitchedAt, Phases: h.Phases}
			if h.Err != nil {
				hr.Err = h.Err.Error()
			}
			out.Hosts = append(out.Hosts, hr)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

// connectAll dials every target at once and closes the connections once
// all are up: the connection time a run starts with, in a process as cold
// as a job's.
func connectAll(ctx context.Context, targets []deploy.Target) (*deploy.Result, error) {
	start := time.Now()
	conns := make([]transport.Transport, len(targets))
	g, gctx := errgroup.WithContext(ctx)
	for i, t := range targets {
		g.Go(func() (err error) {
			conns[i], err = t.Dial(gctx)
			return err
		})
	}
	err := g.Wait()
	res := &deploy.Result{Mode: "connect", Duration: time.Since(start)}
	for i, c := range conns {
		res.Hosts = append(res.Hosts, deploy.HostResult{Name: targets[i].Name})
		if c != nil {
			c.Close()
		}
	}
	return res, err
}

// profileCPU writes a CPU profile to path until stop is called.
func profileCPU(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// clientRun is one client process, as its parent saw it.
type clientRun struct {
	clientResult
	started time.Time // the process
	wall    time.Duration
	cpu     time.Duration // user + system
	peakRSS int64         // bytes (getrusage's ru_maxrss)
	noisy   bool          // the machine was not quiet before it
}

// runClient runs c in a client process and waits for it.
func runClient(b *testing.B, c clientConfig) clientRun {
	b.Helper()
	data, err := json.Marshal(c)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "client.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), clientEnv+"="+path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	r := clientRun{started: start, wall: time.Since(start)}
	if err != nil {
		b.Fatalf("%s client: %v\n%s", c.Mode, err, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), &r.clientResult); err != nil {
		b.Fatalf("%s client printed %q: %v\n%s", c.Mode, stdout.String(), err, stderr.String())
	}
	if r.Err != "" {
		b.Fatalf("%s of %s on %d hosts: %s", c.Mode, c.ReleaseID, len(c.Hosts), r.Err)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	r.peakRSS = ru.Maxrss * 1024 // kilobytes on Linux
	return r
}

// spread is how far apart in time the hosts switched.
func (r clientRun) spread() time.Duration {
	times := make([]time.Time, 0, len(r.Hosts))
	for _, h := range r.Hosts {
		times = append(times, h.SwitchedAt)
	}
	return deploytest.Spread(times)
}

// clientHosts are the fleet's hosts as a client dials them.
func clientHosts(hosts deploytest.Fleet) []clientHost {
	var hs []clientHost
	for _, h := range hosts {
		hs = append(hs, clientHost{Name: h.Name, SSH: h.Server.Config()})
	}
	return hs
}
