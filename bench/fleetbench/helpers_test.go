package fleetbench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/sshx"
)

// Helpers of BenchmarkFleet: the fleet with its servers, the delay proxy,
// and CPU accounting from /proc.

// clockTick is USER_HZ, the unit of /proc/stat and /proc/<pid>/stat times
// (100 on every Linux architecture Go runs on).
const clockTick = 10 * time.Millisecond

// startDelayProxy starts one bench/delayproxy process that listens on a
// free 127.0.0.1 port per server and forwards it with rtt/2 added in each
// direction. It returns targets that dial the proxy ports, the host key
// pinned under the proxy's [127.0.0.1]:port, and the proxy's pid.
func startDelayProxy(b *testing.B, bin string, rtt time.Duration, hosts deploytest.Fleet) ([]deploy.Target, int) {
	b.Helper()
	cfgs, pid := delayProxy(b, bin, rtt, hosts)
	var ts []deploy.Target
	for i, h := range hosts {
		ts = append(ts, deploytest.SSHTarget(h.Name, cfgs[i]))
	}
	return ts, pid
}

// delayProxy is startDelayProxy with client configs, one per host, for
// client processes to dial.
func delayProxy(b *testing.B, bin string, rtt time.Duration, hosts deploytest.Fleet) ([]sshx.Config, int) {
	b.Helper()
	args := []string{"-delay", (rtt / 2).String(), "-lifetime", "30m"}
	for _, h := range hosts {
		args = append(args, "-forward", "127.0.0.1:0="+h.Server.Addr)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	// Ends with this process even if it dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start delay proxy: %v", err)
	}
	b.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// "forward <listening addr> <target>", one line per server, in order.
	sc := bufio.NewScanner(out)
	var cfgs []sshx.Config
	for _, h := range hosts {
		srv := h.Server
		if !sc.Scan() {
			b.Fatalf("delay proxy: no listening address for %s (%v)", srv.Addr, sc.Err())
		}
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "forward" || f[2] != srv.Addr {
			b.Fatalf("delay proxy printed %q, want forward <addr> %s", sc.Text(), srv.Addr)
		}
		cfgs = append(cfgs, srv.ConfigVia(b, f[1]))
	}
	return cfgs, cmd.Process.Pid
}

// tracedTargets wraps every target's transport in transport.Trace, all
// writing to w. Each trace line's time counts from when that host's
// connection was up, so the dial logs when that was (since t0) and how long
// it took: together they place every operation on one time line.
func tracedTargets(ts []deploy.Target, w io.Writer, t0 time.Time) []deploy.Target {
	var out []deploy.Target
	for _, t := range ts {
		out = append(out, deploy.Target{Name: t.Name, Dial: func(ctx context.Context) (transport.Transport, error) {
			start := time.Now()
			tr, err := t.Dial(ctx)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(w, "dial %s (%s): started at %.1fms, connected in %.1fms (its trace times count from %.1fms)\n", t.Name, tr,
				msf(start.Sub(t0)), msf(time.Since(start)), msf(time.Since(t0)))
			return closeTraced{transport.Trace(tr, w), w, tr.String(), t0}, nil
		}})
	}
	return out
}

// closeTraced adds Close, which transport.Trace does not log, to the trace
// (times since t0, as the dial lines).
type closeTraced struct {
	transport.Transport
	w    io.Writer
	name string
	t0   time.Time
}

func (c closeTraced) Close() error {
	start := time.Now()
	err := c.Transport.Close()
	fmt.Fprintf(c.w, "close %s: started at %.1fms, took %.1fms (%v)\n", c.name, msf(start.Sub(c.t0)), msf(time.Since(start)), err)
	return err
}

// startProfile writes a CPU profile to path ("" for none) until the
// returned func is called, and heap profiles (what was allocated so far)
// at both ends, for `go tool pprof -sample_index=alloc_space -base`.
func startProfile(b *testing.B, path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	writeHeap(b, strings.Replace(path, "cpu-", "heap-before-", 1))
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		writeHeap(b, strings.Replace(path, "cpu-", "heap-after-", 1))
	}
}

func writeHeap(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// closeSpan records when the first of a deploy's connections began to
// close and when the last one was closed.
type closeSpan struct {
	mu          sync.Mutex
	first, last time.Time
}

func (c *closeSpan) span() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last.Sub(c.first)
}

// closeTimed wraps every target's transport to time its Close into span.
func closeTimed(ts []deploy.Target, span *closeSpan) []deploy.Target {
	var out []deploy.Target
	for _, t := range ts {
		out = append(out, deploy.Target{Name: t.Name, Dial: func(ctx context.Context) (transport.Transport, error) {
			tr, err := t.Dial(ctx)
			if err != nil {
				return nil, err
			}
			return timedClose{tr, span}, nil
		}})
	}
	return out
}

type timedClose struct {
	transport.Transport
	span *closeSpan
}

func (c timedClose) Close() error {
	start := time.Now()
	err := c.Transport.Close()
	end := time.Now()
	c.span.mu.Lock()
	if c.span.first.IsZero() || start.Before(c.span.first) {
		c.span.first = start
	}
	if end.After(c.span.last) {
		c.span.last = end
	}
	c.span.mu.Unlock()
	return err
}

