package config

import (
	"net"
	"slices"
	"strconv"
	"strings"
)

// HostFingerprint pins the host key of one server (a host or the jump
// host): Host as listed, lower-cased; Port 0 matches whatever port that
// host is listed with.
type HostFingerprint struct {
	Host        string
	Port        int
	Fingerprint string // SHA256:...
}

func (p HostFingerprint) matches(h Host) bool {
	return strings.EqualFold(p.Host, h.Name) && (p.Port == 0 || p.Port == h.Port)
}

// FingerprintsFor returns the fingerprints pinned for h, the only keys
// (besides known-hosts) h may present.
func (c *Config) FingerprintsFor(h Host) []string {
	var out []string
	for _, p := range c.Fingerprints {
		if p.matches(h) {
			out = append(out, p.Fingerprint)
		}
	}
	return out
}

// servers lists the hosts, then the jump host.
func (c *Config) servers() []Host {
	if c.JumpHost == nil {
		return c.Hosts
	}
	return append(append([]Host{}, c.Hosts...), *c.JumpHost)
}

// parseFingerprints reads the fingerprint lines: HOST=SHA256:… or
// HOST SHA256:… (HOST is name, name:port or [name]:port, as in host), or
// bare SHA256:… ones when there is exactly one server (no jump host) to
// pin. Every pin must name one of servers, unambiguously.
func parseFingerprints(lines []string, servers []Host, fail func(string, string, ...any)) []HostFingerprint {
	var pins []HostFingerprint
	for _, line := range lines {
		hostPart, fp, perHost := splitFingerprintLine(line)
		if len(strings.Fields(line)) > 2 {
			fail("fingerprint", "%q is not HOST=SHA256:… or [HOST]:PORT SHA256:… (one server's fingerprint a line)", line)
			continue
		}
		if !fingerprintRE.MatchString(fp) {
			fail("fingerprint", "%q is not a SHA256 fingerprint; copy it as `ssh-keygen -lf` prints it, e.g. SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8", fp)
			continue
		}
		if !perHost {
			switch {
			case len(servers) == 0: // a local run: nothing to pin
			case len(servers) == 1:
				pins = append(pins, HostFingerprint{Host: strings.ToLower(servers[0].Name), Port: servers[0].Port, Fingerprint: fp})
			default:
				var examples []string
				for _, h := range servers {
					if h.Port == 22 {
						examples = append(examples, h.Name+"=SHA256:…")
					} else {
						examples = append(examples, pinName(h.Name, h.Port)+" SHA256:…")
					}
				}
				fail("fingerprint", "a bare fingerprint is accepted only for a single host without jump-host: each server has its own host key, and one pinned for all would let any of them (a compromised jump host too) answer for another. Give one line per server:\n  %s", strings.Join(examples, "\n  "))
			}
			continue
		}
		if strings.Contains(hostPart, "@") {
			fail("fingerprint", "%q: write the host without the user, e.g. %s", line, strings.TrimPrefix(hostPart[strings.LastIndex(hostPart, "@"):], "@")+"=SHA256:…")
			continue
		}
		// [name]:port is known_hosts' way; ParseHost keeps brackets for IPv6.
		spec := hostPart
		if inner, rest, ok := strings.Cut(strings.TrimPrefix(hostPart, "["), "]"); ok && strings.HasPrefix(hostPart, "[") && net.ParseIP(inner) == nil {
			spec = inner + rest
		}
		h, err := ParseHost(spec, "", 0)
		if err != nil {
			fail("fingerprint", "%v", err)
			continue
		}
		pin := HostFingerprint{Host: strings.ToLower(h.Name), Port: h.Port, Fingerprint: fp}
		var ports []int
		for _, s := range servers {
			if pin.matches(s) && !slices.Contains(ports, s.Port) {
				ports = append(ports, s.Port)
			}
		}
		switch {
		case len(ports) == 0:
			fail("fingerprint", "%s is not in host or jump-host; a fingerprint names the server it pins as host lists it", pinName(h.Name, h.Port))
			continue
		case len(ports) > 1:
			fail("fingerprint", "%s is listed with ports %d and %d: name the port, e.g. %s SHA256:…", h.Name, ports[0], ports[1], pinName(h.Name, ports[1]))
			continue
		}
		pins = append(pins, pin)
	}
	return pins
}

// splitFingerprintLine splits HOST=FP or HOST FP; a line that is only a
// fingerprint (or something else with no host) has perHost false.
func splitFingerprintLine(line string) (host, fp string, perHost bool) {
	if f := strings.Fields(line); len(f) >= 2 {
		return f[0], f[len(f)-1], true
	}
	if hasPrefixFold(line, "SHA256:") || hasPrefixFold(line, "MD5:") {
		return "", line, false
	}
	if h, f, ok := strings.Cut(line, "="); ok {
		return h, f, true
	}
	return "", line, false
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// pinName is how a fingerprint line names a server: the name for port 22
// or any port (0), else [name]:port as in known_hosts.
func pinName(name string, port int) string {
	if port == 0 || port == 22 {
		return name
	}
	return "[" + name + "]:" + strconv.Itoa(port)
}
