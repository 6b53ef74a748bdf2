// Package faults_test injects faults into real deploys — dropped
// connections, killed processes, a full disk, a restarted sshd, concurrent
// deploys, permission errors, leftovers of crashes — and proves after each
// one that no release was lost: `current` points at a complete release,
// the failing deploy said what happened, and the next plain deploy works
// without a manual unlock or cleanup.
//
// Deploys run through the real binary where a process must die (built once
// in TestMain), and through app.Main or deploy.Deploy otherwise, against
// real sshd servers on 127.0.0.1 (internal/testutil/sshtest). Without sshd
// the tests skip, unless ATOMIC_DEPLOY_REQUIRE_SSHD=1.
package faults_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/app"
	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/sshtest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/sshx"
)

// binPath is the atomic-deploy binary built by TestMain ("" without sshd).
var binPath string

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	code := func() int {
		if _, err := os.Stat(sshtest.SSHDPath); err == nil {
			dir, err := os.MkdirTemp("", "atomic-deploy-faults-bin-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			// Other users (the sshd login user) need not run it; 0755 is
			// only so that a failure can be reproduced by hand.
			os.Chmod(dir, 0o755)
			binPath = filepath.Join(dir, "atomic-deploy")
			build := exec.Command("go", "build", "-o", binPath, "github.com/atomic-deploy/atomic-deploy")
			build.Stdout, build.Stderr = os.Stderr, os.Stderr
			if err := build.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "build the binary: %v\n", err)
				return 1
			}
		}
		code := m.Run()
		printFaultSummary()
		return code
	}()
	os.Exit(code)
}

// ---- fault bookkeeping -------------------------------------------------

var faultLog struct {
	mu      sync.Mutex
	results []faultResult
}

type faultResult struct {
	name     string
	survived bool
}

// knownBugs are faults that a bug in the deploy does not survive yet, by
// key; their tests skip until the fix lands (and removes the key).
var knownBugs = map[string]string{}

// knownBug skips t while the bug named key is not fixed.
func knownBug(t *testing.T, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if why, ok := knownBugs[k]; ok {
			t.Skipf("known bug %s: %s", k, why)
		}
	}
}

// inject registers one injected fault; it counts as survived when the test
// that injected it passes.
func inject(t *testing.T, name string) {
	t.Helper()
	t.Cleanup(func() {
		if t.Skipped() {
			return
		}
		faultLog.mu.Lock()
		defer faultLog.mu.Unlock()
		faultLog.results = append(faultLog.results, faultResult{name: name, survived: !t.Failed()})
	})
}

func printFaultSummary() {
	faultLog.mu.Lock()
	defer faultLog.mu.Unlock()
	if len(faultLog.results) == 0 {
		return
	}
	sort.Slice(faultLog.results, func(i, j int) bool { return faultLog.results[i].name < faultLog.results[j].name })
	survived := 0
	for _, r := range faultLog.results {
		mark := "LOST"
		if r.survived {
			mark = "ok  "
			survived++
		}
		fmt.Printf("fault %s %s\n", mark, r.name)
	}
	fmt.Printf("faults injected: %d, survived: %d\n", len(faultLog.results), survived)
}

// ---- the invariant -------------------------------------------------------

// assertCompleteRelease checks the promise every fault must keep: root's
// `current` is a relative symlink to releases/<id>, and every entry of that
// release's stored manifest is there — each file with its size and content
// hash, each directory, each symlink with its target. root is the deploy
// root as this process sees it. It returns the live release id.
func assertCompleteRelease(t testing.TB, root string) string {
	t.Helper()
	target, err := os.Readlink(filepath.Join(root, "current"))
	if err != nil {
		t.Fatalf("current is not a symlink: %v", err)
	}
	id := path.Base(target)
	if target != "releases/"+id {
		t.Fatalf("current -> %q, want releases/<id>", target)
	}
	assertReleaseComplete(t, root, id)
	return id
}

