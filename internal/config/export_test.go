package config

// The preset's scripts, for tests that compare or run them.
const (
	LaravelBeforeActivate     = laravelBeforeActivate
	LaravelBeforeActivateOnce = laravelBeforeActivateOnce
	LaravelAfterActivate      = laravelAfterActivate
)

// LaravelMaintenanceDown is embedded from a file, so it is a variable.
var LaravelMaintenanceDown = laravelMaintenanceDown
