// Package health checks a deployed site from the runner after the switch.
package health

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Check polls url until it answers 2xx or timeout passes.
type Check struct {
	URL     string
	Timeout time.Duration
	Client  *http.Client
	Every   time.Duration // between attempts
}

// Run polls until success or timeout and says what it saw last.
func (c Check) Run(ctx context.Context) error {
	client := c.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	every := c.Every
	if every <= 0 {
		every = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
		if err != nil {
			return fmt.Errorf("health check %s: %w", c.URL, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode >= 200 && resp.StatusCode < 300 {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("health check failed: %s did not answer 2xx within %s (last: %s)", c.URL, c.Timeout, last)
		case <-time.After(every):
		}
	}
}
