package app

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

type closeCounter struct {
	transport.Transport
	closed *atomic.Int32
}

func (c closeCounter) Close() error { c.closed.Add(1); return nil }

// Early dials are handed over once each; those never handed over (the
// release could not be described, say) are closed at the end, and one
// still dialling is stopped rather than waited for.
func TestDialEarly(t *testing.T) {
	var dials, closed atomic.Int32
	quick := deploy.Target{Name: "quick", Dial: func(context.Context) (transport.Transport, error) {
		dials.Add(1)
		return closeCounter{closed: &closed}, nil
	}}
	hanging := deploy.Target{Name: "hanging", Dial: func(ctx context.Context) (transport.Transport, error) {
		dials.Add(1)
		<-ctx.Done()
		return nil, ctx.Err()
	}}

	early, closeUnused := dialEarly(context.Background(), []deploy.Target{quick, quick, hanging}, 2)
	tr, err := early[0].Dial(context.Background())
	if err != nil || tr == nil {
		t.Fatalf("handed over: %v, %v", tr, err)
	}
	start := time.Now()
	closeUnused()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closing waited %v for a dial in progress", d)
	}
	if got := dials.Load(); got != 3 {
		t.Errorf("%d dials, want 3", got)
	}
	if got := closed.Load(); got != 1 {
		t.Errorf("%d connections closed, want 1 (the one never handed over)", got)
	}
}
