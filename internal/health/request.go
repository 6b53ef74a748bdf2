package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Request asks rawURL once (GET) and wants a 2xx answer within timeout:
// an opcache-reset-url. Its errors show the URL without its password and
// query (which may hold a token), whatever went wrong.
func Request(ctx context.Context, client *http.Client, rawURL string, timeout time.Duration) error {
	if client == nil {
		client = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return fmt.Errorf("%s: %v", Shown(rawURL), withoutURL(err))
	}
	req.Header.Set("Cache-Control", "no-cache")
	req.Header.Set("User-Agent", "atomic-deploy opcache reset")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %v", Shown(rawURL), withoutURL(err))
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s answered HTTP %d", Shown(rawURL), resp.StatusCode)
	}
	return nil
}

// Shown is rawURL to print: without its query, and a password in it as
// "xxxxx".
func Shown(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "the URL" // unreachable: config checks it parses
	}
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "…", false
	}
	u.Fragment, u.RawFragment = "", ""
	return u.Redacted()
}

// withoutURL is what went wrong, without the URL net/http puts in front.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
