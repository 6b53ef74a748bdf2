package sshx

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
)

// ParseFingerprint checks a host key fingerprint and returns it in the form
// ssh-keygen prints ("SHA256:" + unpadded base64). It also accepts a whole
// `ssh-keygen -l` output line, a missing "SHA256:" prefix and '=' padding,
// which is how fingerprints usually get mangled on the way into a secret.
func ParseFingerprint(s string) (string, error) {
	f := strings.TrimSpace(s)
	for _, w := range strings.Fields(f) {
		if hasPrefixFold(w, "SHA256:") {
			f = w
			break
		}
	}
	if hasPrefixFold(f, "MD5:") || looksLikeMD5(f) {
		return "", fmt.Errorf("fingerprint %q is an MD5 fingerprint; give the SHA256 one "+
			"(`ssh-keygen -E sha256 -lf <host key .pub file>` prints it)", s)
	}
	b64 := f
	if hasPrefixFold(f, "SHA256:") {
		b64 = f[len("SHA256:"):]
	}
	b64 = strings.TrimRight(b64, "=")
	if raw, err := base64.RawStdEncoding.DecodeString(b64); err != nil || len(raw) != 32 {
		return "", fmt.Errorf("fingerprint %q is not of the form SHA256:<43 base64 characters> "+
			"as printed by `ssh-keygen -lf <host key .pub file>`", s)
	}
	return "SHA256:" + b64, nil
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// looksLikeMD5 matches "aa:bb:...:ff" (16 hex bytes).
func looksLikeMD5(s string) bool {
	parts := strings.Split(s, ":")
	if len(parts) != 16 {
		return false
	}
	for _, p := range parts {
		if len(p) != 2 || strings.Trim(strings.ToLower(p), "0123456789abcdef") != "" {
			return false
		}
	}
	return true
}

// ParseKnownHosts checks known_hosts text line by line, naming the first
// bad line, so a mangled secret is reported before connecting.
func ParseKnownHosts(text string) error {
	entries := 0
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 3 || (fields[0][0] == '@' && len(fields) < 4) {
			if len(fields) >= 2 && isKeyType(fields[0]) {
				return fmt.Errorf("known_hosts line %d has no host name: lines look like "+
					"`[host]:port ssh-ed25519 AAAA...` (`ssh-keyscan -p <port> <host>` prints them)", n)
			}
			return fmt.Errorf("known_hosts line %d is not `host keytype base64-key`", n)
		}
		_, hosts, _, _, _, err := ssh.ParseKnownHosts([]byte(line))
		if err != nil {
			return fmt.Errorf("known_hosts line %d: the key does not parse (%v)", n, err)
		}
		for _, h := range hosts {
			if err := checkHashedHost(h); err != nil {
				return fmt.Errorf("known_hosts line %d: %w", n, err)
			}
		}
		entries++
	}
	if entries == 0 {
		return errors.New("known_hosts text has no entries")
	}
	return nil
}

func isKeyType(s string) bool {
	return strings.HasPrefix(s, "ssh-") || strings.HasPrefix(s, "ecdsa-sha2-") || strings.HasPrefix(s, "sk-")
}

// checkHashedHost validates a "|1|salt|hash" host entry (HashKnownHosts).
func checkHashedHost(h string) error {
	if !strings.HasPrefix(h, "|") {
		return nil
	}
	parts := strings.Split(h, "|")
	if len(parts) != 4 || parts[1] != "1" {
		return fmt.Errorf("hashed host %q is not of the form |1|salt|hash", h)
	}
	for _, p := range parts[2:] {
		if _, err := base64.StdEncoding.DecodeString(p); err != nil {
			return fmt.Errorf("hashed host %q is not valid base64", h)
		}
	}
	return nil
}

// hostKeys checks the host keys of one hop: the target or the jump host.
type hostKeys struct {
	insecure     bool
	fingerprints []string              // this hop's own
	db           *knownhosts.HostKeyDB // nil without known_hosts text; shared by the hops
}

