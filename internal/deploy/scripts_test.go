package deploy

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy/remote"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// The scripts of remote/ run under whatever /bin/sh a server has: the
// tests run each under dash (Debian's), bash and busybox sh (small images).

// posixShell is one /bin/sh a server may have.
type posixShell struct {
	name string
	argv []string // what runs `sh -c SCRIPT ARG0 ARGS...`, up to -c
}

// shells lists the shells to run the scripts under. Each must be installed
// where the test suite is required to run everything (make test installs
// them); elsewhere a missing one is skipped.
func shells(t *testing.T) []posixShell {
	t.Helper()
	var out []posixShell
	for _, s := range []posixShell{{"dash", []string{"dash"}}, {"bash", []string{"bash", "--posix"}}, {"busybox", []string{"busybox", "sh"}}} {
		if _, err := exec.LookPath(s.argv[0]); err != nil {
			if os.Getenv("ATOMIC_DEPLOY_REQUIRE_SSHD") == "1" {
				t.Fatalf("%s is not installed (make test installs it)", s.name)
			}
			t.Logf("%s is not installed: skipped", s.name)
			continue
		}
		out = append(out, s)
	}
	return out
}

// ran is how a script ended.
type ran struct {
	stdout, stderr string
	status         int
}

// run runs cmd under sh with stdin as its input.
func (sh posixShell) run(t *testing.T, cmd transport.Command, stdin io.Reader) ran {
	t.Helper()
	c := exec.Command(sh.argv[0], append(append(sh.argv[1:], "-c", cmd.Script), cmd.Argv()...)...)
	var out, errOut bytes.Buffer
	c.Stdin, c.Stdout, c.Stderr = stdin, &out, &errOut
	err := c.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return ran{out.String(), errOut.String(), exit.ExitCode()}
	case err != nil:
		t.Fatalf("%s: %v", sh.name, err)
	}
	return ran{out.String(), errOut.String(), 0}
}

// forEachShell runs f as a subtest under every shell.
func forEachShell(t *testing.T, f func(t *testing.T, sh posixShell)) {
	for _, sh := range shells(t) {
		t.Run(sh.name, func(t *testing.T) { f(t, sh) })
	}
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

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
	})
}

