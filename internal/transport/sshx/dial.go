package sshx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// maxSessions bounds concurrent exec sessions: OpenSSH allows 10 sessions
// per connection by default (MaxSessions) and SFTP holds one of them.
const maxSessions = 8

// sessionRetryFor bounds retries of a session open refused by sshd.
const sessionRetryFor = 5 * time.Second

// Keepalive: a server that stops answering (dead host, dropped NAT entry)
// makes every pending operation fail instead of hanging the deploy forever.
// Variables so that tests can shorten them.
var (
	keepaliveInterval = 15 * time.Second
	keepaliveTimeout  = 45 * time.Second
)

// Transport is a transport.Transport over one SSH connection. It is safe for
// concurrent use.
type Transport struct {
	name   string
	client *ssh.Client
	jump   *ssh.Client // nil without a jump host
	sftp   *sftp.Client
	link   net.Conn // to the target: TCP, or a channel of the jump host's

	sem      chan struct{} // SFTP requests in flight
	sessions chan struct{} // exec sessions open

	// Set by start, in the background after the handshake; read only
	// after ready is closed (Ready, do).
	ready       chan struct{}
	startErr    error
	posixRename bool
	hardLink    bool
	copyData    bool // SFTP's copy-data extension

	copyMu   sync.Mutex
	copyChan *sftpChannel // for copy-data, opened on first need

	// Set by the shell probe, run on first need until it gets an answer;
	// read only after probed is closed (hasShell).
	probeMu      sync.Mutex
	probed       chan struct{}
	probeTimeout time.Duration
	canExec      bool
	gnuFind      bool // find -printf works, so Scan can use one command
	gnuCp        bool // cp takes --reflink=auto --preserve=mode, so Copy can use it

	warmMu sync.Mutex
	warm   *warmSession // started by Warm, taken by the next Exec

	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

var _ transport.Transport = (*Transport)(nil)

// Dial connects, authenticates and checks the host key. It returns once
// the SSH connection is up: SFTP starts in the background (its round trips
// overlap whatever the caller does first, typically an Exec), every method
// that needs it waits, and Ready reports how it went. Whether the server
// runs commands is probed when first needed (CanExec, and the methods that
// fall back to commands). ConnectTimeout bounds each attempt and the probe.
//
// A failure that may pass by itself (see Retryable) is tried again up to
// ConnectRetries times, after waits that grow exponentially with jitter
// (retryBackOff); any other failure is returned at once.
func Dial(ctx context.Context, cfg Config) (*Transport, error) {
	signers, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	keys, jumpKeys, err := newHostKeys(cfg)
	if err != nil {
		return nil, err
	}
	attempts := 0
	t, err := backoff.Retry(ctx, func() (*Transport, error) {
		attempts++
		t, err := dialOnce(ctx, cfg, signers, keys, jumpKeys)
		if err != nil && !Retryable(err) {
			return nil, backoff.Permanent(err)
		}
		return t, err
	}, backoff.WithBackOff(retryBackOff()), backoff.WithMaxTries(uint(cfg.ConnectRetries)+1), backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, wait time.Duration) {
			if cfg.OnRetry != nil {
				cfg.OnRetry(err, attempts, wait)
			}
		}))
	var permanent *backoff.PermanentError
	if errors.As(err, &permanent) {
		err = permanent.Err
	}
	if err != nil && attempts > 1 {
		err = &RetriesError{Attempts: attempts, Err: err}
	}
	return t, err
}

// retryBackOff is the wait between connection attempts: about 1 s, 2 s,
// 4 s, ... up to 10 s, each at a random point within ±50 % so that the
// hosts of a fleet that failed together do not all come back at once.
// A variable so that tests can shorten it.
var retryBackOff = func() backoff.BackOff {
	return &backoff.ExponentialBackOff{
		InitialInterval:     time.Second,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         10 * time.Second,
	}
}