// newHostKeys returns the checks for the target and for the jump host.
func newHostKeys(cfg Config) (target, jump *hostKeys, err error) {
	var db *knownhosts.HostKeyDB
	if cfg.KnownHosts != "" {
		if err := ParseKnownHosts(cfg.KnownHosts); err != nil {
			return nil, nil, err
		}
		if db, err = knownHostsDB(cfg.KnownHosts); err != nil {
			return nil, nil, err
		}
	}
	hop := func(pins []string) (*hostKeys, error) {
		h := &hostKeys{insecure: cfg.insecure(), db: db}
		for _, f := range pins {
			fp, err := ParseFingerprint(f)
			if err != nil {
				return nil, err
			}
			h.fingerprints = append(h.fingerprints, fp)
		}
		return h, nil
	}
	if target, err = hop(cfg.Fingerprints); err != nil {
		return nil, nil, err
	}
	if jump, err = hop(cfg.JumpHostFingerprints); err != nil {
		return nil, nil, err
	}
	return target, jump, nil
}

// knownHostsDB loads known_hosts text. The matching code (hashed hosts,
// patterns, [host]:port, @cert-authority) only reads files, so the text goes
// through a private temp file that is removed at once.
func knownHostsDB(text string) (*knownhosts.HostKeyDB, error) {
	f, err := os.CreateTemp("", "atomic-deploy-known-hosts-*")
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = io.Copy(f, strings.NewReader(text))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	db, err := knownhosts.NewDB(f.Name())
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	return db, nil
}

// algorithms lists the host key algorithms to offer for addr: the types
// pinned in known_hosts, so the server cannot negotiate an unpinned type
// whose key we would then reject. Nil means the library default.
func (h *hostKeys) algorithms(addr string) []string {
	if h.insecure || h.db == nil {
		return nil
	}
	return h.db.HostKeyAlgorithms(addr)
}

// callback checks the key offered by addr and also stores the typed error in
// *failure: the handshake error wraps it in text of its own.
func (h *hostKeys) callback(failure *error) ssh.HostKeyCallback {
	return func(addr string, remote net.Addr, key ssh.PublicKey) error {
		err := h.check(addr, remote, key)
		*failure = err
		return err
	}
}

func (h *hostKeys) check(addr string, remote net.Addr, key ssh.PublicKey) error {
	if h.insecure {
		return nil
	}
	offered := ssh.FingerprintSHA256(key)
	for _, fp := range h.fingerprints {
		if fp == offered {
			return nil
		}
	}
	expected := append([]string(nil), h.fingerprints...)
	if h.db != nil {
		err := h.db.HostKeyCallback()(addr, remote, key)
		var keyErr *xknownhosts.KeyError
		var revoked *xknownhosts.RevokedError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &revoked):
			return fmt.Errorf("host key of %s (%s) is marked @revoked in known_hosts", addr, offered)
		case errors.As(err, &keyErr):
			for _, w := range keyErr.Want {
				expected = append(expected, ssh.FingerprintSHA256(w.Key))
			}
		default:
			return fmt.Errorf("check host key of %s: %w", addr, err)
		}
	}
	if len(expected) == 0 {
		return &UnknownHostError{
			Addr:           addr,
			KeyType:        key.Type(),
			Fingerprint:    offered,
			KnownHostsLine: knownhosts.Line([]string{knownhosts.Normalize(addr)}, key),
		}
	}
	return &HostKeyMismatchError{Addr: addr, KeyType: key.Type(), Offered: offered, Expected: dedupe(expected)}
}

// noCommonAlgorithm explains a handshake that failed because the server has
// none of the key types pinned for it in known_hosts.
func (h *hostKeys) noCommonAlgorithm(addr string, err error) error {
	if h.db == nil || !strings.Contains(err.Error(), "no common algorithm for host key") {
		return nil
	}
	var expected []string
	for _, k := range h.db.HostKeys(addr) {
		expected = append(expected, k.Type()+" "+ssh.FingerprintSHA256(k))
	}
	return &HostKeyMismatchError{
		Addr:     addr,
		Expected: expected,
		Detail:   "the server has no host key of the types pinned in known_hosts (" + err.Error() + ")",
	}
}

func dedupe(s []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// offeredMethods describes the credentials for an AuthError; public key
// fingerprints identify the key without revealing it.
func offeredMethods(signers []ssh.Signer, password bool) []string {
	var m []string
	for _, signer := range signers {
		pub := signer.PublicKey()
		m = append(m, fmt.Sprintf("publickey (%s %s)", pub.Type(), ssh.FingerprintSHA256(pub)))
	}
	if password {
		m = append(m, "password", "keyboard-interactive")
	}
	return m
}
