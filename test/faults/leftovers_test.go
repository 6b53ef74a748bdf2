package faults_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// appendLog adds a line to the releases log, as a deploy would have.
func (e *env) appendLog(line string) {
	e.t.Helper()
	f, err := os.OpenFile(e.Root(".atomic-deploy", "releases.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	f.WriteString(line + "\n")
}

// asUser makes path (server view) owned by the login user, as if the
// deploy had made it.
func (e *env) asUser(p string) {
	e.t.Helper()
	owner, err := os.Stat(e.Local(e.Base))
	if err != nil {
		e.t.Fatal(err)
	}
	uid, gid := statOwner(owner)
	filepath.Walk(p, func(q string, _ os.FileInfo, _ error) error {
		os.Lchown(q, uid, gid)
		return nil
	})
}

// TestLeftoversOfACrashedDeploy puts what a deploy killed mid-way leaves on
// the server — a half-uploaded release logged as started and two
// temporary `current` links (one to it) — and deploys again.
func TestLeftoversOfACrashedDeploy(t *testing.T) {
	t.Parallel()
	for _, k := range serverKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			inject(t, "leftover partial release and .current.tmp-* links ("+k.name+")")
			e := newEnv(t, envOptions{sftpOnly: k.sftp})
			first := e.mustGoDeploy()
			root := e.Root()
			partial := "20990101000000" // newer than anything: the next id must move past it
			os.MkdirAll(filepath.Join(root, "releases", partial, "app"), 0o755)
			os.WriteFile(filepath.Join(root, "releases", partial, "app", "a.txt"), []byte("a"), 0o644)
			e.asUser(filepath.Join(root, "releases", partial))
			e.appendLog(`{"id":"` + partial + `","status":"started","started_at":"2026-01-01T00:00:00Z"}`)
			os.Symlink("releases/"+partial, filepath.Join(root, ".current.tmp-deadbeef00000001"))
			os.Symlink("releases/"+first, filepath.Join(root, ".current.tmp-deadbeef00000002"))
			e.asUser(filepath.Join(root, ".current.tmp-deadbeef00000001"))
			e.asUser(filepath.Join(root, ".current.tmp-deadbeef00000002"))

			next := e.afterFault(first)
			if next <= partial {
				t.Errorf("new release id %s does not sort after the leftover %s", next, partial)
			}
			if exists(filepath.Join(root, "releases", partial)) {
				t.Errorf("partial release %s not removed", partial)
			}
		})
	}
}

// TestCurrentMissing deletes `current` while releases exist.
func TestCurrentMissing(t *testing.T) {
	t.Parallel()
	for _, k := range serverKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			inject(t, "current missing, releases exist ("+k.name+")")
			e := newEnv(t, envOptions{sftpOnly: k.sftp})
			e.mustGoDeploy()
			e.src.Write(map[string]string{"index.html": "v2"})
			e.mustGoDeploy()
			if err := os.Remove(e.Root("current")); err != nil {
				t.Fatal(err)
			}
			e.src.Write(map[string]string{"index.html": "v3"})
			e.afterFault(noCurrent)
		})
	}
}

// TestCurrentIsARealDirectory finds a site deployed another way: `current`
// is a directory. The deploy refuses, touches nothing, and says how to
// adopt it; following that advice makes the next deploy work.
func TestCurrentIsARealDirectory(t *testing.T) {
	t.Parallel()
	knownBug(t, "adopt-advice")
	inject(t, "current is a real directory")
	e := newEnv(t, envOptions{})
	root := e.Root()
	user := map[string]string{"current/index.php": "<?php echo 'legacy';", "current/uploads/cat.jpg": "meow", "current/.env": "SECRET=1"}
	for p, c := range user {
		os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(c), 0o644)
	}
	e.asUser(root)
	before := snapshot(t, root)

	r := e.appDeploy(context.Background())
	if r.code == 0 {
		t.Fatalf("deploy over a real current directory succeeded:\n%s", r.stderr)
	}
	t.Logf("deploy said: %s", lastLines(r.stderr, 1))
	mentions(t, "the refusal", r.stderr, "not a symlink", "mv ", "ln -s")
	if after := snapshot(t, root); after != before {
		t.Errorf("the deploy changed the deploy root:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// Follow the advice literally.
	cmds := regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(r.stderr, -1)
	if cmds == nil {
		t.Fatalf("no commands to follow in:\n%s", r.stderr)
	}
	for _, c := range cmds {
		if out, err := exec.Command("/bin/sh", "-c", c[1]).CombinedOutput(); err != nil {
			t.Fatalf("advice %q: %v: %s", c, err, out)
		}
	}
	e.asUser(root)
	if got, _ := os.ReadFile(filepath.Join(root, "current/uploads/cat.jpg")); string(got) != "meow" {
		t.Fatalf("after the advice the old site is not live: %q", got)
	}
	e.mustAppDeploy()
	if got, _ := os.ReadFile(filepath.Join(root, "releases/00000000000000/uploads/cat.jpg")); string(got) != "meow" {
		t.Errorf("the adopted site was not kept as a release: %q", got)
	}
}

// snapshot lists every path under root with its size and content.
func snapshot(t *testing.T, root string) string {
	t.Helper()
	var b bytes.Buffer
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		b.WriteString(rel + " " + info.Mode().String())
		if info.Mode().IsRegular() {
			data, _ := os.ReadFile(p)
			b.WriteString(" " + string(data))
		}
		b.WriteString("\n")
		return nil
	})
	return b.String()
}

// TestReleaseIDAlreadyExists asks for a release id that is already on the
// server: the live one, and an older one. The deploy refuses and leaves both
// releases exactly as they were, including their status in the log.
func TestReleaseIDAlreadyExists(t *testing.T) {
	t.Parallel()
	for _, k := range serverKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			inject(t, "release-id of an existing release ("+k.name+")")
			e := newEnv(t, envOptions{sftpOnly: k.sftp})
			older := e.mustGoDeploy()
			e.src.Write(map[string]string{"index.html": "v2"})
			live := e.mustGoDeploy()
			e.src.Write(map[string]string{"index.html": "v3"})
			for _, id := range []string{live, older} {
				before := snapshot(t, e.Root("releases", id))
				_, err := e.goDeploy(context.Background(), func(o *deployOptions) { o.ReleaseID = id })
				if err == nil {
					t.Fatalf("deploy as existing release %s succeeded", id)
				}
				t.Logf("deploy said: %v", err)
				mentions(t, "the error", err.Error(), id, "already exists")
				if after := snapshot(t, e.Root("releases", id)); after != before {
					t.Errorf("release %s changed", id)
				}
				if st := e.statuses()[id]; st != "success" {
					t.Errorf("release %s is now %q in the log, want success", id, st)
				}
				if got := assertCompleteRelease(t, e.Root()); got != live {
					t.Errorf("current = %s, want %s", got, live)
				}
			}
			e.afterFault(live)
			if !strings.Contains(strings.Join(e.Releases(), " "), older) {
				t.Errorf("older release %s was pruned; keep-releases is 3", older)
			}
		})
	}
}