// Retryable reports whether a failed Dial may succeed if tried again: the
// server refused the connection or did not answer in time, or the
// connection was reset or closed before the handshake finished (sshd
// restarting, its MaxStartups reached), or a name server failed for now.
// A host key that does not match, an unknown host, refused credentials,
// a bad key or a name that does not exist fail the same way every time.
func Retryable(err error) bool {
	var ce *ConnectError
	var dns *net.DNSError
	switch {
	case err == nil || errors.Is(err, context.Canceled):
		return false
	case errors.As(err, &dns):
		return !dns.IsNotFound && (dns.IsTemporary || dns.IsTimeout)
	case !errors.As(err, &ce):
		return false
	case errors.Is(err, ErrConnectRefused), errors.Is(err, ErrConnectTimeout),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	return false
}

// dialOnce is one attempt of Dial.
func dialOnce(ctx context.Context, cfg Config, signers []ssh.Signer, keys, jumpKeys *hostKeys) (*Transport, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.connectTimeout())
	started := false
	defer func() {
		if !started {
			cancel()
		}
	}()

	a := auth{signers: signers, password: cfg.Password}
	target := hop{addr: cfg.addr(), user: cfg.User}
	var (
		jump *ssh.Client
		conn net.Conn
		err  error
	)
	if cfg.JumpHost != "" {
		user, host, port, _ := parseJumpHost(cfg.JumpHost, cfg.User) // checked by cfg.validate
		j := hop{addr: net.JoinHostPort(host, strconv.Itoa(port)), user: user, jump: true}
		target.via = j.addr
		jc, err := dialTCP(ctx, j)
		if err != nil {
			return nil, err
		}
		if jump, err = handshake(ctx, jc, j, a, jumpKeys); err != nil {
			return nil, err
		}
		if conn, err = jump.DialContext(ctx, "tcp", target.addr); err != nil {
			jump.Close()
			return nil, target.connectErr(ctx, err)
		}
	} else if conn, err = dialTCP(ctx, target); err != nil {
		return nil, err
	}
	client, err := handshake(ctx, conn, target, a, keys)
	if err != nil {
		if jump != nil {
			jump.Close()
		}
		return nil, err
	}

	t := &Transport{
		name:     cfg.addrUser(),
		client:   client,
		jump:     jump,
		link:     conn,
		sem:      make(chan struct{}, cfg.concurrency()),
		sessions: make(chan struct{}, maxSessions),
		ready:    make(chan struct{}),
		probed:   make(chan struct{}),
		done:     make(chan struct{}),

		probeTimeout: cfg.connectTimeout(),
	}
	started = true
	go func() {
		defer cancel()
		t.startErr = t.start(ctx, target)
		close(t.ready)
	}()
	go t.keepalive(keepaliveInterval, keepaliveTimeout)
	return t, nil
}

// Ready waits until SFTP has started and returns what stopped it.
func (t *Transport) Ready(ctx context.Context) error {
	select {
	case <-t.ready:
		return t.startErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// start opens SFTP.
func (t *Transport) start(ctx context.Context, target hop) error {
	stop := context.AfterFunc(ctx, func() { t.client.Close() })
	c, err := sftp.NewClient(t.client,
		sftp.MaxConcurrentRequestsPerFile(64),
		sftp.UseConcurrentWrites(true),
	)
	stop()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return target.connectErr(ctx, fmt.Errorf("start SFTP (is the sftp subsystem enabled in sshd_config?): %w", err))
	}
	t.sftp = c
	_, t.posixRename = c.HasExtension("posix-rename@openssh.com")
	_, t.hardLink = c.HasExtension("hardlink@openssh.com")
	version, _ := c.HasExtension("copy-data")
	t.copyData = version == "1"
	return nil
}

func (t *Transport) keepalive(interval, timeout time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return
		case <-tick.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := t.client.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		select {
		case err := <-reply:
			if err != nil {
				return // connection already gone
			}
		case <-time.After(timeout):
			t.client.Close()
			return
		case <-t.done:
			return
		}
	}
}

// String is "user@host:port".
func (t *Transport) String() string { return t.name }

// CanExec reports whether the server runs shell commands, probing it the
// first time (ConnectTimeout bounds the probe).
func (t *Transport) CanExec() bool { return t.hasShell() }

// knownShell and knownNoShell report what the probe found, without
// running it.
func (t *Transport) knownShell() bool {
	select {
	case <-t.probed:
		return t.canExec
	default:
		return false
	}
}

func (t *Transport) knownNoShell() bool {
	select {
	case <-t.probed:
		return !t.canExec
	default:
		return false
	}
}

func (t *Transport) closed() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// hasShell probes the server and reports its answer. A ForceCommand
// (internal-sftp, a restricted shell) runs instead of the probe, so only a
// shell that really ran it prints "ok". Only an answer is kept: a probe
// that could not run (no session, a timeout) says false this time and is
// tried again on the next call.
func (t *Transport) hasShell() bool {
	t.probeMu.Lock()
	defer t.probeMu.Unlock()
	select {
	case <-t.probed:
		return t.canExec
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.probeTimeout)
	defer cancel()
	go func() {
		select {
		case <-t.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var out bytes.Buffer
	err := t.exec(ctx, command("probe", probeScript), nil, transport.LimitWriter(&out, 4096), nil)
	var exit *transport.ExitError
	if err != nil && !errors.As(err, &exit) {
		return false
	}
	for _, line := range strings.Split(out.String(), "\n") {
		switch strings.TrimSpace(line) {
		case "ok":
			t.canExec = err == nil
		case "gnu-find":
			t.gnuFind = true
		case "gnu-cp":
			t.gnuCp = true
		}
	}
	close(t.probed)
	return t.canExec
}

// Close ends SFTP and the SSH connection(s).
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		close(t.done)
		// The connection goes first: closing SFTP on a live connection
		// waits a round trip for the server's answer, and nothing is left
		// to flush (every operation has returned). It also ends a start
		// still in progress.
		errs := []error{ignoreClosed(t.client.Close())}
		<-t.ready
		if t.sftp != nil {
			t.sftp.Close()
		}
		if t.jump != nil {
			errs = append(errs, ignoreClosed(t.jump.Close()))
		}
		t.closeErr = errors.Join(errs...)
	})
	return t.closeErr
}

// ignoreClosed drops the errors of closing a connection that is already
// gone (the server died, say): there is nothing left to release.
func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "use of closed network connection") {
		return nil
	}
	return err
}

// hop is one SSH server on the way: the jump host or the target.
type hop struct {
	addr, user string
	via        string // jump host the target is reached through
	jump       bool   // this is the jump host
}

func (h hop) connectErr(ctx context.Context, err error) *ConnectError {
	return &ConnectError{Addr: h.addr, Via: h.via, JumpHost: h.jump, Kind: classifyDialErr(ctx, err), Err: err}
}

func dialTCP(ctx context.Context, h hop) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", h.addr)
	if err != nil {
		return nil, h.connectErr(ctx, err)
	}
	return quickACK(conn), nil
}

func classifyDialErr(ctx context.Context, err error) error {
	var open *ssh.OpenChannelError
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ErrConnectRefused
	case errors.As(err, &open) && strings.Contains(strings.ToLower(open.Message), "refused"):
		return ErrConnectRefused // reported by the jump host
	case errors.Is(err, context.DeadlineExceeded), errors.Is(ctx.Err(), context.DeadlineExceeded),
		errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return ErrConnectTimeout
	}
	return nil
}

type auth struct {
	signers  []ssh.Signer
	password string
}

func (a auth) methods() []ssh.AuthMethod {
	var m []ssh.AuthMethod
	if len(a.signers) > 0 {
		m = append(m, ssh.PublicKeys(a.signers...))
	}
	if a.password != "" {
		m = append(m, ssh.Password(a.password),
			// PAM setups ask for the password through keyboard-interactive.
			ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range answers {
					answers[i] = a.password
				}
				return answers, nil
			}))
	}
	return m
}

// handshake runs the SSH handshake on conn; ctx expiring closes conn, which
// is how the deadline reaches a handshake that has no context of its own.
func handshake(ctx context.Context, conn net.Conn, h hop, a auth, keys *hostKeys) (*ssh.Client, error) {
	var hostKeyErr error
	conf := &ssh.ClientConfig{
		User:              h.user,
		Auth:              a.methods(),
		HostKeyCallback:   keys.callback(&hostKeyErr),
		HostKeyAlgorithms: keys.algorithms(h.addr),
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, h.addr, conf)
	if !stop() {
		if err == nil {
			c.Close()
		}
		err = ctx.Err()
	}
	switch {
	case err == nil:
		return ssh.NewClient(c, chans, reqs), nil
	case hostKeyErr != nil:
		return nil, hostKeyErr
	case ctx.Err() != nil:
		return nil, h.connectErr(ctx, fmt.Errorf("SSH handshake not finished: %w", err))
	case strings.Contains(err.Error(), "unable to authenticate"):
		return nil, &AuthError{User: h.user, Addr: h.addr, JumpHost: h.jump, Methods: offeredMethods(a.signers, a.password != "")}
	}
	if mismatch := keys.noCommonAlgorithm(h.addr, err); mismatch != nil {
		return nil, mismatch
	}
	return nil, h.connectErr(ctx, err)
}
