package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
)

// The spare (remote/holder.sh's after_deploy): the live release's private
// copy, made by the lock holder once its deploy let go, which the next
// deploy's holder offers the upload instead of copying while it waits.
func TestSpareScript(t *testing.T) {
	forEachShell(t, func(t *testing.T, sh posixShell) {
		copies := rootWant{plan: true, copies: true}
		t.Run("made after a deploy, taken whole by the next one", func(t *testing.T) {
			l := sealedLive(t, sh, 50)
			bin, calls := copyShims(t, 2, 0)
			path := "PATH=" + bin + ":" + os.Getenv("PATH")
			startHolder(t, sh, l, copies, path).endMakingSpare(t, tail(nil, nil, true))
			if !exists(l.spare()+".done") || !strings.HasPrefix(readFile(t, l.spare()+".id"), "live ") {
				t.Fatalf("no spare of the live release: done %v, id %q", exists(l.spare()+".done"), readFile(t, l.spare()+".id"))
			}
			spared := testutil.Inode(t, filepath.Join(l.spare(), "f/0007.php"))
			if spared == testutil.Inode(t, l.Release("live")+"/f/0007.php") {
				t.Fatal("the spare shares an inode with the live release")
			}
			made := len(copyBatches(calls, l.spare()))
			holder := startHolder(t, sh, l, copies, path)
			ahead := l.aheadCopy(holder.pid)
			if !exists(ahead+".done") || testutil.Inode(t, filepath.Join(ahead, "f/0007.php")) != spared {
				t.Errorf("the spare is not the copy offered: done %v", exists(ahead+".done"))
			}
			if n := len(copyBatches(calls, ahead)); n > 0 {
				t.Errorf("%d processes copied while the spare was there", n)
			}
			holder.endMakingSpare(t, tail(nil, nil, true))
			if !exists(l.spare()+".done") || len(copyBatches(calls, l.spare())) == made {
				t.Error("the holder whose copy went unused made no new spare")
			}
			if left, _ := filepath.Glob(filepath.Join(l.Meta(), ".ahead-*")); len(left) > 0 {
				t.Errorf("left behind: %q", left)
			}
		})
		t.Run("a spare cut short, or of a release made again, is deleted, not taken", func(t *testing.T) {
			for _, c := range []struct {
				how   string
				spoil func(l Layout)
			}{
				{"cut short", func(l Layout) { os.Remove(l.spare() + ".done") }},
				{"made again", func(l Layout) {
					os.RemoveAll(l.Release("live"))
					writeFiles(t, l.Release("live"), map[string]string{"f/0007.php": "x"})
					sealLive(t, sh, l)
				}},
			} {
				l := sealedLive(t, sh, 50)
				bin, calls := copyShims(t, 2, 0)
				path := "PATH=" + bin + ":" + os.Getenv("PATH")
				startHolder(t, sh, l, copies, path).endMakingSpare(t, tail(nil, nil, true))
				c.spoil(l)
				holder := startHolder(t, sh, l, copies, path)
				// Deleted before a copy is made in its place (a full disk).
				if exists(l.spare()) || exists(l.spare()+".done") {
					t.Errorf("%s: the spare is still there once the snapshot is out", c.how)
				}
				ahead := l.aheadCopy(holder.pid)
				waitUntil(t, 10*time.Second, func() bool { return exists(ahead + ".done") }, c.how+": the copy made ahead did not end")
				// Copied for itself (the spare's inode numbers, freed, may
				// come back in the copy).
				if len(copyBatches(calls, ahead)) == 0 {
					t.Errorf("%s: the spare was taken", c.how)
				}
				holder.end(t, tail(nil, nil, true))
			}
		})
		t.Run("a deploy that waits for the lock stops the spare's making, and gets the lock before what was made is deleted", func(t *testing.T) {
			l := sealedLive(t, sh, 3000)
			// Three processes of a thousand files, a second each; deleting
			// what was made takes 6 s more. The waiter tells the making to
			// stop within a second, and it stops within a batch: the lock
			// comes within ~2 s, and under a loaded machine's delays still
			// well before the 6 s a deletion under the lock would add.
			bin, calls := copyShims(t, 1, 1)
			writeFiles(t, bin, map[string]string{"rm": "#!/bin/sh\nfor a; do case $a in */.spare | */.spare-gone-*) if [ -d \"$a\" ]; then sleep 6; fi ;; esac; done\nexec /bin/rm \"$@\"\n"})
			os.Chmod(filepath.Join(bin, "rm"), 0o755)
			startHolder(t, sh, l, copies, "PATH="+bin+":"+os.Getenv("PATH")).exit(tail(nil, nil, true))
			waitUntil(t, 5*time.Second, func() bool { return len(copyBatches(calls, l.spare())) > 0 }, "the spare's making did not start")
			start := time.Now()
			waiter := startHolderWaiting(t, sh, l, rootWant{plan: true}, 10*time.Second)
			if waited := time.Since(start); waited > 4500*time.Millisecond {
				t.Errorf("the lock came after %v", waited)
			}
			if n := len(copyBatches(calls, l.spare())); n > 2 || exists(l.spare()+".done") {
				t.Errorf("the spare's making went on: %d processes, whole %v", n, exists(l.spare()+".done"))
			}
			if exists(l.spare()) {
				t.Error("the part of the spare made is still where the next spare goes")
			}
			waiter.end(t, tail(nil, nil, true))
			waitUntil(t, 15*time.Second, func() bool {
				gone, _ := filepath.Glob(filepath.Join(l.Meta(), ".spare-gone-*"))
				return len(gone) == 0
			}, "the part of the spare made was never deleted")
		})
	})
}

// spare is where the lock holder copies the live release after a deploy
// for the next one (remote/holder.sh's make_spare).
func (l Layout) spare() string { return filepath.Join(l.Meta(), ".spare") }
