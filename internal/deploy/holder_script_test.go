package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy/remote"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
)

// holder.sh, the lock holder (sessionlock.go), under each shell.

// tail is what Finish sends the holder: records, the prune marker, ids, the end.
func tail(records []string, prune []string, whole bool) string {
	var b strings.Builder
	for _, r := range records {
		b.WriteString(r + "\n")
	}
	b.WriteString("--prune--\n")
	for _, id := range prune {
		b.WriteString(id + "\n")
	}
	if whole {
		b.WriteString("--end--\n")
	}
	return b.String()
}

func TestHolderScript(t *testing.T) {
	forEachShell(t, func(t *testing.T, sh posixShell) {
		t.Run("finishes: appends, keeps the log short, prunes with the release's files", func(t *testing.T) {
			l := Layout{Root: filepath.Join(t.TempDir(), "site")}
			var old strings.Builder
			for i := range maxLogRecords + 5 {
				fmt.Fprintf(&old, `{"id":"%014d","status":"success"}`+"\n", i)
			}
			writeFiles(t, l.Root, map[string]string{".atomic-deploy/releases.log": old.String(), "releases/20260101000000/app/a": "a", "releases/20260102000000/b": "b"})
			for _, p := range l.ReleaseFiles("20260101000000") {
				writeFiles(t, "/", map[string]string{p: "x"})
			}
			writeFiles(t, "/", map[string]string{l.Manifest("20260102000000"): "keep"})
			os.Symlink("releases/20260102000000", l.Current())
			os.Symlink("releases/20260101000000", filepath.Join(l.Root, tempLinkPrefix+"stale"))
			cmd := holderCommand(l, time.Second, Owner{Actor: "test", Token: "t0k3n"}, rootWant{})
			r := sh.run(t, cmd, strings.NewReader(tail([]string{`{"id":"20260103000000","status":"success"}`}, []string{"20260101000000", "20260199999999"}, true)))
			if r.status != 0 || !strings.HasPrefix(r.stdout, "locked ") {
				t.Fatalf("status %d, stdout %q, stderr %q", r.status, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stderr, "could not remove old release 20260199999999") || strings.Contains(r.stderr, "20260101000000") {
				t.Errorf("holder said %q", r.stderr)
			}
			lines := strings.Split(strings.TrimSpace(readFile(t, l.Log())), "\n")
			if len(lines) != maxLogRecords || !strings.Contains(lines[len(lines)-1], "20260103000000") {
				t.Errorf("log has %d lines, last %q", len(lines), lines[len(lines)-1])
			}
			for _, p := range append(l.ReleaseFiles("20260101000000"), l.Release("20260101000000"), l.flockOwner(), filepath.Join(l.Root, tempLinkPrefix+"stale")) {
				if exists(p) {
					t.Errorf("%s is still there", p)
				}
			}
			if !exists(l.Release("20260102000000")) || readFile(t, l.Manifest("20260102000000")) != "keep" {
				t.Error("a release not named was deleted, or its manifest")
			}
			// Deleted once the deploy let go.
			waitUnlocked(t, l)
			if left, _ := os.ReadDir(l.Trash()); len(left) > 0 {
				t.Errorf("the trash keeps %d entries", len(left))
			}
		})
		t.Run("names what the last holder could not delete, and tries again", func(t *testing.T) {
			l := Layout{Root: filepath.Join(t.TempDir(), "site")}
			writeFiles(t, l.Trash(), map[string]string{"20260101000000-77/app/a": "a"})
			r := sh.run(t, holderCommand(l, time.Second, Owner{Actor: "test"}, rootWant{}), strings.NewReader(tail(nil, nil, true)))
			if r.status != 0 || !strings.Contains(r.stderr, "old release 20260101000000 is out of releases/, but "+l.Trash()+"/20260101000000-77 could not be deleted completely") {
				t.Errorf("status %d, stderr %q", r.status, r.stderr)
			}
			waitUnlocked(t, l)
			if left, _ := os.ReadDir(l.Trash()); len(left) > 0 {
				t.Errorf("the trash keeps %d entries", len(left))
			}
		})
		t.Run("heartbeats refresh the identity file and stay out of the log", func(t *testing.T) {
			l := Layout{Root: filepath.Join(t.TempDir(), "site")}
			long := time.Now().Add(-time.Hour)
			var refreshed bool
			in := &scriptedReader{steps: []func() string{
				func() string {
					for deadline := time.Now().Add(5 * time.Second); !exists(l.flockOwner()) && time.Now().Before(deadline); {
						time.Sleep(5 * time.Millisecond)
					}
					os.Chtimes(l.flockOwner(), long, long)
					return remote.Beat + "\n"
				},
				func() string {
					deadline := time.Now().Add(5 * time.Second)
					for !refreshed && time.Now().Before(deadline) {
						info, err := os.Stat(l.flockOwner())
						refreshed = err == nil && time.Since(info.ModTime()) < time.Minute
						time.Sleep(10 * time.Millisecond)
					}
					return `{"id":"20260103000000","status":"success"}` + "\n" + remote.Beat + "\n" + remote.TailPrune + "\n" + remote.TailEnd + "\n"
				},
			}}
			r := sh.run(t, holderCommand(l, time.Second, Owner{Actor: "test"}, rootWant{}), in)
			if r.status != 0 {
				t.Fatalf("status %d, stderr %q", r.status, r.stderr)
			}
			if !refreshed {
				t.Error("a heartbeat did not refresh the identity file")
			}
			if got := readFile(t, l.Log()); got != `{"id":"20260103000000","status":"success"}`+"\n" {
				t.Errorf("log %q", got)
			}
		})
		t.Run("a cut tail is not acted on", func(t *testing.T) {
			l := Layout{Root: filepath.Join(t.TempDir(), "site")}
			writeFiles(t, l.Root, map[string]string{"releases/20260101000000/a": "a"})
			r := sh.run(t, holderCommand(l, time.Second, Owner{}, rootWant{}), strings.NewReader(tail([]string{`{"id":"x","status":"success"}`}, []string{"20260101000000"}, false)))
			if r.status != 4 || exists(l.Log()) || !exists(l.Release("20260101000000")) {
				t.Errorf("status %d (want 4), log written %v, release deleted %v", r.status, exists(l.Log()), !exists(l.Release("20260101000000")))
			}
		})
		t.Run("current that is not a link: nothing touched", func(t *testing.T) {
			l := Layout{Root: filepath.Join(t.TempDir(), "site")}
			writeFiles(t, l.Root, map[string]string{"current/index.html": "live"})
			r := sh.run(t, holderCommand(l, time.Second, Owner{}, rootWant{}), strings.NewReader(""))
			if r.status != 65 || r.stdout != "notlink\n" || exists(l.Releases()) || exists(l.Meta()) {
				t.Errorf("status %d, stdout %q; created: releases %v, meta %v", r.status, r.stdout, exists(l.Releases()), exists(l.Meta()))
			}
		})
		t.Run("snapshot", func(t *testing.T) { testSnapshot(t, sh) })
		t.Run("no copy made ahead where the upload cannot be a tar stream", func(t *testing.T) {
			l := Layout{Root: filepath.Join(t.TempDir(), "site")}
			deployLive(t, l, map[string]string{"a.php": "a"})
			sealLive(t, sh, l)
			// A tar that is not GNU tar: the upload goes over SFTP.
			bin := t.TempDir()
			writeFiles(t, bin, map[string]string{"tar": "#!/bin/sh\necho 'bsdtar 3.7.2'\n"})
			os.Chmod(filepath.Join(bin, "tar"), 0o755)
			holder := startHolder(t, sh, l, rootWant{plan: true, copies: true}, "PATH="+bin+":"+os.Getenv("PATH"))
			time.Sleep(200 * time.Millisecond)
			if left, _ := filepath.Glob(filepath.Join(l.Meta(), ".ahead-*")); len(left) > 0 {
				t.Errorf("a copy was made ahead for an upload that cannot take it: %q", left)
			}
			if r := holder.end(t, tail(nil, nil, true)); r.status != 0 {
				t.Errorf("the holder ended with %d: %s", r.status, r.stderr)
			}
		})
		t.Run("a copy made ahead that no upload takes is stopped, not waited for", func(t *testing.T) {
			for _, c := range []struct {
				how         string
				byEndHolder bool
			}{
				{"the holder ends", false},
				{"end-holder.sh ends the holder", true},
			} {
				how := c.how
				l := sealedLive(t, sh, 2001)
				bin, calls := copyShims(t, 1, 1)
				holder := startHolder(t, sh, l, rootWant{plan: true, copies: true}, "PATH="+bin+":"+os.Getenv("PATH"))
				copying := func() int { return len(copyBatches(calls, l.aheadCopy(holder.pid))) }
				waitUntil(t, 5*time.Second, func() bool { return copying() > 0 }, "the copy did not start")
				if !c.byEndHolder {
					if r := holder.end(t, tail(nil, nil, true)); r.status != 0 {
						t.Errorf("%s: the holder ended with %d: %s", how, r.status, r.stderr)
					}
					if left, _ := filepath.Glob(filepath.Join(l.Meta(), ".ahead-*")); len(left) > 0 {
						t.Errorf("%s: left behind: %q", how, left)
					}
				} else {
					if r := sh.run(t, remote.EndHolder.Command(holder.pid, l.Meta(), l.FlockFile()), nil); r.status != 0 {
						t.Errorf("%s: status %d: %s", how, r.status, r.stderr)
					}
					waitUnlocked(t, l)
				}
				// Three processes of 667 files, one at a time: the first was
				// copying when the stop came.
				if n := copying(); n != 1 {
					t.Errorf("%s: %d copying processes ran, want 1", how, n)
				}
			}
		})
		t.Run("a holder that ends lets no upload switch while it stops its copy", func(t *testing.T) {
			l := sealedLive(t, sh, 2001)
			bin, calls := copyShims(t, 1, 1)
			holder := startHolder(t, sh, l, rootWant{plan: true, copies: true}, "PATH="+bin+":"+os.Getenv("PATH"))
			waitUntil(t, 5*time.Second, func() bool { return len(copyBatches(calls, l.aheadCopy(holder.pid))) > 0 }, "the copy did not start")
			io.WriteString(holder.stdin, tail(nil, nil, true))
			holder.stdin.Close()
			// The identity file switch_now looks for is gone before the holder
			// waits for its copy (a second a process here): an upload whose
			// deploy broke off cannot switch to a copy being deleted.
			waitUntil(t, 5*time.Second, func() bool { return !exists(l.flockOwner()) }, "the identity file stays while the copy stops")
			if err := holder.cmd.Process.Signal(syscall.Signal(0)); err != nil {
				t.Errorf("the holder ended before its copy did (%v): nothing shown", err)
			}
			holder.cmd.Wait()
			waitUnlocked(t, l)
			if left, _ := filepath.Glob(filepath.Join(l.Meta(), ".ahead-*")); len(left) > 0 {
				t.Errorf("left behind: %q", left)
			}
		})
		t.Run("a copy begun by the seal's list is not offered where the live release was edited", func(t *testing.T) {
			l := sealedLive(t, sh, 2001)
			writeFiles(t, l.Release("live"), map[string]string{"f/0007.php": "edited"})
			bin, calls := copyShims(t, 1, 1)
			holder := startHolder(t, sh, l, rootWant{plan: true, copies: true}, "PATH="+bin+":"+os.Getenv("PATH"))
			// Told once the snapshot is out: no upload waits for it, or takes it.
			ahead := l.aheadCopy(holder.pid)
			if exists(ahead+".lock") || !exists(ahead+".stop") {
				t.Errorf("the copy's lock is there %v, told to stop %v", exists(ahead+".lock"), exists(ahead+".stop"))
			}
			if r := holder.end(t, tail(nil, nil, true)); r.status != 0 {
				t.Errorf("the holder ended with %d: %s", r.status, r.stderr)
			}
			if left, _ := filepath.Glob(filepath.Join(l.Meta(), ".ahead-*")); len(left) > 0 {
				t.Errorf("left behind: %q", left)
			}
			if batches := copyBatches(calls, l.aheadCopy(holder.pid)); len(batches) > 1 {
				t.Errorf("the copy went on after it was told to stop: %v", batches)
			}
		})
		t.Run("a copy made ahead is as many equal batches on each core", func(t *testing.T) {
			for _, c := range []struct{ files, cores, processes, each int }{
				{2001, 1, 3, 667},
				{2500, 2, 4, 625},
				{1999, 2, 2, 1000},
				{3, 4, 3, 1},
			} {
				l := sealedLive(t, sh, c.files)
				bin, calls := copyShims(t, c.cores, 0)
				holder := startHolder(t, sh, l, rootWant{plan: true, copies: true}, "PATH="+bin+":"+os.Getenv("PATH"))
				ahead := l.aheadCopy(holder.pid)
				waitUntil(t, 10*time.Second, func() bool { return exists(ahead + ".done") }, "the copy did not end")
				batches := copyBatches(calls, ahead)
				if len(batches) != c.processes || slices.Max(batches) != c.each {
					t.Errorf("%d files on %d cores: batches %v, want %d of %d", c.files, c.cores, batches, c.processes, c.each)
				}
				holder.end(t, tail(nil, nil, true))
			}
		})
	})
}

// sealedLive is a deploy root whose live release, sealed, holds n files.
func sealedLive(t *testing.T, sh posixShell, n int) Layout {
	t.Helper()
	l := Layout{Root: filepath.Join(t.TempDir(), "site")}
	files := map[string]string{}
	for i := range n {
		files[fmt.Sprintf("f/%04d.php", i)] = "x"
	}
	deployLive(t, l, files)
	sealLive(t, sh, l)
	return l
}

// copyShims is a directory for PATH where cp --parents (copy_listed's)
// logs how many files each process copies and where to, a line each, in
// calls (copyBatches reads it), then takes pause seconds; nproc says cores.
func copyShims(t *testing.T, cores, pause int) (bin, calls string) {
	t.Helper()
	cp, err := exec.LookPath("cp")
	if err != nil {
		t.Fatal(err)
	}
	bin = t.TempDir()
	calls = filepath.Join(bin, "calls")
	writeFiles(t, bin, map[string]string{
		// --parents -p --reflink=auto -t TO -- FILES...
		"cp":    fmt.Sprintf("#!/bin/sh\nif [ \"$1\" = --parents ]; then\n\techo $(($# - 6)) \"$5\" >> %s\n\tsleep %d\nfi\nexec %s \"$@\"\n", calls, pause, cp),
		"nproc": fmt.Sprintf("#!/bin/sh\necho %d\n", cores),
	})
	for _, name := range []string{"cp", "nproc"} {
		os.Chmod(filepath.Join(bin, name), 0o755)
	}
	return bin, calls
}

// copyBatches is how many files each process that copyShims logged copied
// into dir.
func copyBatches(calls, dir string) []int {
	data, _ := os.ReadFile(calls)
	var batches []int
	for _, line := range strings.Split(string(data), "\n") {
		if n, to, ok := strings.Cut(line, " "); ok && to == dir {
			files, _ := strconv.Atoi(n)
			batches = append(batches, files)
		}
	}
	return batches
}

// waitUnlocked waits until no holder.sh holds l's lock: after its deploy
// let go, it may still delete what the upload did not take, and make the
// spare.
func waitUnlocked(t *testing.T, l Layout) {
	t.Helper()
	waitUntil(t, time.Minute, func() bool { return unlocked(l) }, "the lock stays held")
}

// unlocked says whether l's lock can be taken now.
func unlocked(l Layout) bool {
	return exec.Command("flock", "-n", l.FlockFile(), "true").Run() == nil
}

// waitUntil polls done for up to limit, failing the test with why.
func waitUntil(t *testing.T, limit time.Duration, done func() bool, why string) {
	t.Helper()
	for deadline := time.Now().Add(limit); !done(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(why)
		}
	}
}

