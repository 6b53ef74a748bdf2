package config

import (
	"errors"
	"net/url"
	"strings"
)

// HostPlaceholder in healthcheck-url stands for each host's name.
const HostPlaceholder = "{host}"

// HealthcheckPerHost reports whether healthcheck-url names each host
// ({host}), so every switched host is checked at its own URL.
func (c *Config) HealthcheckPerHost() bool {
	return strings.Contains(c.HealthcheckURL, HostPlaceholder)
}

// HealthcheckURLFor is healthcheck-url for host h: {host} replaced by its
// name as given in host, without user and port; an IPv6 address in
// brackets, as a URL writes it.
func (c *Config) HealthcheckURLFor(h Host) string {
	name := h.Name
	if strings.Contains(name, ":") {
		name = "[" + name + "]"
	}
	return strings.ReplaceAll(c.HealthcheckURL, HostPlaceholder, name)
}

// checkHealthcheckURL checks healthcheck-url as it will be requested:
// with {host} replaced by each host's name.
func checkHealthcheckURL(c *Config, fail func(string, string, ...any)) {
	raw := c.HealthcheckURL
	samples := []string{raw}
	if c.HealthcheckPerHost() {
		if len(c.Hosts) == 0 {
			fail("healthcheck-url", "%s stands for each host's name, but no host is given", HostPlaceholder)
			return
		}
		samples = samples[:0]
		for _, h := range c.Hosts {
			samples = append(samples, c.HealthcheckURLFor(h))
		}
	}
	if !strings.HasPrefix(raw, "http://") && !strings.HasPrefix(raw, "https://") {
		fail("healthcheck-url", "%q must start with http:// or https://", RedactURL(raw))
		return
	}
	for _, s := range samples {
		if err := validURLWithHost(s); err != nil {
			fail("healthcheck-url", "%q is not a URL with a host, e.g. https://example.com/up or https://{host}/up", RedactURL(s))
			return
		}
	}
}

// validURLWithHost reports whether raw parses as a URL with a host.
func validURLWithHost(raw string) error {
	u, err := url.Parse(raw)
	if err == nil && u.Host == "" {
		err = errNoHost
	}
	return err
}

var errNoHost = errors.New("no host")
