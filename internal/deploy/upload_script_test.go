package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy/remote"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// upload.sh, the upload's command (upload_tar.go), under each shell.

func TestUploadScript(t *testing.T) {
	forEachShell(t, func(t *testing.T, sh posixShell) {
		// upload.sh bringing release id (a directory app, and the files
		// of plan copied from release "live") with the new current link,
		// switching on behalf of sl when it is set.
		uploadPlan := func(t *testing.T, l Layout, sl *sessionLock, id string, plan *Plan) (transport.Command, io.Reader) {
			t.Helper()
			next := filepath.Join(l.Root, tempLinkPrefix+"new")
			args := []string{l.Root, l.Log(), `{"id":"` + id + `","status":"started"}`, "", "", l.Manifest(id), "", "", "", next, l.Current(), `{"id":"` + id + `","status":"success"}`,
				l.Release("live"), l.Release(id), "", ""}
			if sl != nil {
				args[6], args[7], args[8], _ = sl.guard()
			}
			b := bytes.NewBuffer(uploadHead(encodeReuseLists(plan), nil))
			plan.Dirs = append(plan.Dirs, &release.Entry{Path: "app", Type: release.TypeDir, Mode: 0o755})
			shape := tarShape{top: l.relative(l.Release(id)), now: time.Now(), extras: []tarExtra{
				{Name: l.relative(l.Manifest(id)), Load: func() ([]byte, error) { return []byte("manifest"), nil }},
				{Name: l.relative(next), Target: currentTarget(id)}}}
			if err := plan.writeTar(b, nil, shape, &uploadStats{}); err != nil {
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
			l, sl := lockedSite(t)
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
		t.Run("takes the tar stream in segments of every kind, in any order", func(t *testing.T) {
			for _, kinds := range []string{"z", "zR", "zrzR", "zrz", "rzr"} {
				l, sl := lockedSite(t)
				cmd, stream := upload(t, l, sl, "20260101000000")
				whole, _ := io.ReadAll(stream)
				lists := uploadHead(encodeReuseLists(&Plan{}), nil)
				reframed := append(slices.Clone(lists), frame(t, unframe(t, bytes.NewReader(whole[len(lists):])), kinds)...)
				r := sh.run(t, cmd, bytes.NewReader(reframed))
				if target, _ := os.Readlink(l.Current()); r.status != 0 || target != "releases/20260101000000" || readFile(t, l.Manifest("20260101000000")) != "manifest" {
					t.Errorf("%s: status %d, current -> %q: %s", kinds, r.status, target, r.stderr)
				}
				sl.release(t.Context())
			}
		})
		t.Run("no switch once the lock is not ours", func(t *testing.T) {
			for _, how := range []string{"another deploy's identity", "holder gone"} {
				l, sl := lockedSite(t)
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
			deployLive(t, l, map[string]string{"vendor/a b/x.php": "x", "lib/y.php": "y", `lib/we"ird.php`: "w", "moved.php": "m", "changed.php": "old", "gone/deep/old.php": "g"})
			// What hooks left in the live release: none of it is reused.
			writeFiles(t, live, map[string]string{"node_modules/x/y.js": "j", "bootstrap/cache.php": "c"})
			os.MkdirAll(filepath.Join(live, "empty/too"), 0o755)
			os.MkdirAll(filepath.Join(live, "public"), 0o755)
			os.Symlink("../storage", filepath.Join(live, "public/storage"))
			os.Chmod(filepath.Join(live, "lib/y.php"), 0o751)
			sealLive(t, sh, l)
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
				holder := startHolder(t, sh, l, rootWant{plan: true, copies: ahead})
				if exists(filepath.Join(l.Meta(), ".ahead-1")) || exists(filepath.Join(l.Meta(), ".ahead-1.done")) {
					t.Errorf("ahead %v: a killed holder's copy is still there", ahead)
				}
				cmd, stream := uploadPlan(t, l, nil, id, plan)
				cmd.Args[15] = l.aheadCopy(holder.pid)
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
				if r := holder.end(t, tail(nil, nil, true)); r.status != 0 {
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
			lists := uploadHead(encodeReuseLists(&Plan{}), nil)
			cutRaw := fmt.Appendf(slices.Clone(lists), "z\n%d\n%s0\nR\n%s", gzipped.Len(), gzipped.Bytes(), raw.Bytes())
			cutChunk := fmt.Appendf(slices.Clone(lists), "z\n%d\n%s0\nr\n%d\n%s0\n", gzipped.Len(), gzipped.Bytes(), raw.Len(), raw.Bytes())
			for _, c := range []struct {
				name string
				cut  func(whole []byte) []byte
			}{
				{"raw, between two members", func([]byte) []byte { return cutRaw }},
				{"raw chunks, between two members", func([]byte) []byte { return cutChunk }},
				{"raw chunks, in a chunk", func([]byte) []byte { return cutChunk[:len(cutChunk)-200] }},
				{"gzip'd, in a chunk", func(whole []byte) []byte { return whole[:len(lists)+(len(whole)-len(lists))/2] }},
				{"nothing", func([]byte) []byte { return slices.Clone(lists) }},
				{"a segment of no known kind", func(whole []byte) []byte { return append(slices.Clone(lists), "x\n"...) }},
			} {
				l, sl := lockedSite(t)
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
			l, sl := lockedSite(t)
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

// frame puts a tar stream in upload.sh's segments, as many as kinds has
// letters, of about the same size: 'z' gzip'd, 'r' raw, both in two
// chunks; 'R' the rest raw (the last).
func frame(t *testing.T, tarStream []byte, kinds string) []byte {
	t.Helper()
	var out bytes.Buffer
	size := len(tarStream)/len(kinds) + 1
	for i, kind := range kinds {
		part := tarStream[min(len(tarStream), i*size):min(len(tarStream), (i+1)*size)]
		fmt.Fprintf(&out, "%c\n", kind)
		switch kind {
		case 'R':
			out.Write(part)
			continue
		case 'z':
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write(part)
			zw.Close()
			part = b.Bytes()
		}
		for _, chunk := range [][]byte{part[:len(part)/2], part[len(part)/2:]} {
			if len(chunk) > 0 {
				fmt.Fprintf(&out, "%d\n%s", len(chunk), chunk)
			}
		}
		out.WriteString("0\n")
	}
	return out.Bytes()
}

// lockedSite is a new deploy root whose lock is held, as a deploy's lock
// holder holds it.
func lockedSite(t *testing.T) (Layout, *sessionLock) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "site")
	return Layout{Root: root}, holdLock(t, root)
}