// runningHolder is holder.sh started under a shell, past its snapshot.
type runningHolder struct {
	pid    string // on the server, as it said "locked <pid>"
	stdin  io.WriteCloser
	cmd    *exec.Cmd
	out    *bytes.Buffer
	layout Layout
}

// startHolder runs holder.sh for l under sh until it printed its snapshot,
// with env added to the environment.
func startHolder(t *testing.T, sh posixShell, l Layout, want rootWant, env ...string) *runningHolder {
	t.Helper()
	return startHolderWaiting(t, sh, l, want, time.Second, env...)
}

// startHolderWaiting is startHolder waiting up to wait for the lock.
func startHolderWaiting(t *testing.T, sh posixShell, l Layout, want rootWant, wait time.Duration, env ...string) *runningHolder {
	t.Helper()
	cmd := holderCommand(l, wait, Owner{Actor: "test", Token: randomToken()}, want)
	c := exec.Command(sh.argv[0], append(append(sh.argv[1:], "-c", cmd.Script), cmd.Argv()...)...)
	c.Env = append(os.Environ(), env...)
	h := &runningHolder{cmd: c, out: &bytes.Buffer{}, layout: l}
	c.Stderr = h.out
	stdin, err := c.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	h.stdin = stdin
	t.Cleanup(func() { stdin.Close(); c.Wait(); waitUnlocked(t, l) })
	br := bufio.NewReader(stdout)
	line, _ := br.ReadString('\n')
	pid, ok := strings.CutPrefix(strings.TrimSpace(line), "locked ")
	if !ok {
		t.Fatalf("%s: the holder said %q", sh.name, line)
	}
	if _, err := parseSnapshot(br, want); err != nil {
		t.Fatalf("%s: snapshot: %v", sh.name, err)
	}
	h.pid = pid
	return h
}

