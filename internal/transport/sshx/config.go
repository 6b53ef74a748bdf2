// Package sshx is the Transport over one SSH connection per host: SFTP for
// files, exec sessions on the same connection for commands when the server
// allows a shell.
package sshx

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Defaults applied by Dial to zero fields.
const (
	DefaultPort           = 22
	DefaultConnectTimeout = 20 * time.Second
	DefaultConcurrency    = 256
)

// Config describes one target. Secrets (PrivateKey, Passphrase, Password) are
// never printed: String and GoString redact them and no error quotes them.
type Config struct {
	Host string
	Port int // 0 means 22
	User string

	PrivateKey string // PEM text, as in a GitHub secret
	Passphrase string // for an encrypted PrivateKey
	Password   string

	KnownHosts string // known_hosts file text, for the target and the jump host
	// Fingerprints are the keys the target may present ("SHA256:..." as
	// ssh-keygen -l prints them), JumpHostFingerprints the jump host's:
	// each hop is checked against its own, so a jump host cannot stand in
	// for the target with its own key.
	Fingerprints         []string
	JumpHostFingerprints []string
	// InsecureIgnoreHostKey accepts any host key when no known_hosts text or
	// fingerprint is given (pins that are given are always checked); the
	// caller warns about it.
	InsecureIgnoreHostKey bool

	// JumpHost is "[user@]host[:port]", reached with the same credentials
	// and checked against the same known_hosts text as the target.
	JumpHost string

	ConnectTimeout time.Duration // each attempt; 0 means DefaultConnectTimeout
	// ConnectRetries is how many more attempts a failure that may pass by
	// itself gets (see Retryable); 0 means one attempt only.
	ConnectRetries int
	// OnRetry, when set, is told of each failed attempt (numbered from 1)
	// that will be tried again after wait.
	OnRetry     func(err error, attempt int, wait time.Duration) `json:"-"`
	Concurrency int                                              // SFTP requests in flight; 0 means DefaultConcurrency
}

// String names the target without any secret.
func (c Config) String() string {
	s := fmt.Sprintf("sshx.Config{%s", c.addrUser())
	if c.JumpHost != "" {
		s += " via " + c.JumpHost
	}
	if c.PrivateKey != "" {
		s += " key=<redacted>"
	}
	if c.Passphrase != "" {
		s += " passphrase=<redacted>"
	}
	if c.Password != "" {
		s += " password=<redacted>"
	}
	return s + "}"
}

// GoString keeps %#v from printing secrets too.
func (c Config) GoString() string { return c.String() }

func (c Config) port() int {
	if c.Port == 0 {
		return DefaultPort
	}
	return c.Port
}

func (c Config) addr() string {
	return net.JoinHostPort(c.Host, strconv.Itoa(c.port()))
}

func (c Config) addrUser() string {
	return c.User + "@" + c.addr()
}

func (c Config) connectTimeout() time.Duration {
	if c.ConnectTimeout == 0 {
		return DefaultConnectTimeout
	}
	return c.ConnectTimeout
}

func (c Config) concurrency() int {
	if c.Concurrency == 0 {
		return DefaultConcurrency
	}
	return c.Concurrency
}

// Validate checks everything that can be checked without connecting, so a
// typo in a key or known_hosts line is reported before any deploy starts.
// All problems are reported at once (errors.Join).
func (c Config) Validate() error {
	_, err := c.validate()
	return err
}

// validate is Validate that also returns the parsed key, so that Dial
// decrypts an encrypted key (bcrypt, slow on purpose) only once.
func (c Config) validate() ([]ssh.Signer, error) {
	var signers []ssh.Signer
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(validateHost("host", c.Host))
	if c.Port < 0 || c.Port > 65535 {
		add(fmt.Errorf("port %d is out of range 1-65535", c.Port))
	}
	if c.User == "" {
		add(errors.New("user is empty"))
	} else if strings.ContainsAny(c.User, " \t\r\n@") {
		add(fmt.Errorf("user %q contains a space or '@'", c.User))
	}
	if c.PrivateKey == "" && c.Password == "" {
		add(errors.New("no credentials: set a private key or a password"))
	}
	if c.PrivateKey != "" {
		var err error
		signers, err = ParsePrivateKeys(c.PrivateKey, c.Passphrase)
		add(err)
	}
	if c.KnownHosts != "" {
		add(ParseKnownHosts(c.KnownHosts))
	}
	for _, f := range append(append([]string{}, c.Fingerprints...), c.JumpHostFingerprints...) {
		_, err := ParseFingerprint(f)
		add(err)
	}
	if c.KnownHosts == "" && len(c.Fingerprints) == 0 && !c.insecure() {
		add(fmt.Errorf("%w for %s: set known_hosts (for example the output of `ssh-keyscan -p %d %s`) "+
			"or a host key fingerprint (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the server); "+
			"skipping the check is possible but lets anyone in the middle read the deploy",
			ErrNoHostKeyPin, c.addr(), c.port(), c.Host))
	}
	if c.JumpHost != "" {
		_, host, port, err := parseJumpHost(c.JumpHost, c.User)
		add(err)
		if err == nil && c.KnownHosts == "" && len(c.JumpHostFingerprints) == 0 && !c.insecure() {
			add(fmt.Errorf("%w for jump host %s: set known_hosts with a line for it, or its own fingerprint "+
				"(the target's pins are not the jump host's)", ErrNoHostKeyPin, net.JoinHostPort(host, strconv.Itoa(port))))
		}
	}
	if c.ConnectTimeout < 0 {
		add(fmt.Errorf("connect timeout %v is negative", c.ConnectTimeout))
	}
	if c.ConnectRetries < 0 {
		add(fmt.Errorf("connect retries %d is negative", c.ConnectRetries))
	}
	if c.Concurrency < 0 {
		add(fmt.Errorf("concurrency %d is negative", c.Concurrency))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return signers, nil
}

// insecure reports whether host keys go unchecked: asked for, and nothing
// pinned at all (a pin that is given is always checked, on its hop; a hop
// without one then fails).
func (c Config) insecure() bool {
	return c.InsecureIgnoreHostKey && c.KnownHosts == "" && len(c.Fingerprints) == 0 && len(c.JumpHostFingerprints) == 0
}

func validateHost(what, h string) error {
	switch {
	case h == "":
		return fmt.Errorf("%s is empty", what)
	case strings.Contains(h, "@"):
		return fmt.Errorf("%s %q contains '@': give the user separately", what, h)
	case strings.ContainsAny(h, " \t\r\n/[]"):
		return fmt.Errorf("%s %q is not a host name or IP address", what, h)
	}
	return nil
}

// parseJumpHost splits "[user@]host[:port]"; user defaults to the target's.
func parseJumpHost(s, defaultUser string) (user, host string, port int, err error) {
	user, hostport := defaultUser, s
	if i := strings.LastIndex(s, "@"); i >= 0 {
		user, hostport = s[:i], s[i+1:]
		if user == "" {
			return "", "", 0, fmt.Errorf("jump host %q: empty user before '@'", s)
		}
	}
	host, port = hostport, DefaultPort
	if h, p, splitErr := net.SplitHostPort(hostport); splitErr == nil {
		host = h
		port, err = strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			return "", "", 0, fmt.Errorf("jump host %q: port %q is not a number in 1-65535", s, p)
		}
	} else if strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]") {
		host = hostport[1 : len(hostport)-1] // "[::1]" without a port
	}
	if err := validateHost("jump host", host); err != nil {
		return "", "", 0, err
	}
	return user, host, port, nil
}
