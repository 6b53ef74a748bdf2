package config

// Laravel preset defaults; each applies only where the input was left empty.
const (
	laravelBeforeActivate = `php artisan migrate --force
php artisan config:cache
php artisan route:cache
php artisan view:cache`
	laravelAfterActivate = `php artisan queue:restart`
)

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
	}
	if !given("after-activate") {
		c.AfterActivate = laravelAfterActivate
	}
}
