package deploy

import (
	"bytes"
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
		t.Run("leaves no temporary file, whether the hook ran or not", func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			_, whole := hookCommand(t.TempDir(), nil, "true", finishing{})
			cut := whole[:strings.LastIndex(strings.TrimSuffix(whole, "\n"), "\n")+1]
			for _, c := range []struct{ dir, script, input string }{
				{"/", "true", ""},
				{"/", "exit 3", ""},
				{filepath.Join(tmp, "no such dir"), "true", ""},
				{"/", "true", cut},
			} {
				runHookUnder(t, sh, c.dir, nil, c.script, c.input)
				if left, _ := os.ReadDir(tmp); len(left) > 0 {
					t.Fatalf("%q in %s (input cut: %v): %s left in TMPDIR", c.script, c.dir, c.input != "", left[0].Name())
				}
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
			lockFile := filepath.Join(t.TempDir(), "lock.flock")
			for _, c := range []struct {
				script string
				holder bool
			}{
				// Descriptor 9 on the lock file, as holder.sh has it.
				{`exec 9>>"$1" && read -r _`, true},
				{`exec 8>>"$1" && read -r _`, false},
			} {
				// The processes wait on an input that never comes.
				never, wait, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				proc := exec.Command("sh", "-c", c.script, "sh", lockFile)
				proc.Stdin = never
				if err := proc.Start(); err != nil {
					t.Fatal(err)
				}
				never.Close()
				done := make(chan error, 1)
				go func() { done <- proc.Wait() }()
				time.Sleep(100 * time.Millisecond)
				meta := t.TempDir()
				if r := sh.run(t, remote.EndHolder.Command(fmt.Sprint(proc.Process.Pid), meta, lockFile), nil); r.status != 0 {
					t.Errorf("status %d: %s", r.status, r.stderr)
				}
				select {
				case <-done:
					if !c.holder {
						t.Error("a process that does not hold the lock file was ended")
					}
				case <-time.After(map[bool]time.Duration{true: 5 * time.Second, false: 300 * time.Millisecond}[c.holder]):
					if c.holder {
						t.Error("the holder still runs")
					}
					proc.Process.Kill()
					<-done
				}
				wait.Close()
				// Told to stop either way: a holder that ended otherwise can
				// leave its copy holding the lock.
				if !exists(filepath.Join(meta, fmt.Sprintf(".ahead-%d.stop", proc.Process.Pid))) {
					t.Errorf("holder %v: its copy made ahead was not told to stop", c.holder)
				}
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
