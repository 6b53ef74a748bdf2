// Package health checks a deployed site from the runner after the switch.
package health

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ReleasePlaceholder in Expect stands for the new release id.
const ReleasePlaceholder = "{release-id}"

// Check polls URL until it answers 2xx (and, with Expect, mentions what is
// expected) or Timeout passes.
type Check struct {
	URL     string
	Timeout time.Duration
	// Expect must appear in the body or in a header value;
	// ReleasePlaceholder is replaced by the new release id.
	Expect string
	Client *http.Client
	Every  time.Duration // between attempts
}

// StaleError says the old release is still being served after the switch.
type StaleError struct {
	URL               string
	NewID, PreviousID string
	Waited            time.Duration
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("health check: %s still serves the previous release %s %s after current was switched to %s. "+
		"The web server or PHP resolves the old path: with nginx + php-fpm pass the resolved path "+
		"(fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name; fastcgi_param DOCUMENT_ROOT $realpath_root;) "+
		"instead of $document_root, or reload php-fpm in after-activate, because OPcache and the realpath cache keep the old release",
		redacted(e.URL), e.PreviousID, e.Waited.Round(time.Second), e.NewID)
}

// redacted is rawURL to print: a password in it shows as "xxxxx".
func redacted(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "the health check URL" // unreachable: config checks it parses
	}
	return u.Redacted()
}

// Run polls until success or timeout and says what it saw last.
// previousID, when known, lets it recognise the stale-release trap.
func (c Check) Run(ctx context.Context, newID, previousID string) error {
	client := c.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	every := c.Every
	if every <= 0 {
		every = 500 * time.Millisecond
	}
	expect := strings.ReplaceAll(c.Expect, ReleasePlaceholder, newID)
	start := time.Now()
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	var last string
	stale := false
	for {
		status, text, err := fetch(ctx, client, c.URL)
		switch {
		case err != nil && ctx.Err() != nil && last != "":
			// The time ran out during this request: what the ones before
			// saw says more than "context deadline exceeded".
		case err != nil:
			last, stale = err.Error(), false // net/http shows the URL's password as ***
		case status < 200 || status > 299:
			last, stale = fmt.Sprintf("HTTP %d", status), false
		case expect != "" && !strings.Contains(text, expect):
			last = fmt.Sprintf("HTTP %d without %q", status, expect)
			stale = previousID != "" && strings.Contains(text, previousID)
		case previousID != "" && previousID != newID && strings.Contains(text, previousID) && !strings.Contains(text, newID):
			last, stale = fmt.Sprintf("HTTP %d naming release %s", status, previousID), true
		default:
			return nil
		}
		select {
		case <-ctx.Done():
			if err := parent.Err(); err != nil {
				return err
			}
			if stale {
				return &StaleError{URL: c.URL, NewID: newID, PreviousID: previousID, Waited: time.Since(start)}
			}
			return fmt.Errorf("health check failed: %s did not pass within %s (last: %s)", redacted(c.URL), c.Timeout, last)
		case <-time.After(every):
		}
	}
}

// fetch returns the status and the headers plus body as one text to search.
func fetch(ctx context.Context, client *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Cache-Control", "no-cache")
	req.Header.Set("User-Agent", "atomic-deploy health check")
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, "", err
	}
	var b strings.Builder
	for k, vs := range resp.Header {
		for _, v := range vs {
			b.WriteString(k + ": " + v + "\n")
		}
	}
	b.Write(body)
	return resp.StatusCode, b.String(), nil
}
