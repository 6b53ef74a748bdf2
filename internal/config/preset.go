package config

import (
	_ "embed"
	"slices"
)

// Laravel preset defaults; each applies only where the input was left empty,
// so any of them can be replaced by giving the input explicitly. Each step
// prints a "> php artisan ..." line before its own output (or says why it
// was skipped), so the log shows what ran.
//
//   - shared-dirs `storage` and shared-files `.env` live in <path>/shared and
//     are linked into every release. storage/ is seeded from the first
//     release; .env never is: a deploy without <path>/shared/.env (and with
//     no .env in the release) fails before the switch and says where the
//     production .env goes, instead of creating an empty one.
//   - writable-dirs `bootstrap/cache` (per release: the config, route,
//     view and event caches built below) and `storage`.
//   - before-activate runs in the new release on every host while the old
//     one still serves: the caches, so the first request to the new release
//     is already fast. The caches hold the release's own paths, never
//     `current`. event:cache runs where the Laravel version has it
//     (5.8.9 and later). `optimize` is not run: it is config:cache and
//     route:cache (Laravel 8-10), plus event:cache and view:cache (11+),
//     all of which run here on their own lines. storage:link runs where
//     config/filesystems.php links public/storage (the public disk) and
//     the release has no public/storage yet; the link points into the
//     release's storage/, which is the shared one.
//   - before-activate-once runs the (additive) migrations once, on the
//     first host, after every host is ready: a fleet sharing one database
//     migrates once, and never for a release that cannot go live
//     everywhere. When before-activate is given explicitly, the preset
//     leaves migrations to it.
//   - after-activate tells long-running queue workers (which keep the code
//     they started with) to exit after their current job; their supervisor
//     starts them again from the new release. The restart signal is kept in
//     the cache store, which must be shared by the releases (the file cache
//     under the shared storage/, or redis/database).
//
// examples/laravel is an application deployed with these defaults in the
// integration tests (test/laravel).
const (
	laravelSteps = `step() { echo "> php artisan $*"; php artisan "$@"; }
`
	laravelBeforeActivate = laravelSteps + `step config:cache
step route:cache
step view:cache
if php artisan help event:cache >/dev/null 2>&1; then
  step event:cache
else
  echo "> php artisan event:cache: skipped, this Laravel version has no event:cache"
fi
if [ -e public/storage ] || [ -L public/storage ]; then
  echo "> php artisan storage:link: skipped, public/storage is in the release already"
elif grep -Eq "public_path\(.storage.\)" config/filesystems.php 2>/dev/null; then
  step storage:link
else
  echo "> php artisan storage:link: skipped, config/filesystems.php links no public/storage"
fi`
	laravelBeforeActivateOnce = laravelSteps + `step migrate --force`
	laravelAfterActivate      = laravelSteps + `step queue:restart`
)

// Maintenance mode (maintenance-mode: true, Laravel only). `php artisan
// down` writes storage/framework/down (and maintenance.php), which every
// release reads through the shared storage/: run in the new release, it
// puts the live one into maintenance too. So:
//
//   - down is the last step of before-activate on every host, after the
//     caches are built and before the migrations (before-activate-once
//     runs only once every host is ready), so no host serves the old code
//     while the database changes; only when a release is live
//     ($PREVIOUS_RELEASE_ID), since a first deploy has nothing to hold;
//   - up is the first step of after-activate on every host, right after
//     the switch (and before the health check, which must see the app);
//   - a deploy that fails after down ran (a failed migration, another host
//     that could not be prepared, a failed switch) lifts it in on-failure,
//     which runs in the live release of every host, lock still held;
//   - down writes its files whole, each a temp file and a rename
//     (laravel-down.sh says why).
//
//go:embed laravel-down.sh
var laravelMaintenanceDown string

// LaravelMaintenanceUp ends maintenance mode; run in a release directory.
const LaravelMaintenanceUp = `echo "> php artisan up"
php artisan up`

// applyLaravel fills the inputs the user left empty with the preset's values.
func applyLaravel(c *Config, lookup Lookup) {
	given := func(name string) bool {
		v, ok := lookup(name)
		return ok && v != ""
	}
	if !given("shared-dirs") {
		c.SharedDirs = []string{"storage"}
	}
	if !given("shared-files") {
		c.SharedFiles = []string{".env"}
	}
	if !given("writable-dirs") {
		c.WritableDirs = []string{"bootstrap/cache", "storage"}
	}
	if !given("before-activate") {
		c.BeforeActivate = laravelBeforeActivate
		if !given("before-activate-once") {
			c.BeforeActivateOnce = laravelBeforeActivateOnce
		}
	}
	if !given("after-activate") {
		c.AfterActivate = laravelAfterActivate
	}
}

// applyMaintenance wraps the hooks, whoever wrote them, in maintenance
// mode. The flag must reach the live release, so storage/framework has to
// be shared.
func applyMaintenance(c *Config, fail func(input, format string, a ...any)) {
	if c.Preset != "laravel" {
		fail("maintenance-mode", "needs preset: laravel (it runs php artisan down and up)")
		return
	}
	if !slices.Contains(c.SharedDirs, "storage") && !slices.Contains(c.SharedDirs, "storage/framework") {
		fail("maintenance-mode", "needs storage (or storage/framework) in shared-dirs: php artisan down writes storage/framework/down, which the live release sees only through the shared storage")
		return
	}
	c.BeforeActivate = joinScripts(c.BeforeActivate, laravelMaintenanceDown)
	c.AfterActivate = joinScripts(LaravelMaintenanceUp, c.AfterActivate)
	c.OnFailure = joinScripts(LaravelMaintenanceUp, c.OnFailure)
}

func joinScripts(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "\n" + b
}