// end sends the holder its tail and waits until it exited and what it
// left running let go of the lock, stopping the spare's making as the next
// deploy would (its tests wait for it: endMakingSpare).
func (h *runningHolder) end(t *testing.T, tail string) ran {
	t.Helper()
	r := h.exit(tail)
	waitUntil(t, time.Minute, func() bool {
		os.WriteFile(h.layout.spare()+".stop", nil, 0o644)
		return unlocked(h.layout)
	}, "the lock stays held")
	return r
}

// endMakingSpare is end, letting the holder make the spare.
func (h *runningHolder) endMakingSpare(t *testing.T, tail string) ran {
	t.Helper()
	r := h.exit(tail)
	waitUnlocked(t, h.layout)
	return r
}

// exit sends the holder its tail and waits for it to exit.
func (h *runningHolder) exit(tail string) ran {
	io.WriteString(h.stdin, tail)
	h.stdin.Close()
	err := h.cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return ran{"", h.out.String(), exit.ExitCode()}
	}
	return ran{"", h.out.String(), 0}
}

// deployLive makes release "live" of l, holding files, as a deploy leaves
// it: its stored manifest, and current pointing to it. Not yet sealed.
func deployLive(t *testing.T, l Layout, files map[string]string) {
	t.Helper()
	writeFiles(t, l.Release("live"), files)
	src := t.TempDir()
	writeFiles(t, src, files)
	m, err := release.Build(t.Context(), release.Options{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	m.Encode(&b)
	writeFiles(t, "/", map[string]string{l.Manifest("live"): b.String()})
	os.Symlink("releases/live", l.Current())
}

// sealLive seals release "live" of l under sh (seal.sh).
func sealLive(t *testing.T, sh posixShell, l Layout) {
	t.Helper()
	if r := sh.run(t, remote.Seal.Command(l.Release("live"), l.Seal("live"), "", ""), nil); r.status != 0 {
		t.Fatalf("seal: %d %s", r.status, r.stderr)
	}
}