// assertReleaseComplete checks release id against its stored manifest.
func assertReleaseComplete(t testing.TB, root, id string) {
	t.Helper()
	dir := filepath.Join(root, "releases", id)
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		t.Fatalf("release %s is not a directory: %v", id, err)
	}
	data, err := os.ReadFile(filepath.Join(root, ".atomic-deploy", "manifests", id+".json.gz"))
	if err != nil {
		t.Fatalf("release %s has no stored manifest (it never finished preparing): %v", id, err)
	}
	m, err := release.DecodeManifest(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("manifest of release %s: %v", id, err)
	}
	bad := 0
	for _, e := range m.Entries {
		p := filepath.Join(dir, filepath.FromSlash(e.Path))
		var problem string
		switch e.Type {
		case release.TypeFile:
			// Stat follows a shared-dirs link into shared/.
			info, err := os.Stat(p)
			switch {
			case err != nil:
				problem = err.Error()
			case !info.Mode().IsRegular():
				problem = "not a regular file: " + info.Mode().String()
			case info.Size() != e.Size:
				problem = fmt.Sprintf("size %d, manifest says %d", info.Size(), e.Size)
			case !e.Hash.IsZero() && fileHash(p) != e.Hash.String():
				problem = "content differs from the manifest"
			}
		case release.TypeDir:
			if info, err := os.Stat(p); err != nil || !info.IsDir() {
				problem = fmt.Sprintf("directory missing (%v)", err)
			}
		case release.TypeSymlink:
			if got, err := os.Readlink(p); err != nil || got != e.Target {
				problem = fmt.Sprintf("symlink %q, want %q (%v)", got, e.Target, err)
			}
		}
		if problem != "" {
			bad++
			if bad <= 10 {
				t.Errorf("release %s: %s: %s", id, e.Path, problem)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("release %s is incomplete: %d of %d entries wrong", id, bad, len(m.Entries))
	}
}

func fileHash(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

// ---- a deploy target -----------------------------------------------------

// env is a deploy root on one server, a source tree, and the ways to
// deploy to it.
type env struct {
	*deploytest.Host
	t     *testing.T
	px    *proxy // between client and sshd when set: connections can be dropped
	marks string // where hooks leave markers, as the server sees it
	src   *deploytest.Source
	actor string
	set   deploy.Settings
	log   *deploytest.Log
}

type envOptions struct {
	sftpOnly bool
	proxy    bool
	tmpfs    string // size of a tmpfs mounted as the server's Base (disk-full tests)
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	kind := deploytest.SSH
	if o.sftpOnly {
		kind = deploytest.SFTPOnly
	}
	e := &env{Host: deploytest.New(t, deploytest.Options{Kind: kind, Tmpfs: o.tmpfs}), t: t, actor: "fault-tester", log: &deploytest.Log{},
		src: deploytest.NewSource(t, map[string]string{"index.html": "v1", "app/a.txt": "aaa", "app/deep/b.txt": strings.Repeat("b", 3000)})}
	e.marks = e.Base + "/marks"
	if err := os.Mkdir(e.Local(e.marks), 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(e.Local(e.marks), 0o777)
	if o.proxy {
		e.px = startProxy(t, e.Server.Addr)
	}
	e.set = deploy.Settings{KeepReleases: 3, Revision: "rev1", Actor: e.actor, Parallel: 16,
		Lock: deploy.LockOptions{TTL: 2 * time.Second, Wait: 20 * time.Second}}
	return e
}

// sshConfig reaches the server, through the proxy when there is one.
func (e *env) sshConfig() sshx.Config {
	if e.px != nil {
		return e.Server.ConfigVia(e.t, e.px.addr())
	}
	return e.Server.Config()
}

// options are Go-level deploy options with the env's settings.
func (e *env) options() deploy.Options {
	set := e.set
	return deploy.Options{Targets: []deploy.Target{deploytest.SSHTarget(e.Name, e.sshConfig())}, Root: e.Path, Settings: &set, Log: e.log, Concurrency: 4, AutoRollback: true}
}

// goDeploy deploys the source with deploy.Deploy; mut may change the options.
func (e *env) goDeploy(ctx context.Context, mut func(*deploy.Options)) (*deploy.Result, error) {
	e.t.Helper()
	o := e.options()
	if mut != nil {
		mut(&o)
	}
	return deploy.Deploy(ctx, o, e.src.Manifest(e.set.Revision))
}

func (e *env) mustGoDeploy() string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := e.goDeploy(ctx, nil)
	if err != nil {
		e.t.Fatalf("deploy: %v\n%s", err, e.log)
	}
	return res.ReleaseID
}

// cliArgs are the command-line options of a deploy to this env.
func (e *env) cliArgs(extra ...string) []string {
	cfg := e.sshConfig()
	return append([]string{"deploy",
		"--host", fmt.Sprintf("%s@%s:%d", cfg.User, cfg.Host, cfg.Port),
		"--path", e.Path,
		"--private-key", cfg.PrivateKey,
		"--known-hosts", cfg.KnownHosts,
		"--source", e.src.Dir,
		"--keep-releases", "3",
		"--lock-timeout", "20s",
	}, extra...)
}

func (e *env) environ() []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.t.TempDir(), "USER=" + e.actor, "GITHUB_SHA=rev-" + e.actor}
}

