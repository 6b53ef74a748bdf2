package sshx_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skeema/knownhosts"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/sshtest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/sshx"
)

func TestRetryable(t *testing.T) {
	connect := func(kind, err error) error { return &sshx.ConnectError{Addr: "web1:22", Kind: kind, Err: err} }
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"refused", connect(sshx.ErrConnectRefused, syscall.ECONNREFUSED), true},
		{"timed out", connect(sshx.ErrConnectTimeout, context.DeadlineExceeded), true},
		{"reset during the handshake", connect(nil, fmt.Errorf("ssh: handshake failed: %w", syscall.ECONNRESET)), true},
		{"closed during the handshake (MaxStartups)", connect(nil, fmt.Errorf("ssh: handshake failed: %w", io.EOF)), true},
		{"name server timed out", &net.DNSError{Err: "i/o timeout", Name: "web1", IsTimeout: true}, true},
		{"no such host", &net.DNSError{Err: "no such host", Name: "web1", IsNotFound: true}, false},
		{"host key mismatch", &sshx.HostKeyMismatchError{Addr: "web1:22"}, false},
		{"unknown host", &sshx.UnknownHostError{Addr: "web1:22"}, false},
		{"authentication refused", &sshx.AuthError{Addr: "web1:22"}, false},
		{"bad key", &sshx.KeyError{Kind: sshx.ErrKeyTruncated}, false},
		{"cancelled", connect(nil, context.Canceled), false},
		{"other connect failure", connect(nil, errors.New("ssh: no common algorithm")), false},
	}
	for _, tt := range tests {
		if got := sshx.Retryable(tt.err); got != tt.want {
			t.Errorf("%s: Retryable(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

type retry struct {
	err     error
	attempt int
	wait    time.Duration
}

func recordRetries(cfg *sshx.Config) func() []retry {
	var mu sync.Mutex
	var got []retry
	cfg.OnRetry = func(err error, attempt int, wait time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, retry{err, attempt, wait})
	}
	return func() []retry {
		mu.Lock()
		defer mu.Unlock()
		return append([]retry(nil), got...)
	}
}

// An sshd that starts listening a second after the deploy began (a
// restart, a host booting) is reached with the default waits.
func TestDialRetriesUntilSSHDListens(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	s.Down()
	restarted := make(chan error, 1)
	time.AfterFunc(time.Second, func() { restarted <- s.Restart() })

	cfg := s.Config()
	cfg.ConnectRetries = 3
	retries := recordRetries(&cfg)
	start := time.Now()
	tr, err := sshx.Dial(context.Background(), cfg)
	if rerr := <-restarted; rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatalf("Dial with 3 retries: %v (retries %v)", err, retries())
	}
	defer tr.Close()
	if err := tr.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := retries()
	t.Logf("connected after %v, retries %v", time.Since(start).Round(time.Millisecond), got)
	if len(got) == 0 || !errors.Is(got[0].err, sshx.ErrConnectRefused) || got[0].attempt != 1 {
		t.Fatalf("retries %v, want the first after a refused attempt 1", got)
	}
	// Exponential with ±50 % jitter around 1 s, 2 s, ...
	for i, r := range got {
		base := time.Second << i
		if r.wait < base/2 || r.wait > base*3/2 {
			t.Errorf("wait %d = %v, want within %v ±50%%", i+1, r.wait, base)
		}
	}
}

// Failures that would fail the same way again are not retried: one
// connection reaches sshd, and no retry is announced.
func TestDialDoesNotRetryWhatCannotPass(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	tests := []struct {
		name   string
		modify func(*sshx.Config)
		is     func(error) bool
	}{
		{"host key mismatch", func(c *sshx.Config) {
			c.KnownHosts = knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, randomPublicKey(t))
		}, func(err error) bool { var e *sshx.HostKeyMismatchError; return errors.As(err, &e) }},
		{"unknown host", func(c *sshx.Config) {
			c.KnownHosts = knownhosts.Line([]string{"web1.example.com"}, s.HostPublicKey)
		}, func(err error) bool { var e *sshx.UnknownHostError; return errors.As(err, &e) }},
		{"authentication refused", func(c *sshx.Config) {
			c.PrivateKey = sshtest.GenerateKeyPEM(t, sshtest.ED25519)
		}, func(err error) bool { var e *sshx.AuthError; return errors.As(err, &e) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := s.Config()
			cfg.ConnectRetries = 3
			tt.modify(&cfg)
			retries := recordRetries(&cfg)
			// Each attempt that reached the handshake ends in a "[preauth]"
			// line (sshtest's own readiness check does not).
			before := strings.Count(s.Log(), "[preauth]")
			start := time.Now()
			_, err := sshx.Dial(context.Background(), cfg)
			if err == nil || !tt.is(err) {
				t.Fatalf("Dial: %v", err)
			}
			var re *sshx.RetriesError
			if errors.As(err, &re) || len(retries()) != 0 {
				t.Errorf("retried: %v, retries %v", err, retries())
			}
			// sshd logs the end of the connection a moment later.
			time.Sleep(200 * time.Millisecond)
			if n := strings.Count(s.Log(), "[preauth]") - before; n != 1 {
				t.Errorf("sshd saw %d connections, want 1", n)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

// connect-timeout bounds each attempt against a server that accepts the
// connection and never speaks, and every attempt gets its own.
func TestDialConnectTimeoutEachAttempt(t *testing.T) {
	defer sshx.SetRetryWait(100 * time.Millisecond)()
	s := sshtest.Start(t, sshtest.Options{})
	silent, accepted := testutil.SilentListener(t)
	cfg := s.Config()
	_, port, _ := net.SplitHostPort(silent)
	cfg.Port, _ = strconv.Atoi(port)
	cfg.ConnectTimeout = 300 * time.Millisecond
	cfg.ConnectRetries = 2
	retries := recordRetries(&cfg)
	start := time.Now()
	_, err := sshx.Dial(context.Background(), cfg)
	elapsed := time.Since(start)
	var re *sshx.RetriesError
	if !errors.Is(err, sshx.ErrConnectTimeout) || !errors.As(err, &re) || re.Attempts != 3 {
		t.Fatalf("Dial: %v, want a timeout after 3 attempts", err)
	}
	if !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Errorf("message: %v", err)
	}
	if n := accepted.Load(); n != 3 {
		t.Errorf("%d connections accepted, want 3", n)
	}
	if n := len(retries()); n != 2 {
		t.Errorf("%d retries announced, want 2", n)
	}
	// 3 × 300 ms + 2 × 100 ms, and not much more.
	if elapsed < 1100*time.Millisecond || elapsed > 3*time.Second {
		t.Errorf("took %v, want about 1.1 s", elapsed)
	}
}
