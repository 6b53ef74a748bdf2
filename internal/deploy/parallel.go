package deploy

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// Independent requests go out together: each is a round trip on a remote
// host, and waiting for them one by one adds up. Both helpers stop at the
// first error and cancel the others.

// parallel runs fns at once.
func parallel(ctx context.Context, fns ...func(context.Context) error) error {
	return forEach(ctx, len(fns), fns, run)
}

func run(ctx context.Context, fn func(context.Context) error) error { return fn(ctx) }

// forEach runs fn for every item, at most limit at a time.
func forEach[T any](ctx context.Context, limit int, items []T, fn func(context.Context, T) error) error {
	if len(items) == 0 {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(limit)
	for _, it := range items {
		g.Go(func() error { return fn(gctx, it) })
	}
	return g.Wait()
}
