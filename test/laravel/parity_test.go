package laravel_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/webtest"
)

// publicDisk is config/filesystems.php of an app that uses the public disk
// (Laravel's own default): public/storage links to storage/app/public.
const publicDisk = `<?php

return [
    'default' => env('FILESYSTEM_DRIVER', 'local'),

    'disks' => [
        'local' => ['driver' => 'local', 'root' => storage_path('app')],
        'public' => ['driver' => 'local', 'root' => storage_path('app/public'), 'url' => env('APP_URL').'/storage', 'visibility' => 'public'],
    ],

    'links' => [
        public_path('storage') => storage_path('app/public'),
    ],
];
`

// failingMigration makes `php artisan migrate` fail, as a broken migration does.
const failingMigration = `<?php

use Illuminate\Database\Migrations\Migration;

return new class extends Migration {
    public function up()
    {
        throw new RuntimeException('this migration fails on purpose');
    }
};
`

// TestLaravelPresetParity covers what the preset does beyond caches and
// migrations: storage:link for an app with the public disk, event:cache,
// and maintenance-mode down/up across a deploy and a failed deploy.
func TestLaravelPresetParity(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := newSite(t)
	web := webtest.Start(t, webtest.Options{DeployPath: s.Path, User: s.Server.User})
	if err := os.WriteFile(filepath.Join(s.src, "config", "filesystems.php"), []byte(publicDisk), 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(s.src, "storage", "app", "public"), 0o755)
	if err := os.WriteFile(filepath.Join(s.src, "storage", "app", "public", "hello.txt"), []byte("hello from the public disk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.putEnv(ctx)
	down := s.Root("shared", "storage", "framework", "down")

	// 1. First deploy: nothing is live, so nothing goes down; the links and
	// caches are made in the release.
	first := s.mustDeploy(ctx, "--maintenance-mode")
	idA := first.ReleaseID()
	inOrder(t, "first deploy", first.Stderr, "> php artisan config:cache", "> php artisan event:cache", "Events cached successfully",
		"> php artisan storage:link", "> php artisan migrate --force", "> php artisan up", "> php artisan queue:restart")
	if strings.Contains(first.Stderr, "> php artisan down") {
		t.Errorf("the first deploy went into maintenance mode with nothing live:\n%s", first.Stderr)
	}
	rel := s.Root("releases", idA)
	if _, err := os.Stat(filepath.Join(rel, "bootstrap", "cache", "events.php")); err != nil {
		t.Errorf("event:cache left no bootstrap/cache/events.php: %v", err)
	}
	if target, err := os.Readlink(filepath.Join(rel, "public", "storage")); err != nil || target != s.Path+"/releases/"+idA+"/storage/app/public" {
		t.Errorf("public/storage -> %q (%v), want the release's storage/app/public", target, err)
	}
	if code, body, err := web.Get("/storage/hello.txt"); err != nil || code != 200 || body != "hello from the public disk\n" {
		t.Errorf("GET /storage/hello.txt = %d %q %v", code, body, err)
	}

	// 2. Second deploy: the live release answers 503 while the new one
	// migrates and switches, and the new one answers 200 after.
	codes := watch(web)
	nextSecond()
	second := s.mustDeploy(ctx, "--maintenance-mode")
	idB := second.ReleaseID()
	seen := codes()
	t.Logf("GET / during the second deploy: %v", seen)
	inOrder(t, "second deploy", second.Stderr, "> php artisan storage:link", "> php artisan down (release "+idA+" is live",
		"Application is now in maintenance mode", "> php artisan migrate --force", "> php artisan up", "Application is now live")
	if seen[503] == 0 || seen[200] == 0 {
		t.Errorf("during the deploy GET / answered %v; want 503s while down and 200s around them", seen)
	}
	for code := range seen {
		if code != 200 && code != 503 {
			t.Errorf("GET / answered %d during the deploy (%v)", code, seen)
		}
	}
	if st := getStatus(t, web); st.Release != idB {
		t.Errorf("serving %s after the deploy, want %s", st.Release, idB)
	}
	if _, err := os.Stat(down); !os.IsNotExist(err) {
		t.Errorf("%s left after the deploy (%v)", down, err)
	}

	// 3. A deploy whose migration fails after down: it fails, nothing is
	// switched, and the live release is brought up again.
	if err := os.WriteFile(filepath.Join(s.src, "database", "migrations", "2099_01_01_000000_fails.php"), []byte(failingMigration), 0o644); err != nil {
		t.Fatal(err)
	}
	nextSecond()
	failed := s.deploy(ctx, "--maintenance-mode")
	t.Logf("failed deploy:\n%s", failed.Stderr)
	if failed.Code != 1 {
		t.Fatalf("deploy with a failing migration: exit %d\n%s", failed.Code, failed.Stderr)
	}
	inOrder(t, "failed deploy", failed.Stderr, "Application is now in maintenance mode", "this migration fails on purpose",
		"==> On failure", "> php artisan up", "Application is now live")
	if st := getStatus(t, web); st.Release != idB {
		t.Errorf("serving %s after the failed deploy, want %s", st.Release, idB)
	}
	if _, err := os.Stat(down); !os.IsNotExist(err) {
		t.Errorf("%s left after the failed deploy (%v): the site stays in maintenance mode", down, err)
	}
	if failed.Outputs["status"] != "failed" || failed.Outputs["release-id"] != idB {
		t.Errorf("outputs after the failed deploy: %v", failed.Outputs)
	}
}

// inOrder checks that log holds each of want, in that order.
func inOrder(t *testing.T, what, log string, want ...string) {
	t.Helper()
	rest := log
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Errorf("%s: %q missing (or out of order) in the log:\n%s", what, w, log)
			return
		}
		rest = rest[i+len(w):]
	}
}

// watch requests GET / every 20 ms until the returned func is called,
// which returns how often each status code was seen.
func watch(web *webtest.Server) func() map[int]int {
	var (
		mu    sync.Mutex
		seen  = map[int]int{}
		stop  = make(chan struct{})
		ended = make(chan struct{})
	)
	go func() {
		defer close(ended)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			code, _, err := web.Get("/")
			if err != nil {
				code = -1
			}
			mu.Lock()
			seen[code]++
			mu.Unlock()
		}
	}()
	return func() map[int]int {
		close(stop)
		<-ended
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
}
