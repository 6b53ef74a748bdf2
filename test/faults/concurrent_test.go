package faults_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
)

// journalHooks make every deploy write "B <id>" when its before-activate
// starts and "A <id>" when its after-activate runs, to one journal on the
// server: with the lock working, the lines of two deploys never interleave.
func journalHooks(e *env, hold string) []string {
	j := e.marks + "/journal"
	return []string{
		"--before-activate", fmt.Sprintf(`echo "B $RELEASE_ID" >> %s; sleep %s`, j, hold),
		"--after-activate", fmt.Sprintf(`echo "A $RELEASE_ID" >> %s`, j),
	}
}

// checkJournal checks that the hooks of the deploys ran strictly one
// deploy after another, and returns the ids in switch order.
func checkJournal(t *testing.T, e *env) []string {
	t.Helper()
	data, err := os.ReadFile(e.Local(e.marks + "/journal"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	var ids []string
	seen := map[string]bool{}
	for i := 0; i < len(lines); i += 2 {
		b := strings.TrimPrefix(lines[i], "B ")
		if i+1 >= len(lines) || lines[i+1] != "A "+b || !strings.HasPrefix(lines[i], "B ") {
			t.Fatalf("deploys overlapped (or a switch was skipped):\n%s", data)
		}
		if seen[b] {
			t.Fatalf("release id %s used twice:\n%s", b, data)
		}
		seen[b] = true
		ids = append(ids, b)
	}
	return ids
}

var releaseIDOutput = regexp.MustCompile(`(?m)^release-id: (\d{14})$`)

// TestConcurrentDeploys starts two, then five, real deploys at the same
// moment against one deploy root. They all succeed, one after another (one
// switch at a time), each with its own release id, and the last one to
// switch is live and complete.
func TestConcurrentDeploys(t *testing.T) {
	t.Parallel()
	for _, n := range []int{2, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			inject(t, fmt.Sprintf("%d deploys started at once", n))
			e := newEnv(t, envOptions{})
			e.mustAppDeploy()
			procs := make([]*proc, n)
			for i := range procs {
				procs[i] = e.startBinaryAs(fmt.Sprintf("deployer-%d", i), append(journalHooks(e, "0.2"), "--lock-timeout", "2m")...)
			}
			got := map[string]bool{}
			for i, p := range procs {
				if code := p.wait(2 * time.Minute); code != 0 {
					t.Errorf("deploy %d exited %d:\n%s", i, code, p.output())
					continue
				}
				m := releaseIDOutput.FindStringSubmatch(p.output())
				if m == nil {
					t.Fatalf("deploy %d printed no release-id:\n%s", i, p.output())
				}
				got[m[1]] = true
			}
			order := checkJournal(t, e)
			if len(order) != n || len(got) != n {
				t.Fatalf("%d switches, %d distinct release ids; want %d each", len(order), len(got), n)
			}
			live := assertCompleteRelease(t, e.Root())
			if live != order[len(order)-1] {
				t.Errorf("current = %s, but the last switch was to %s", live, order[len(order)-1])
			}
			e.assertNoLeftovers(live)
			e.mustAppDeploy()
		})
	}
}

// TestConcurrentDeployGivesUpNamingTheHolder runs two deploys at once with a
// lock timeout shorter than a deploy: one goes through, the other fails
// saying who holds the lock, and changes nothing.
func TestConcurrentDeployGivesUpNamingTheHolder(t *testing.T) {
	t.Parallel()
	inject(t, "2 deploys at once, lock timeout shorter than a deploy")
	e := newEnv(t, envOptions{})
	e.mustAppDeploy()
	procs := []*proc{
		// The winner holds the lock 6 s: the loser reaches it well before.
		e.startBinaryAs("alice", append(journalHooks(e, "6"), "--lock-timeout", "1s")...),
		e.startBinaryAs("bob", append(journalHooks(e, "6"), "--lock-timeout", "1s")...),
	}
	codes := []int{procs[0].wait(time.Minute), procs[1].wait(time.Minute)}
	if (codes[0] == 0) == (codes[1] == 0) {
		t.Fatalf("exit codes %v, want one success and one failure:\n%s\n---\n%s", codes, procs[0].output(), procs[1].output())
	}
	winner, loser := "alice", procs[1]
	if codes[1] == 0 {
		winner, loser = "bob", procs[0]
	}
	t.Logf("loser said: %s", lastLines(loser.output(), 1))
	mentions(t, "the losing deploy", loser.output(), "locked by another deploy", "by "+winner)
	if ids := checkJournal(t, e); len(ids) != 1 {
		t.Errorf("%d switches, want 1", len(ids))
	}
	live := assertCompleteRelease(t, e.Root())
	e.assertNoLeftovers(live)
	e.mustAppDeploy()
}

// TestConcurrentDeploysSFTPOnly runs three Go-level deploys at once on an
// SFTP-only server, where the lock is a lease directory.
func TestConcurrentDeploysSFTPOnly(t *testing.T) {
	t.Parallel()
	inject(t, "3 deploys started at once (sftp-only lease lock)")
	e := newEnv(t, envOptions{sftpOnly: true})
	e.mustGoDeploy()
	var wg sync.WaitGroup
	ids := make([]string, 3)
	errs := make([]error, 3)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res, err := e.goDeploy(ctx, func(o *deploy.Options) { o.Settings.Lock.Wait = time.Minute })
			errs[i] = err
			if res != nil {
				ids[i] = res.ReleaseID
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, err := range errs {
		if err != nil {
			t.Errorf("deploy %d: %v", i, err)
		}
		if seen[ids[i]] {
			t.Errorf("release id %s used twice", ids[i])
		}
		seen[ids[i]] = true
	}
	live := assertCompleteRelease(t, e.Root())
	e.assertNoLeftovers(live)
}
