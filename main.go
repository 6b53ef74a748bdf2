// Command atomic-deploy releases a web application to one or many servers
// with zero downtime; it is both a GitHub Action and a CLI.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/atomic-deploy/atomic-deploy/internal/app"
)

// memoryLimit keeps the heap (and so the RSS) of a deploy of a large
// release near 100 MB; GOMEMLIMIT overrides it.
const memoryLimit = 72 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, os.Args[1:], os.Environ(), app.StdIO())
	stop()
	os.Exit(code)
}
