package laravel_test

import (
	"context"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/webtest"
)

// TestDocumentRootServesStaleRelease reproduces the most common reason a
// "zero-downtime" PHP deploy is not: nginx passing $document_root (the path
// through the `current` symlink) to php-fpm. PHP's realpath cache and
// opcache keep resolving that path to the old release for minutes after
// the switch. The same deploy root served with $realpath_root switches at
// once. A health check that only wants a 2xx passes either way; one that
// wants the new release id in the body catches it and rolls back.
func TestDocumentRootServesStaleRelease(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := newSite(t)
	good := webtest.Start(t, webtest.Options{DeployPath: s.Path, User: s.Server.User})
	stale := webtest.Start(t, webtest.Options{DeployPath: s.Path, User: s.Server.User, DocumentRoot: true})
	s.putEnv(ctx)
	idA := s.mustDeploy(ctx).ReleaseID()

	// Every php-fpm worker of the misconfigured server resolves current once.
	if got := releasesSeen(t, stale, "/", 64, 8); len(got) != 1 || got[idA] == 0 {
		t.Fatalf("before the second deploy the $document_root server answered %v, want only %s", got, idA)
	}
	idB := s.mustDeploy(ctx).ReleaseID()
	if st := getStatus(t, good); st.Release != idB {
		t.Fatalf("the $realpath_root server answers %s right after the deploy, want %s", st.Release, idB)
	}
	// A second after the switch the misconfigured server still runs A.
	time.Sleep(time.Second)
	got := releasesSeen(t, stale, "/", 64, 8)
	if got[idA] == 0 {
		t.Fatalf("the $document_root server answered %v a second after the switch to %s; expected the stale release %s (did the trap go away?)", got, idB, idA)
	}
	t.Logf("1s after current -> %s: the $realpath_root server answers %s; the $document_root server answers %v", idB, idB, got)

	t.Run("HealthCheckCatchesStaleRelease", func(t *testing.T) {
		// A freshly started misconfigured server, warmed on B, keeps
		// serving B after the switch to C. A health check that wants the
		// new release id in /health must fail and roll back to B.
		stale2 := webtest.Start(t, webtest.Options{DeployPath: s.Path, User: s.Server.User, DocumentRoot: true})
		if got := releasesSeen(t, stale2, "/", 64, 8); len(got) != 1 || got[idB] == 0 {
			t.Fatalf("the new $document_root server answered %v, want only %s", got, idB)
		}
		args := []string{"--healthcheck-url", stale2.URL + "/health", "--healthcheck-timeout", "4s"}
		if hasInput("healthcheck-expect") {
			args = append(args, "--healthcheck-expect", "release={release-id}")
		}
		r := s.deploy(ctx, args...)
		if r.Code == 0 {
			// TODO(issue 4): the health check only wants a 2xx, so the
			// deploy passed while the site served the previous release.
			t.Skipf("TODO(issue 4): the health check passed (2xx) while %s/health still served release %s instead of %s; it needs to require the new release id in the body (healthcheck-expect)", stale2.URL, idB, r.ReleaseID())
		}
		t.Logf("the health check caught the stale release (exit %d):\n%s", r.Code, lastLines(r.Stderr, 4))
		if r.Outputs["rolled-back"] != "true" || s.Current() != idB {
			t.Fatalf("the health check failed but current = %s, rolled-back = %q; want a rollback to %s:\n%s", s.Current(), r.Outputs["rolled-back"], idB, r.Stderr)
		}
		if st := getStatus(t, good); st.Release != idB {
			t.Fatalf("after the rollback the $realpath_root server answers %s, want %s", st.Release, idB)
		}
	})
}

// hasInput reports whether the program has an input (and flag) called name.
func hasInput(name string) bool {
	for _, in := range config.Inputs {
		if in.Name == name {
			return true
		}
	}
	return false
}

// releasesSeen makes n requests, `conc` at a time, and counts the release
// ids that answered.
func releasesSeen(t *testing.T, web *webtest.Server, path string, n, conc int) map[string]int {
	t.Helper()
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		errs []string
		wg   sync.WaitGroup
		next = make(chan struct{}, n)
	)
	for range n {
		next <- struct{}{}
	}
	close(next)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				code, body, err := web.Get(path)
				mu.Lock()
				if err != nil || code != 200 {
					errs = append(errs, body)
				} else if m := releaseInBody.FindStringSubmatch(body); m != nil {
					seen[m[1]]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		sort.Strings(errs)
		t.Fatalf("%d of %d requests to %s failed, e.g. %s", len(errs), n, path, strings.TrimSpace(errs[0]))
	}
	return seen
}
