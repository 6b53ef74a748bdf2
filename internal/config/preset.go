package config

// Laravel preset defaults; each applies only where the input was left empty,
// so any of them can be replaced by giving the input explicitly.
//
//   - shared-dirs `storage` and shared-files `.env` live in <path>/shared and
//     are linked into every release. storage/ is seeded from the first
//     release; .env never is: a deploy without <path>/shared/.env (and with
//     no .env in the release) fails before the switch and says where the
//     production .env goes, instead of creating an empty one.
//   - writable-dirs `bootstrap/cache` (per release: the config, route and
//     view caches built below) and `storage`.
//   - before-activate runs in the new release on every host while the old
//     one still serves: the caches, so the first request to the new release
//     is already fast. The caches hold the release's own paths, never
//     `current`.
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
	laravelBeforeActivate = `php artisan config:cache
php artisan route:cache
php artisan view:cache`
	laravelBeforeActivateOnce = `php artisan migrate --force`
	laravelAfterActivate      = `php artisan queue:restart`
)

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
