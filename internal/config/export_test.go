package config

// The preset's scripts, for tests that compare or run them.
const (
	LaravelBeforeActivate     = laravelBeforeActivate
	LaravelBeforeActivateOnce = laravelBeforeActivateOnce
	LaravelAfterActivate      = laravelAfterActivate
	LaravelMaintenanceDown    = laravelMaintenanceDown
)