// cpuTime is this process's user+system time: the deploy client's work,
// without the sshd processes it talks to.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pageFaults counts this process's minor page faults: each a page of
// memory the kernel gave it (again) on first touch.
func pageFaults() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Minflt
}

// procTimes reads /proc/<pid>/stat: the process's own user+system time and
// that of its children it has waited for (for an sshd listener: every
// connection it served that has ended, with its sessions and shells).
func procTimes(pid int) (self, children time.Duration) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// Fields after "(comm)": state is field 3, utime 14, stime 15, cutime
	// 16, cstime 17.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return 0, 0
	}
	tick := func(i int) time.Duration {
		n, _ := strconv.ParseInt(f[i-3], 10, 64)
		return time.Duration(n) * clockTick
	}
	return tick(14) + tick(15), tick(16) + tick(17)
}

// hasChildren reports whether pid has child processes (an sshd listener
// still serving a connection).
func hasChildren(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	return err == nil && len(strings.TrimSpace(string(data))) > 0
}

// machineCPU is the CPU time spent on all cores of this machine (busy:
// everything but idle and iowait) and the total including idle, from
// /proc/stat.
func machineCPU() (busy, total time.Duration) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal guest guest_nice
	for i := 1; i < len(f) && i <= 8; i++ {
		n, _ := strconv.ParseInt(f[i], 10, 64)
		total += time.Duration(n) * clockTick
		if i != 4 && i != 5 {
			busy += time.Duration(n) * clockTick
		}
	}
	return busy, total
}

// cpuSample is the CPU counters the benchmark compares before and after a
// deploy.
type cpuSample struct {
	client  time.Duration // this process
	servers time.Duration // the sshd listeners and all they ran
	proxy   time.Duration // the delay proxy, 0 without one
	machine time.Duration // all cores, busy
}

func sampleCPU(hosts deploytest.Fleet, proxyPid int) cpuSample {
	s := cpuSample{client: cpuTime()}
	for _, h := range hosts {
		self, kids := procTimes(h.Server.Pid())
		s.servers += self + kids
	}
	if proxyPid > 0 {
		s.proxy, _ = procTimes(proxyPid)
	}
	s.machine, _ = machineCPU()
	return s
}

func (s cpuSample) sub(o cpuSample) cpuSample {
	return cpuSample{s.client - o.client, s.servers - o.servers, s.proxy - o.proxy, s.machine - o.machine}
}

// other is the machine's busy time that none of the counted processes
// spent: kernel threads, and whatever else runs on this machine.
func (s cpuSample) other() time.Duration { return s.machine - s.client - s.servers - s.proxy }

func (s cpuSample) add(o cpuSample) cpuSample {
	return cpuSample{s.client + o.client, s.servers + o.servers, s.proxy + o.proxy, s.machine + o.machine}
}

// letGo waits until every host's lock holder let go. After a deploy, a
// prepare or an activate each holder makes the live release's spare (a
// copy of the release); a run is timed once they are done, as a server's
// are before the next deploy comes, and not while many servers' copies
// share this machine's cores (a hundred of them starved SSH handshakes
// past their time-out, and take minutes here).
func letGo(b *testing.B, hosts deploytest.Fleet) {
	deadline := time.Now().Add(10 * time.Minute)
	for _, h := range hosts {
		file := deploy.Layout{Root: h.Root()}.FlockFile()
		for deploytest.Locked(file) {
			if time.Now().After(deadline) {
				b.Fatalf("%s is still locked after 10 minutes", file)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// settle waits until every sshd has finished the connections of the last
// deploy (so their CPU is counted: a listener's children time grows when it
// reaps them) and the machine is mostly idle (at most 25% of its cores busy
// over 100 ms), for at most 3 s. It reports whether the machine was quiet.
func settle(hosts deploytest.Fleet) bool {
	deadline := time.Now().Add(3 * time.Second)
	for {
		b0, t0 := machineCPU()
		time.Sleep(100 * time.Millisecond)
		b1, t1 := machineCPU()
		done := t1 > t0 && float64(b1-b0) <= 0.25*float64(t1-t0)
		for _, h := range hosts {
			if hasChildren(h.Server.Pid()) {
				done = false
			}
		}
		if done {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// envInt reads a positive integer from the environment.
func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// envRTTs reads FLEET_RTTS: round trips in ms, comma-separated ("0,20,50").
func envRTTs(b *testing.B) []int {
	v := os.Getenv("FLEET_RTTS")
	if v == "" {
		return []int{0}
	}
	var rtts []int
	for _, s := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 0 {
			b.Fatalf("FLEET_RTTS=%q: want round trips in ms, e.g. 0,20,50", v)
		}
		rtts = append(rtts, n)
	}
	return rtts
}

// ms formats a duration as milliseconds without decimals.
func ms(d time.Duration) string {
	return strconv.FormatInt(d.Round(time.Millisecond).Milliseconds(), 10)
}

// secs formats a duration as seconds with 3 decimals.
func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }
