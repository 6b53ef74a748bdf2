package sshx

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors, for errors.Is. The typed errors below wrap them.
var (
	ErrNoHostKeyPin = errors.New("no host key to check the server against")

	ErrKeyNotPEM            = errors.New("the private key is not PEM text")
	ErrKeyTruncated         = errors.New("the private key is truncated or damaged")
	ErrKeyUnsupported       = errors.New("the private key type or format is not supported")
	ErrKeyPassphraseMissing = errors.New("the private key is encrypted and no passphrase was given")
	ErrKeyPassphraseWrong   = errors.New("the passphrase does not decrypt the private key")

	ErrConnectTimeout = errors.New("timed out")
	ErrConnectRefused = errors.New("connection refused")

	ErrAtomicRenameUnsupported = errors.New("atomic rename is not supported by this server " +
		"(no posix-rename@openssh.com SFTP extension and no shell for mv -T)")
	ErrHardLinkUnsupported = errors.New("hard links are not supported by this server " +
		"(no hardlink@openssh.com SFTP extension and no shell for ln)")
)

// KeyError says what is wrong with private key text. It never contains the
// key or the passphrase. Kind is one of the ErrKey* sentinels.
type KeyError struct {
	Kind error
	Hint string // what to do about it
	Err  error  // the x/crypto error behind it, if any (it carries no key material)
}

func (e *KeyError) Error() string {
	s := "private key: " + e.Kind.Error()
	if e.Hint != "" {
		s += ": " + e.Hint
	}
	return s
}

func (e *KeyError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// AuthError is the server refusing every credential offered.
type AuthError struct {
	User     string
	Addr     string   // host:port
	JumpHost bool     // Addr is the jump host
	Methods  []string // what was offered, e.g. "publickey (ssh-ed25519 SHA256:...)"
}

func (e *AuthError) Error() string {
	server := e.Addr
	if e.JumpHost {
		server = "jump host " + e.Addr
	}
	return fmt.Sprintf("authentication refused: %s did not accept user %q with %s; "+
		"check the user name and that the public key is in that user's ~/.ssh/authorized_keys",
		server, e.User, strings.Join(e.Methods, ", "))
}

// UnknownHostError is a server whose host is not in the known_hosts text.
type UnknownHostError struct {
	Addr           string // host:port
	KeyType        string // offered key type, e.g. ssh-ed25519
	Fingerprint    string // offered key, SHA256:...
	KnownHostsLine string // a line that would pin the offered key
}

func (e *UnknownHostError) Error() string {
	return fmt.Sprintf("unknown host key: %s is not in known_hosts; it offered %s key %s. "+
		"If that is the server's key (check with `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on the server), "+
		"add this line to known_hosts:\n%s", e.Addr, e.KeyType, e.Fingerprint, e.KnownHostsLine)
}

// HostKeyMismatchError is a server whose key is not the pinned one.
type HostKeyMismatchError struct {
	Addr     string
	KeyType  string   // offered key type; empty when no pinned type could be negotiated
	Offered  string   // offered key, SHA256:...; empty when no pinned type could be negotiated
	Expected []string // pinned keys, SHA256:...
	Detail   string   // set when there is no Offered key
}

func (e *HostKeyMismatchError) Error() string {
	got := fmt.Sprintf("the server offered %s key %s", e.KeyType, e.Offered)
	if e.Offered == "" {
		got = e.Detail
	}
	return fmt.Sprintf("host key mismatch for %s: %s, expected %s. "+
		"Either the server's key changed or the connection is being intercepted; "+
		"if the server has several host keys, pin the one of the type it offers",
		e.Addr, got, strings.Join(e.Expected, " or "))
}

// ConnectError is a failure to reach the SSH server at all.
type ConnectError struct {
	Addr     string // host:port
	Via      string // jump host Addr was reached through, if any
	JumpHost bool   // Addr is the jump host itself
	Kind     error  // ErrConnectTimeout, ErrConnectRefused or nil
	Err      error
}

func (e *ConnectError) Error() string {
	s := "connect to " + e.Addr
	if e.JumpHost {
		s = "connect to jump host " + e.Addr
	}
	if e.Via != "" {
		s += " via jump host " + e.Via
	}
	switch e.Kind {
	case ErrConnectRefused:
		return s + ": connection refused (is sshd running and is the port right?)"
	case ErrConnectTimeout:
		return s + ": timed out (wrong host or port, or a firewall dropping packets?): " + e.Err.Error()
	}
	return s + ": " + e.Err.Error()
}

func (e *ConnectError) Unwrap() []error {
	if e.Kind == nil {
		return []error{e.Err}
	}
	return []error{e.Kind, e.Err}
}

// RetriesError is the last failure of a Dial that tried more than once.
type RetriesError struct {
	Attempts int
	Err      error
}

func (e *RetriesError) Error() string {
	return fmt.Sprintf("%v (gave up after %d attempts)", e.Err, e.Attempts)
}

func (e *RetriesError) Unwrap() error { return e.Err }
