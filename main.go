// Command atomic-deploy releases a web application to one or many servers
// with zero downtime; it is both a GitHub Action and a CLI.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/atomic-deploy/atomic-deploy/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, os.Args[1:], os.Environ(), app.StdIO())
	stop()
	os.Exit(code)
}