func TestUploadScript(t *testing.T) {
	forEachShell(t, func(t *testing.T, sh posixShell) {
		// upload.sh bringing release id (a directory app, and the files
		// of plan copied from release "live") with the new current link,
		// switching on behalf of sl when it is set.
		uploadPlan := func(t *testing.T, l Layout, sl *sessionLock, id string, plan *Plan) (transport.Command, io.Reader) {
			t.Helper()
			next := filepath.Join(l.Root, tempLinkPrefix+"new")
			args := []string{l.Root, l.Log(), `{"id":"` + id + `","status":"started"}`, "", "", l.Manifest(id), "", "", "", next, l.Current(), `{"id":"` + id + `","status":"success"}`,
				l.Release("live"), l.Release(id)}
			if sl != nil {
				args[6], args[7], args[8], _ = sl.guard()
			}
			b := bytes.NewBuffer(encodeReuseLists(plan))
			plan.Dirs = append(plan.Dirs, &release.Entry{Path: "app", Type: release.TypeDir, Mode: 0o755})
			shape := tarShape{top: l.relative(l.Release(id)), now: time.Now(), extras: []tarExtra{
				{Name: l.relative(l.Manifest(id)), Load: func() ([]byte, error) { return []byte("manifest"), nil }},
				{Name: l.relative(next), Target: currentTarget(id)}}}
			if err := plan.writeTar(b, shape, &uploadStats{}); err != nil {
				t.Fatal(err)
			}
			return remote.Upload.Command(args...), b
		}
		upload := func(t *testing.T, l Layout, sl *sessionLock, id string) (transport.Command, io.Reader) {
			return uploadPlan(t, l, sl, id, &Plan{})
		}
		lines := func(t *testing.T, l Layout) string {
			t.Helper()
			return strings.Join(strings.Fields(readFile(t, l.Log())), " ")
		}
		t.Run("extracts, switches while the lock is ours, records", func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "site")
			l := Layout{Root: root}
			sl := holdLock(t, root)
			defer sl.release(t.Context())
			cmd, stream := upload(t, l, sl, "20260101000000")
			r := sh.run(t, cmd, stream)
			if r.status != 0 {
				t.Fatalf("status %d: %s", r.status, r.stderr)
			}
			if target, _ := os.Readlink(l.Current()); target != "releases/20260101000000" || !exists(filepath.Join(l.Release("20260101000000"), "app")) {
				t.Errorf("current -> %q", target)
			}
			if got := lines(t, l); got != `{"id":"20260101000000","status":"started"} {"id":"20260101000000","status":"success"}` {
				t.Errorf("log: %s", got)
			}
		})
		t.Run("no switch once the lock is not ours", func(t *testing.T) {
			for _, how := range []string{"another deploy's identity", "holder gone"} {
				root := filepath.Join(t.TempDir(), "site")
				l := Layout{Root: root}
				sl := holdLock(t, root)
				cmd, stream := upload(t, l, sl, "20260101000000")
				if how == "holder gone" {
					sl.release(t.Context())
				} else {
					defer sl.release(t.Context())
					os.WriteFile(l.flockOwner(), []byte(`{"token":"someone else"}`), 0o644)
				}
				r := sh.run(t, cmd, stream)
				if r.status != remote.StatusNotSwitched || exists(l.Current()) || !exists(l.Release("20260101000000")) {
					t.Errorf("%s: status %d (want %d), current there %v", how, r.status, remote.StatusNotSwitched, exists(l.Current()))
				}
				if got := lines(t, l); got != `{"id":"20260101000000","status":"started"}` {
					t.Errorf("%s: log: %s", how, got)
				}
			}
		})
		t.Run("reused files become private copies", func(t *testing.T) {
			l := Layout{Root: filepath.Join(t.TempDir(), "site")}
			writeFiles(t, l.Release("live"), map[string]string{"vendor/a b/x.php": "x", "lib/y.php": "y", "moved.php": "m"})
			os.MkdirAll(l.Manifests(), 0o755)
			os.Chmod(filepath.Join(l.Release("live"), "lib/y.php"), 0o751)
			plan := &Plan{Reuse: []Reuse{
				{Entry: &release.Entry{Path: "vendor/a b/x.php"}, From: "vendor/a b/x.php"},
				{Entry: &release.Entry{Path: "lib/y.php"}, From: "lib/y.php"},
				{Entry: &release.Entry{Path: "new/place/moved.php"}, From: "moved.php"},
			}}
			cmd, stream := uploadPlan(t, l, nil, "20260101000000", plan)
			if r := sh.run(t, cmd, stream); r.status != 0 {
				t.Fatalf("status %d: %s", r.status, r.stderr)
			}
			for to, from := range map[string]string{"vendor/a b/x.php": "vendor/a b/x.php", "lib/y.php": "lib/y.php", "new/place/moved.php": "moved.php"} {
				src, dst := filepath.Join(l.Release("live"), from), filepath.Join(l.Release("20260101000000"), to)
				a, errA := os.Stat(src)
				b, errB := os.Stat(dst)
				if errA != nil || errB != nil || os.SameFile(a, b) || a.Mode() != b.Mode() || !a.ModTime().Equal(b.ModTime()) || readFile(t, src) != readFile(t, dst) {
					t.Errorf("%s: not a private copy of %s with its mode and mtime (%v %v)", to, from, errA, errB)
				}
			}
			if left, _ := filepath.Glob(filepath.Join(l.Manifests(), "*.tmp")); len(left) > 0 {
				t.Errorf("left behind: %q", left)
			}
		})
		t.Run("the lock holder's copy made ahead becomes the release, trimmed to what is reused", func(t *testing.T) {
			l := Layout{Root: filepath.Join(t.TempDir(), "site")}
			live := l.Release("live")
			deployed := map[string]string{"vendor/a b/x.php": "x", "lib/y.php": "y", `lib/we"ird.php`: "w", "moved.php": "m", "changed.php": "old", "gone/deep/old.php": "g"}
			writeFiles(t, live, deployed)
			// What hooks left in the live release: none of it is reused.
			writeFiles(t, live, map[string]string{"node_modules/x/y.js": "j", "bootstrap/cache.php": "c"})
			src := t.TempDir()
			writeFiles(t, src, deployed)
			m, err := release.Build(t.Context(), release.Options{Source: src})
			if err != nil {
				t.Fatal(err)
			}
			var mbuf bytes.Buffer
			m.Encode(&mbuf)
			writeFiles(t, "/", map[string]string{l.Manifest("live"): mbuf.String()})
			os.MkdirAll(filepath.Join(live, "empty/too"), 0o755)
			os.MkdirAll(filepath.Join(live, "public"), 0o755)
			os.Symlink("../storage", filepath.Join(live, "public/storage"))
			os.Chmod(filepath.Join(live, "lib/y.php"), 0o751)
			os.Symlink("releases/live", l.Current())
			if r := sh.run(t, remote.Seal.Command(live, l.Seal("live"), "", ""), nil); r.status != 0 {
				t.Fatalf("seal: %d %s", r.status, r.stderr)
			}
			plan := &Plan{Reuse: []Reuse{
				{Entry: &release.Entry{Path: "vendor/a b/x.php"}, From: "vendor/a b/x.php"},
				{Entry: &release.Entry{Path: "lib/y.php"}, From: "lib/y.php"},
				// A name the holder's sed does not read: copied by upload.sh.
				{Entry: &release.Entry{Path: `lib/we"ird.php`}, From: `lib/we"ird.php`},
				{Entry: &release.Entry{Path: "new/place/moved.php"}, From: "moved.php"},
			}}
			for _, ahead := range []bool{true, false} {
				id := "20260102000000"
				os.RemoveAll(l.Release(id))
				// A holder killed before it ended left its copy.
				writeFiles(t, l.Meta(), map[string]string{".ahead-1/a.php": "stale", ".ahead-1.done": ""})
				holder := startHolder(t, sh, l, rootWant{plan: true, copyAhead: ahead})
				if exists(filepath.Join(l.Meta(), ".ahead-1")) || exists(filepath.Join(l.Meta(), ".ahead-1.done")) {
					t.Errorf("ahead %v: a killed holder's copy is still there", ahead)
				}
				cmd, stream := uploadPlan(t, l, nil, id, plan)
				cmd.Args = append(cmd.Args, "", l.aheadCopy(holder.pid))
				if r := sh.run(t, cmd, stream); r.status != 0 {
					t.Fatalf("ahead %v: status %d: %s", ahead, r.status, r.stderr)
				}
				var got []string
				filepath.WalkDir(l.Release(id), func(p string, d os.DirEntry, err error) error {
					rel, _ := filepath.Rel(l.Release(id), p)
					got = append(got, rel)
					return err
				})
				if want := []string{".", "app", "lib", `lib/we"ird.php`, "lib/y.php", "new", "new/place", "new/place/moved.php", "vendor", "vendor/a b", "vendor/a b/x.php"}; !slices.Equal(got, want) {
					t.Errorf("ahead %v: the release holds %q, want %q", ahead, got, want)
				}
				for to, from := range map[string]string{"vendor/a b/x.php": "vendor/a b/x.php", "lib/y.php": "lib/y.php", `lib/we"ird.php`: `lib/we"ird.php`, "new/place/moved.php": "moved.php"} {
					src, dst := filepath.Join(live, from), filepath.Join(l.Release(id), to)
					a, errA := os.Stat(src)
					b, errB := os.Stat(dst)
					if errA != nil || errB != nil || os.SameFile(a, b) || a.Mode() != b.Mode() || !a.ModTime().Equal(b.ModTime()) || readFile(t, src) != readFile(t, dst) {
						t.Errorf("ahead %v: %s is not a private copy of %s with its mode and mtime (%v %v)", ahead, to, from, errA, errB)
					}
				}
				if r := holder.end(tail(nil, nil, true)); r.status != 0 {
					t.Errorf("ahead %v: the holder ended with %d: %s", ahead, r.status, r.stderr)
				}
				if left, _ := filepath.Glob(filepath.Join(l.Meta(), ".ahead-*")); len(left) > 0 {
					t.Errorf("ahead %v: left behind: %q", ahead, left)
				}
			}
			if readFile(t, filepath.Join(live, "node_modules/x/y.js")) != "j" {
				t.Error("the live release changed")
			}
		})
		t.Run("a stream cut short is not taken for whole", func(t *testing.T) {
			// The release's directory gzip'd, a file raw, then the input ends
			// where the next member would start (GNU tar takes that for a
			// whole archive).
			var head, gzipped, raw bytes.Buffer
			tw := tar.NewWriter(&head)
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "releases/20260101000000/", Mode: 0o755})
			tw.Flush()
			zw := gzip.NewWriter(&gzipped)
			zw.Write(head.Bytes())
			zw.Close()
			tw = tar.NewWriter(&raw)
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "releases/20260101000000/a", Mode: 0o644, Size: 1})
			tw.Write([]byte("a"))
			tw.Flush()
			lists := encodeReuseLists(&Plan{})
			cutRaw := fmt.Appendf(slices.Clone(lists), "%d\n%s0\n%s", gzipped.Len(), gzipped.Bytes(), raw.Bytes())
			for _, c := range []struct {
				name string
				cut  func(whole []byte) []byte
			}{
				{"raw, between two members", func([]byte) []byte { return cutRaw }},
				{"gzip'd, in a chunk", func(whole []byte) []byte { return whole[:len(lists)+(len(whole)-len(lists))/2] }},
				{"nothing", func([]byte) []byte { return append(slices.Clone(lists), "0\n"...) }},
			} {
				root := filepath.Join(t.TempDir(), "site")
				l := Layout{Root: root}
				sl := holdLock(t, root)
				cmd, whole := upload(t, l, sl, "20260101000000")
				full, _ := io.ReadAll(whole)
				r := sh.run(t, cmd, bytes.NewReader(c.cut(full)))
				if r.status == 0 || r.status >= 86 || exists(l.Current()) {
					t.Errorf("%s: status %d, current there %v", c.name, r.status, exists(l.Current()))
				}
				sl.release(t.Context())
			}
		})
		t.Run("a broken stream: tar's status, nothing after it", func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "site")
			l := Layout{Root: root}
			sl := holdLock(t, root)
			defer sl.release(t.Context())
			cmd, _ := upload(t, l, sl, "20260101000000")
			r := sh.run(t, cmd, strings.NewReader("not a tar stream"))
			if r.status == 0 || r.status >= 86 || exists(l.Current()) {
				t.Errorf("status %d, current there %v", r.status, exists(l.Current()))
			}
			if got := lines(t, l); got != `{"id":"20260101000000","status":"started"}` {
				t.Errorf("log: %s", got)
			}
		})
	})
}

