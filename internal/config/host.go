package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Host is one target server.
type Host struct {
	User string
	Name string // host name or IP address, without brackets
	Port int
}

// Addr is host:port, suitable for net.Dial.
func (h Host) Addr() string { return net.JoinHostPort(h.Name, strconv.Itoa(h.Port)) }

// String is [user@]host:port; a host without a user (a jump host that
// takes the target's user) has no "@".
func (h Host) String() string {
	if h.User == "" {
		return h.Addr()
	}
	return h.User + "@" + h.Addr()
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("%q is not a TCP port (1-65535)", s)
	}
	return p, nil
}

func validUser(u string) error {
	if !userRE.MatchString(u) || len(u) > 64 {
		return fmt.Errorf("%q is not a valid user name (letters, digits, _ . -)", u)
	}
	return nil
}

// ParseHost reads [user@]host[:port]; IPv6 addresses go in brackets.
func ParseHost(spec, defaultUser string, defaultPort int) (Host, error) {
	h := Host{User: defaultUser, Port: defaultPort}
	rest := spec
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		h.User = rest[:i]
		rest = rest[i+1:]
		if err := validUser(h.User); err != nil {
			return Host{}, fmt.Errorf("%q: %v", spec, err)
		}
	}
	name, portText, hasPort := rest, "", false
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]")
		if end < 0 {
			return Host{}, fmt.Errorf("%q: missing ] after IPv6 address", spec)
		}
		name = rest[1:end]
		switch after := rest[end+1:]; {
		case after == "":
		case strings.HasPrefix(after, ":"):
			portText, hasPort = after[1:], true
		default:
			return Host{}, fmt.Errorf("%q: unexpected %q after ]", spec, after)
		}
		if net.ParseIP(name) == nil {
			return Host{}, fmt.Errorf("%q: %q is not an IPv6 address", spec, name)
		}
	} else if i := strings.LastIndex(rest, ":"); i >= 0 {
		if strings.Count(rest, ":") > 1 {
			return Host{}, fmt.Errorf("%q: write IPv6 addresses in brackets, e.g. [2001:db8::1]:22", spec)
		}
		name, portText, hasPort = rest[:i], rest[i+1:], true
	}
	if hasPort { // "host:" is a typo, not the default port
		p, err := parsePort(portText)
		if err != nil {
			return Host{}, fmt.Errorf("%q: %v", spec, err)
		}
		h.Port = p
	}
	if name == "" {
		return Host{}, fmt.Errorf("%q: no host name", spec)
	}
	if net.ParseIP(name) == nil && (!hostRE.MatchString(name) || len(name) > 253) {
		return Host{}, fmt.Errorf("%q: %q is not a host name or IP address", spec, name)
	}
	h.Name = name
	return h, nil
}

func duplicateHost(hosts []Host) string {
	seen := map[string]bool{}
	for _, h := range hosts {
		if seen[h.Addr()] {
			return h.Addr()
		}
		seen[h.Addr()] = true
	}
	return ""
}