// appRun is one run of app.Main or of the binary.
type appRun struct {
	code    int
	stderr  string
	elapsed time.Duration
}

// appDeploy runs the program in-process, as the CLI would.
func (e *env) appDeploy(ctx context.Context, extra ...string) appRun {
	e.t.Helper()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := app.Main(ctx, e.cliArgs(extra...), e.environ(), app.IO{Stdout: &stdout, Stderr: &stderr})
	return appRun{code: code, stderr: stderr.String(), elapsed: time.Since(start)}
}

// mustAppDeploy is the "next plain deploy": it must succeed, quickly, with
// no unlock or cleanup first. It returns the new live release id.
func (e *env) mustAppDeploy(extra ...string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := e.appDeploy(ctx, extra...)
	if r.code != 0 {
		e.t.Fatalf("next plain deploy failed (exit %d, %s):\n%s", r.code, r.elapsed, r.stderr)
	}
	id := assertCompleteRelease(e.t, e.Root())
	if !strings.Contains(r.stderr, "release-id: "+id) {
		e.t.Fatalf("deploy succeeded but current is %s:\n%s", id, r.stderr)
	}
	return id
}

// statuses reads the releases log: the newest status of every id.
func (e *env) statuses() map[string]string {
	data, _ := os.ReadFile(e.Root(".atomic-deploy", "releases.log"))
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		var r struct{ ID, Status string }
		if json.Unmarshal([]byte(line), &r) == nil && r.ID != "" {
			out[r.ID] = r.Status
		}
	}
	return out
}

// assertNoLeftovers checks that a deploy that ended (in any way, with its
// connection alive) left no temporary link, lock or unfinished release.
func (e *env) assertNoLeftovers(live string, failedOK ...string) {
	e.t.Helper()
	entries, _ := os.ReadDir(e.Root())
	for _, d := range entries {
		if strings.HasPrefix(d.Name(), ".current.tmp-") {
			e.t.Errorf("temporary link %s left behind", d.Name())
		}
	}
	if _, err := os.Stat(e.Root(".atomic-deploy", "lock")); err == nil {
		e.t.Errorf("lease lock directory left behind")
	}
	// A lock holder's copy of the live release made ahead: taken by the
	// upload, else removed by its holder once the deploy let go (which may
	// be just after the deploy returned), or by the next holder.
	ahead := func() []string { left, _ := filepath.Glob(e.Root(".atomic-deploy", ".ahead-*")); return left }
	for deadline := time.Now().Add(5 * time.Second); len(ahead()) > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if left := ahead(); len(left) > 0 {
		e.t.Errorf("a copy made ahead left behind: %q", left)
	}
	st := e.statuses()
	for _, id := range failedOK {
		if st[id] != deploy.StatusFailed {
			e.t.Errorf("release %s is %q in the log, want failed", id, st[id])
		}
		live += " " + id
	}
	for _, id := range e.Releases() {
		if !strings.Contains(" "+live+" ", " "+id+" ") && st[id] != deploy.StatusSuccess {
			e.t.Errorf("release %s (%s) left behind", id, st[id])
		}
	}
}

