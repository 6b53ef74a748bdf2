package config

import (
	"net/url"
	"strings"
)

// OPcache resets (the opcache-reset input).
const (
	OpcacheFPMReload = "fpm-reload" // opcache-reset-command on each server, right after the switch
	OpcacheURL       = "url"        // opcache-reset-url from the runner, before the health check
)

// parseOpcacheReset checks opcache-reset with the input it needs.
func parseOpcacheReset(c *Config, mode, command string, urls []string, fail func(string, string, ...any)) {
	switch mode {
	case "":
		if command != "" {
			fail("opcache-reset-command", "is run by opcache-reset: %s only; set it, or remove opcache-reset-command", OpcacheFPMReload)
		}
		if len(urls) > 0 {
			fail("opcache-reset-url", "is requested by opcache-reset: %s only; set it, or remove opcache-reset-url", OpcacheURL)
		}
		return
	case OpcacheFPMReload:
		if command == "" {
			fail("opcache-reset-command", "opcache-reset: %s needs the command that resets OPcache on each server, e.g. sudo systemctl reload php8.2-fpm", OpcacheFPMReload)
		}
		if len(urls) > 0 {
			fail("opcache-reset-url", "is for opcache-reset: %s, not %s", OpcacheURL, OpcacheFPMReload)
		}
	case OpcacheURL:
		if len(urls) == 0 {
			fail("opcache-reset-url", "opcache-reset: %s needs the URL (one per server) of a script that calls opcache_reset()", OpcacheURL)
		}
		if command != "" {
			fail("opcache-reset-command", "is for opcache-reset: %s, not %s", OpcacheFPMReload, OpcacheURL)
		}
	default:
		fail("opcache-reset", "%q is not one of %s, %s", mode, OpcacheFPMReload, OpcacheURL)
		return
	}
	for _, raw := range urls {
		if !strings.HasPrefix(raw, "http://") && !strings.HasPrefix(raw, "https://") {
			fail("opcache-reset-url", "%q must start with http:// or https://", RedactURL(raw))
		} else if u, err := url.Parse(raw); err != nil || u.Host == "" {
			fail("opcache-reset-url", "%q is not a URL with a host, e.g. https://example.com/opcache-reset.php", RedactURL(raw))
		}
	}
	c.OpcacheReset, c.OpcacheResetCommand, c.OpcacheResetURLs = mode, command, urls
}