// runHookUnder runs script as a hook in dir under sh, its input held open
// until it ended, as a deploy does; input, when it is not "", replaces
// what the deploy sends, and is all there is (a connection that dropped).
func runHookUnder(t *testing.T, sh posixShell, dir string, env map[string]string, script, input string) ran {
	t.Helper()
	return runHookFinishing(t, sh, dir, env, script, input, finishing{})
}

// runHookFinishing is runHookUnder for a hook that also finishes a release.
// The hook runs in a process group of its own, as sshd and the local
// transport start it: its watcher may end its group.
func runHookFinishing(t *testing.T, sh posixShell, dir string, env map[string]string, script, input string, then finishing) ran {
	t.Helper()
	cmd, in := hookCommand(dir, env, script, then)
	if input != "" {
		in = input
	}
	c := exec.Command(sh.argv[0], append(append(sh.argv[1:], "-c", cmd.Script), cmd.Argv()...)...)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	stdin, err := c.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, in)
	if input != "" {
		stdin.Close()
	}
	err = c.Wait() // closes stdin once the hook ended, as a deploy does
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return ran{out.String(), errOut.String(), exit.ExitCode()}
	}
	if err != nil {
		t.Fatal(err)
	}
	return ran{out.String(), errOut.String(), 0}
}

func TestHookScript(t *testing.T) {
	forEachShell(t, func(t *testing.T, sh posixShell) {
		t.Run("in its directory, with its environment verbatim", func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), `my "app" it's $(id) `+"`x`")
			os.Mkdir(dir, 0o755)
			env := map[string]string{
				"RELEASE_ID": "20261125231842", "RELEASE_PATH": dir,
				"QUOTES": `it's "quoted" '\''`, "MULTI": "line 1\nline 2\n\nline 4\n",
				"DOLLAR": "$HOME $(id) `id` ${x:-y}", "BACKSLASH": `a\nb\\c\`, "EMPTY": "", "GLOB": "* ? [a]",
			}
			// The user's own script uses both kinds of quotes, a here-document
			// and a pipe; it prints every variable between markers.
			user := `set -u
printf '[%s]' "$(pwd)"
for v in RELEASE_ID RELEASE_PATH QUOTES MULTI DOLLAR BACKSLASH EMPTY GLOB; do
  eval "val=\${$v}"
  printf "<%s=%s>" "$v" "$val"
done
cat <<'EOF' | tr a-z A-Z
it's "here"
EOF
echo "done: 'single' in double"`
			r := runHookUnder(t, sh, dir, env, user, "")
			var want strings.Builder
			want.WriteString("[" + dir + "]")
			for _, k := range []string{"RELEASE_ID", "RELEASE_PATH", "QUOTES", "MULTI", "DOLLAR", "BACKSLASH", "EMPTY", "GLOB"} {
				want.WriteString("<" + k + "=" + env[k] + ">")
			}
			want.WriteString("IT'S \"HERE\"\ndone: 'single' in double\n")
			if r.status != 0 || r.stdout != want.String() {
				t.Errorf("status %d, printed\n%q\nwant\n%q\n%s", r.status, r.stdout, want.String(), r.stderr)
			}
		})
		t.Run("stops at the first failure, with its status", func(t *testing.T) {
			r := runHookUnder(t, sh, "/", nil, "echo one\nfalse\necho two", "")
			if r.status == 0 || r.stdout != "one\n" {
				t.Errorf("status %d, printed %q", r.status, r.stdout)
			}
			if r := runHookUnder(t, sh, "/", nil, "exit 7", ""); r.status != 7 {
				t.Errorf("status %d, want 7", r.status)
			}
		})
		t.Run("not run outside its directory, nor from a cut input", func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "ran")
			script := `touch "$MARKER"`
			if r := runHookUnder(t, sh, filepath.Join(t.TempDir(), "no such dir"), map[string]string{"MARKER": marker}, script, ""); r.status == 0 || exists(marker) {
				t.Errorf("missing directory: status %d, ran %v", r.status, exists(marker))
			}
			_, whole := hookCommand(t.TempDir(), map[string]string{"MARKER": marker}, script, finishing{})
			cut := whole[:strings.LastIndex(strings.TrimSuffix(whole, "\n"), "\n")+1] // all but the end line
			if r := runHookUnder(t, sh, t.TempDir(), nil, script, cut); r.status == 0 || exists(marker) {
				t.Errorf("cut input: status %d, ran %v", r.status, exists(marker))
			}
		})
		t.Run("values and syntax cannot escape", func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "escaped")
			r := runHookUnder(t, sh, "/", map[string]string{"X": "'; touch " + marker + "; '"}, "echo 'unterminated\n; touch "+marker, "")
			if r.status == 0 || exists(marker) {
				t.Errorf("status %d, escaped %v", r.status, exists(marker))
			}
		})
		t.Run("a hook that went well finishes the release: seal and link", func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"a.php": "a"})
			sealFile, link := filepath.Join(t.TempDir(), "r.seal"), filepath.Join(t.TempDir(), "next")
			if r := runHookFinishing(t, sh, dir, nil, "echo b > b.php", "", finishing{seal: sealFile, link: link, target: "releases/r"}); r.status != 0 {
				t.Fatalf("status %d: %s", r.status, r.stderr)
			}
			seal, err := parseSeal([]byte(readFile(t, sealFile)))
			if err != nil || len(seal) != 2 || seal[1].Path != "b.php" || seal[1].Inode == 0 || seal[1].ChangeTime.IsZero() {
				t.Errorf("seal %+v (%v)", seal, err)
			}
			if target, _ := os.Readlink(link); target != "releases/r" {
				t.Errorf("link -> %q", target)
			}
			// A hook that fails finishes nothing.
			if r := runHookFinishing(t, sh, dir, nil, "exit 3", "", finishing{seal: sealFile + "2", link: link + "2", target: "x"}); r.status != 3 || exists(sealFile+"2") || exists(link+"2") {
				t.Errorf("a failed hook: status %d, sealed %v, linked %v", r.status, exists(sealFile+"2"), exists(link+"2"))
			}
		})
		t.Run("with the lock's guard it also switches, only while the lock is ours and the hook went well", func(t *testing.T) {
			// The release id, the hook, and what to do to the lock before it
			// runs; then what should come of it.
			type want struct {
				status   int
				switched bool
				log      string
			}
			const id, success = "20260101000000", `{"id":"20260101000000","status":"success"}`
			for _, c := range []struct {
				name, hook, record string
				lose               func(t *testing.T, l Layout, sl *sessionLock)
				want               want
			}{
				{name: "switches and records", hook: "echo ok > built", record: success, want: want{0, true, success}},
				{name: "switches, the record left to later", hook: "echo ok > built", want: want{0, true, ""}},
				{name: "another deploy's identity: not switched", hook: "true", record: success,
					lose: func(t *testing.T, l Layout, _ *sessionLock) {
						os.WriteFile(l.flockOwner(), []byte(`{"token":"someone else"}`), 0o644)
					}, want: want{remote.StatusNotSwitched, false, ""}},
				{name: "a failed hook: not switched, its status", hook: "exit 3", record: success, want: want{3, false, ""}},
				{name: "a hook exiting with the switch's own status is reported as 1", hook: "exit 87", record: success, want: want{1, false, ""}},
				{name: "the other one too", hook: "exit 88", record: success, want: want{1, false, ""}},
			} {
				root := filepath.Join(t.TempDir(), "site")
				l := Layout{Root: root}
				sl := holdLock(t, root)
				dir := l.Release(id)
				writeFiles(t, dir, map[string]string{"index.php": "x"})
				if c.lose != nil {
					c.lose(t, l, sl)
				}
				then := finishing{seal: l.Seal(id), link: filepath.Join(root, tempLinkPrefix+"x"), target: currentTarget(id)}
				sw := switching{next: then.link, current: l.Current(), log: l.Log(), success: c.record}
				sw.pid, sw.token, sw.owner, _ = sl.guard()
				then.sw = &sw
				r := runHookFinishing(t, sh, dir, nil, c.hook, "", then)
				target, _ := os.Readlink(l.Current())
				switched := target == currentTarget(id)
				log := ""
				if b, err := os.ReadFile(l.Log()); err == nil {
					log = strings.TrimSpace(string(b))
				}
				if r.status != c.want.status || switched != c.want.switched || log != c.want.log {
					t.Errorf("%s: status %d, switched %v, log %q; want %+v\n%s", c.name, r.status, switched, log, c.want, r.stderr)
				}
				if c.want.status == remote.StatusNotSwitched && !exists(then.link) {
					t.Errorf("%s: not switched, and the link to switch later is gone", c.name)
				}
				sl.release(t.Context())
			}
		})
		t.Run("its text is in no argument and its file is gone", func(t *testing.T) {
			secret := "s3cr3t-" + randomToken()
			script := `for p in /proc/[0-9]*; do { tr '\0' ' ' < "$p/cmdline"; echo; } 2>/dev/null || true; done
if [ -e "$0" ]; then echo "file still there"; fi`
			r := runHookUnder(t, sh, t.TempDir(), map[string]string{"TOKEN": secret}, "# "+secret+"\n"+script, "")
			if r.status != 0 || strings.Contains(r.stdout, secret) || strings.Contains(r.stdout, "file still there") {
				t.Errorf("status %d; the script or its environment is visible:\n%s", r.status, r.stdout)
			}
		})
	})
}

// listedAsMade is a new directory where the files made in it are listed
// in an order that depends on the order they were made in, as on tmpfs
// (ext4 lists in the order of its hashes of the names).
func listedAsMade(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "listed-as-made-")
	if err != nil {
		t.Logf("no /dev/shm (%v): the files may be listed in one order", err)
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestSmallScripts(t *testing.T) {
	forEachShell(t, func(t *testing.T, sh posixShell) {
		t.Run("writable", func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"cache/a": "a"})
			os.Chmod(filepath.Join(dir, "cache/a"), 0o444)
			os.Chmod(filepath.Join(dir, "cache"), 0o555)
			if r := sh.run(t, remote.Writable.Command(filepath.Join(dir, "cache")), nil); r.status != 0 {
				t.Fatalf("status %d: %s", r.status, r.stderr)
			}
			for p, want := range map[string]os.FileMode{"cache": 0o775, "cache/a": 0o664} {
				if info, _ := os.Stat(filepath.Join(dir, p)); info.Mode().Perm() != want {
					t.Errorf("%s: %v, want %v", p, info.Mode().Perm(), want)
				}
			}
		})
		t.Run("seal", func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"x/a.php": "a"})
			sealFile, link := filepath.Join(t.TempDir(), "r.seal"), filepath.Join(t.TempDir(), "next")
			if r := sh.run(t, remote.Seal.Command(dir, sealFile, link, "releases/r"), nil); r.status != 0 {
				t.Fatalf("status %d: %s", r.status, r.stderr)
			}
			if seal, err := parseSeal([]byte(readFile(t, sealFile))); err != nil || len(seal) != 2 || seal[1].Path != "x/a.php" {
				t.Errorf("seal %+v (%v)", seal, err)
			}
			if target, _ := os.Readlink(link); target != "releases/r" {
				t.Errorf("link -> %q", target)
			}
		})
		t.Run("seal shape: alike servers store the same bytes", func(t *testing.T) {
			// The same files, made in another order (so listed in another
			// order) with their own inodes, sealed at other times.
			names := []string{"a.php", "b/c.php", "b/d e.php", "z.php", "b/\nnewline.php"}
			shapes := make([]string, 2)
			seals := make([][]transport.Stat, 2)
			for i := range shapes {
				dir := listedAsMade(t)
				for j := range names {
					name := names[j]
					if i == 1 {
						name = names[len(names)-1-j]
					}
					writeFiles(t, dir, map[string]string{name: name})
				}
				for _, p := range names {
					os.Chtimes(filepath.Join(dir, p), time.Unix(1700000000, 5e8), time.Unix(1700000000, 5e8))
				}
				// Directories keep the times they were made at on each.
				sealFile := filepath.Join(t.TempDir(), "r.seal")
				if r := sh.run(t, remote.Seal.Command(dir, sealFile, "", ""), nil); r.status != 0 {
					t.Fatalf("status %d: %s", r.status, r.stderr)
				}
				shapes[i] = readFile(t, sealFile+".shape")
				var err error
				if seals[i], err = parseSeal([]byte(readFile(t, sealFile))); err != nil {
					t.Fatal(err)
				}
				if left, _ := filepath.Glob(sealFile + ".*.tmp"); len(left) > 0 {
					t.Errorf("left behind: %q", left)
				}
				// Sealed at another time: no time in the gzip header.
				if h := shapes[i]; len(h) < 10 || h[4:8] != "\x00\x00\x00\x00" {
					t.Errorf("the shape's gzip header holds a time: % x", h[:min(len(h), 10)])
				}
			}
			if shapes[0] != shapes[1] {
				t.Fatal("the same files have shapes of other bytes")
			}
			// Its regular files, as sealed but for inode, links and ctime.
			var files []transport.Stat
			for _, st := range seals[0] {
				if st.Mode.IsRegular() {
					st.Inode, st.Links, st.ChangeTime = 0, 0, time.Time{}
					files = append(files, st)
				}
			}
			shape, err := transport.ParseShape(bytes.NewReader(gunzip(t, []byte(shapes[0]))))
			if err != nil || !slices.Equal(shape, files) || len(files) != len(names) {
				t.Fatalf("shape %+v (%v), sealed files %+v", shape, err, files)
			}
		})
		t.Run("gnu-tools", func(t *testing.T) {
			if r := sh.run(t, remote.GNUTools.Command(), nil); r.status != 0 || !strings.Contains(r.stdout, "GNU tar") || !strings.Contains(r.stdout, "GNU coreutils") || strings.Count(r.stdout, "\n") != 2 {
				t.Errorf("status %d, printed %q", r.status, r.stdout)
			}
		})
		t.Run("end-holder", func(t *testing.T) {
			sleep := exec.Command("sleep", "60")
			if err := sleep.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- sleep.Wait() }()
			if r := sh.run(t, remote.EndHolder.Command(fmt.Sprint(sleep.Process.Pid)), nil); r.status != 0 {
				t.Errorf("status %d: %s", r.status, r.stderr)
			}
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Error("the process still runs")
				sleep.Process.Kill()
			}
		})
	})
}

// scriptedReader returns what each step makes, one step a Read, then EOF:
// a step runs when the script has taken what came before.
type scriptedReader struct {
	steps   []func() string
	pending string
}

func (r *scriptedReader) Read(p []byte) (int, error) {
	if r.pending == "" {
		if len(r.steps) == 0 {
			return 0, io.EOF
		}
		r.pending, r.steps = r.steps[0](), r.steps[1:]
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

// runningHolder is holder.sh started under a shell, past its snapshot.
type runningHolder struct {
	pid   string // on the server, as it said "locked <pid>"
	stdin io.WriteCloser
	cmd   *exec.Cmd
	out   *bytes.Buffer
}

// startHolder runs holder.sh for l under sh until it printed its snapshot.
func startHolder(t *testing.T, sh posixShell, l Layout, want rootWant) *runningHolder {
	t.Helper()
	cmd := holderCommand(l, time.Second, Owner{Actor: "test", Token: randomToken()}, want)
	c := exec.Command(sh.argv[0], append(append(sh.argv[1:], "-c", cmd.Script), cmd.Argv()...)...)
	h := &runningHolder{cmd: c, out: &bytes.Buffer{}}
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
	t.Cleanup(func() { stdin.Close(); c.Wait() })
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

// end sends the holder its tail and waits for it to exit.
func (h *runningHolder) end(tail string) ran {
	io.WriteString(h.stdin, tail)
	h.stdin.Close()
	err := h.cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return ran{"", h.out.String(), exit.ExitCode()}
	}
	return ran{"", h.out.String(), 0}
}