// ---- the real binary --------------------------------------------------------

// proc is a running atomic-deploy process.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	out    *testutil.SyncBuffer
	done   chan struct{}
	code   int
	killed bool
}

// startBinary runs the binary in its own process group.
func (e *env) startBinary(extra ...string) *proc {
	e.t.Helper()
	return e.startBinaryAs(e.actor, extra...)
}

func (e *env) startBinaryAs(actor string, extra ...string) *proc {
	e.t.Helper()
	if binPath == "" {
		e.t.Fatal("binary not built")
	}
	cmd := exec.Command(binPath, e.cliArgs(extra...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.t.TempDir(), "USER=" + actor, "GITHUB_SHA=rev-" + actor}
	p := &proc{t: e.t, cmd: cmd, out: &testutil.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
	return p
}

// kill sends SIGKILL to the deploy and every process it started here, as a
// runner does to a cancelled job that ignores SIGTERM.
func (p *proc) kill() {
	p.killed = true
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// signal sends sig to the deploy process alone.
func (p *proc) signal(sig syscall.Signal) { p.cmd.Process.Signal(sig) }

// wait waits for the process to end and returns its exit code.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(d):
		p.t.Fatalf("deploy still running after %s:\n%s", d, p.out)
		return -1
	}
}

func (p *proc) output() string { return p.out.String() }

// waitFor polls cond every few milliseconds until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(3 * time.Millisecond)
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// hookPIDs kills processes whose pid a hook wrote into marker files (a hook
// orphaned by a killed deploy), so no test leaves one behind.
func (e *env) killHookOrphans() {
	files, _ := filepath.Glob(filepath.Join(e.Local(e.marks), "*.pid"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		var pid int
		if _, err := fmt.Sscan(string(data), &pid); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// newRelease waits until a release directory not in before appears with
// at least one entry inside and returns its id.
func (e *env) newRelease(before []string, d time.Duration) string {
	e.t.Helper()
	known := map[string]bool{}
	for _, id := range before {
		known[id] = true
	}
	var id string
	waitFor(e.t, d, "a new release directory with content", func() bool {
		for _, r := range e.Releases() {
			if known[r] {
				continue
			}
			if entries, _ := os.ReadDir(e.Root("releases", r)); len(entries) > 0 {
				id = r
				return true
			}
		}
		return false
	})
	return id
}

// releaseAfter is the one release directory not in before.
func (e *env) releaseAfter(before []string) string {
	e.t.Helper()
	known := map[string]bool{}
	for _, id := range before {
		known[id] = true
	}
	var found []string
	for _, id := range e.Releases() {
		if !known[id] {
			found = append(found, id)
		}
	}
	if len(found) != 1 {
		e.t.Fatalf("new releases %v, want exactly one", found)
	}
	return found[0]
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---- small helpers ------------------------------------------------------------

// mentions fails unless msg contains every one of wants (case-insensitive).
func mentions(t testing.TB, what, msg string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(strings.ToLower(msg), strings.ToLower(w)) {
			t.Errorf("%s does not say %q:\n%s", what, w, msg)
		}
	}
}

// mentionsAny fails unless msg contains at least one of wants.
func mentionsAny(t testing.TB, what, msg string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if strings.Contains(strings.ToLower(msg), strings.ToLower(w)) {
			return
		}
	}
	t.Errorf("%s says none of %q:\n%s", what, wants, msg)
}

type deployOptions = deploy.Options

func statOwner(info os.FileInfo) (uid, gid int) {
	st := info.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}
