package sshx_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/sshtest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/sshx"
)

func dial(t testing.TB, cfg sshx.Config) *sshx.Transport {
	t.Helper()
	tr, err := sshx.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func randomPublicKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return signer.PublicKey()
}

func TestDialHostKeys(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	other := randomPublicKey(t)
	otherFP := ssh.FingerprintSHA256(other)
	hashed := xknownhosts.Line([]string{xknownhosts.HashHostname(knownhosts.Normalize(s.Addr))}, s.HostPublicKey)

	tests := []struct {
		name   string
		modify func(*sshx.Config)
		check  func(*testing.T, error) // nil: must connect
	}{
		{"known_hosts", func(c *sshx.Config) {}, nil},
		{"hashed known_hosts", func(c *sshx.Config) { c.KnownHosts = hashed }, nil},
		{"known_hosts among other hosts", func(c *sshx.Config) {
			c.KnownHosts = knownhosts.Line([]string{"web1"}, other) + "\n" + s.KnownHostsLine
		}, nil},
		{"fingerprint", func(c *sshx.Config) { c.KnownHosts = ""; c.Fingerprints = []string{s.HostFingerprint} }, nil},
		{"one of several fingerprints", func(c *sshx.Config) {
			c.KnownHosts = ""
			c.Fingerprints = []string{otherFP, s.HostFingerprint}
		}, nil},
		{"insecure", func(c *sshx.Config) { c.KnownHosts = ""; c.InsecureIgnoreHostKey = true }, nil},
		{"insecure does not disable a given pin", func(c *sshx.Config) {
			c.KnownHosts = ""
			c.Fingerprints = []string{otherFP}
			c.InsecureIgnoreHostKey = true
		}, wantMismatch(s.HostFingerprint, otherFP)},
		{"unknown host", func(c *sshx.Config) {
			c.KnownHosts = knownhosts.Line([]string{"[127.0.0.1]:1"}, s.HostPublicKey)
		}, func(t *testing.T, err error) {
			var unknown *sshx.UnknownHostError
			if !errors.As(err, &unknown) {
				t.Fatalf("error %T %v, want *UnknownHostError", err, err)
			}
			if unknown.Fingerprint != s.HostFingerprint || unknown.KnownHostsLine != s.KnownHostsLine {
				t.Errorf("got %q / %q, want %q / %q", unknown.Fingerprint, unknown.KnownHostsLine, s.HostFingerprint, s.KnownHostsLine)
			}
			for _, want := range []string{s.HostFingerprint, s.KnownHostsLine} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message lacks %q: %v", want, err)
				}
			}
		}},
		{"known_hosts mismatch", func(c *sshx.Config) {
			c.KnownHosts = knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, other)
		}, wantMismatch(s.HostFingerprint, otherFP)},
		{"fingerprint mismatch", func(c *sshx.Config) {
			c.KnownHosts = ""
			c.Fingerprints = []string{otherFP}
		}, wantMismatch(s.HostFingerprint, otherFP)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := s.Config()
			tt.modify(&cfg)
			tr, err := sshx.Dial(context.Background(), cfg)
			if tt.check == nil {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer tr.Close()
				if got, want := tr.String(), s.User+"@"+s.Addr; got != want {
					t.Errorf("String() = %q, want %q", got, want)
				}
				if _, err := tr.Lstat(context.Background(), "/"); err != nil {
					t.Errorf("Lstat after connecting: %v", err)
				}
				return
			}
			if err == nil {
				tr.Close()
				t.Fatal("Dial succeeded, want an error")
			}
			tt.check(t, err)
		})
	}
}

func wantMismatch(offered, expected string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		var mismatch *sshx.HostKeyMismatchError
		if !errors.As(err, &mismatch) {
			t.Fatalf("error %T %v, want *HostKeyMismatchError", err, err)
		}
		if mismatch.Offered != offered {
			t.Errorf("Offered = %q, want %q", mismatch.Offered, offered)
		}
		for _, want := range []string{offered, expected} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message lacks %q: %v", want, err)
			}
		}
	}
}

// The server has several host keys and the client's default preference
// would pick one that is not pinned; HostKeyAlgorithms from known_hosts must
// make it negotiate the pinned one.
func TestDialNegotiatesPinnedKeyType(t *testing.T) {
	tests := []struct {
		pinned sshtest.KeyType
		extra  []sshtest.KeyType
	}{
		{sshtest.RSA, []sshtest.KeyType{sshtest.ECDSA, sshtest.ED25519}},
		{sshtest.ED25519, []sshtest.KeyType{sshtest.ECDSA, sshtest.RSA}},
		{sshtest.ECDSA, []sshtest.KeyType{sshtest.RSA, sshtest.ED25519}},
	}
	for _, tt := range tests {
		t.Run(string(tt.pinned), func(t *testing.T) {
			s := sshtest.Start(t, sshtest.Options{HostKeyType: tt.pinned, ExtraHostKeyTypes: tt.extra})
			if tt.pinned != sshtest.ECDSA {
				// Check that the test means something: left to itself, the
				// client negotiates another key type.
				var offered ssh.PublicKey
				conf := &ssh.ClientConfig{User: s.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(s.ClientSigner)},
					HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error { offered = key; return nil }}
				c, err := ssh.Dial("tcp", s.Addr, conf)
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
				if offered.Type() == s.HostPublicKey.Type() {
					t.Fatalf("default negotiation already picks %s", offered.Type())
				}
			}
			tr := dial(t, s.Config())
			if _, err := tr.Lstat(context.Background(), "/"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDialCredentials(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	encrypted := s.EncryptedClientKeyPEM(t, passphrase)
	wrongKey := sshtest.GenerateKeyPEM(t, sshtest.ED25519)
	tests := []struct {
		name       string
		key, pass  string
		want       error
		wantAuth   bool
		wantInText []string
	}{
		{"encrypted key with passphrase", encrypted, passphrase, nil, false, nil},
		{"encrypted key without passphrase", encrypted, "", sshx.ErrKeyPassphraseMissing, false, []string{"passphrase"}},
		{"encrypted key, wrong passphrase", encrypted, "not it", sshx.ErrKeyPassphraseWrong, false, []string{"passphrase"}},
		{"garbage key", "this is not a key", "", sshx.ErrKeyNotPEM, false, nil},
		{"truncated key", encrypted[:len(encrypted)/2], passphrase, sshx.ErrKeyTruncated, false, nil},
		{"key not authorized", wrongKey, "", nil, true, []string{s.User, "publickey", s.Addr}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := s.Config()
			cfg.PrivateKey, cfg.Passphrase = tt.key, tt.pass
			tr, err := sshx.Dial(context.Background(), cfg)
			if tt.want == nil && !tt.wantAuth {
				if err != nil {
					t.Fatal(err)
				}
				tr.Close()
				return
			}
			if err == nil {
				tr.Close()
				t.Fatal("Dial succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			var authErr *sshx.AuthError
			if tt.wantAuth != errors.As(err, &authErr) {
				t.Fatalf("error %T %v: AuthError=%v, want %v", err, err, !tt.wantAuth, tt.wantAuth)
			}
			for _, want := range tt.wantInText {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message lacks %q: %v", want, err)
				}
			}
			assertNoSecret(t, err.Error(), tt.key, tt.pass)
		})
	}
}

// Without a pin nothing may be sent to the server: not even a TCP connect.
func TestDialNoPinRefusedBeforeConnecting(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	cfg := sshx.Config{Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port, User: "adtest",
		PrivateKey: sshtest.GenerateKeyPEM(t, sshtest.ED25519)}
	_, err = sshx.Dial(context.Background(), cfg)
	if !errors.Is(err, sshx.ErrNoHostKeyPin) {
		t.Fatalf("error %v, want ErrNoHostKeyPin", err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := accepted.Load(); n != 0 {
		t.Fatalf("%d connections were made", n)
	}
}

func TestDialConnectErrors(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})

	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := l.Addr().(*net.TCPAddr).Port
	l.Close()

	// A listener that accepts and never speaks SSH.
	silent, _ := testutil.SilentListener(t)
	_, port, _ := net.SplitHostPort(silent)
	silentPort, _ := strconv.Atoi(port)

	t.Run("refused", func(t *testing.T) {
		cfg := s.Config()
		cfg.Port = closedPort
		_, err := sshx.Dial(context.Background(), cfg)
		var ce *sshx.ConnectError
		if !errors.As(err, &ce) || !errors.Is(err, sshx.ErrConnectRefused) {
			t.Fatalf("error %T %v, want ConnectError refused", err, err)
		}
		if want := "127.0.0.1:" + strconv.Itoa(closedPort); !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	})
	t.Run("handshake timeout", func(t *testing.T) {
		cfg := s.Config()
		cfg.Port = silentPort
		cfg.ConnectTimeout = 300 * time.Millisecond
		start := time.Now()
		_, err := sshx.Dial(context.Background(), cfg)
		if !errors.Is(err, sshx.ErrConnectTimeout) {
			t.Fatalf("error %v, want ErrConnectTimeout", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("took %v", d)
		}
	})
	t.Run("context cancelled", func(t *testing.T) {
		cfg := s.Config()
		cfg.Port = silentPort
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		_, err := sshx.Dial(ctx, cfg)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
	})
}

// The link's busy time is not told for a socket on loopback: it may be a
// relay's (ssh -L), which takes every byte at once whatever the link
// beyond it does. (Through a jump host: TestDialJumpHost.)
func TestLinkBusyNotOnLoopback(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Options{})
	if _, ok := dial(t, srv.Config()).LinkBusy(); ok {
		t.Fatal("LinkBusy told a busy time for a connection to 127.0.0.1")
	}
}

func TestDialJumpHost(t *testing.T) {
	jump := sshtest.Start(t, sshtest.Options{})
	target := sshtest.Start(t, sshtest.Options{ClientKeyPEM: jump.ClientKeyPEM})
	cfg := target.Config()
	cfg.KnownHosts = jump.KnownHostsLine + "\n" + target.KnownHostsLine + "\n"
	cfg.JumpHost = jump.User + "@" + jump.Addr

	t.Run("connects through the jump host", func(t *testing.T) {
		tr := dial(t, cfg)
		ctx := context.Background()
		if !tr.CanExec() {
			t.Fatal("CanExec false through the jump host")
		}
		var out strings.Builder
		if err := tr.Exec(ctx, testCommand("echo $SSH_CONNECTION"), nil, &out, nil); err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(out.String()); len(f) != 4 || f[3] != strconv.Itoa(target.Port) {
			t.Fatalf("SSH_CONNECTION %q is not a connection to the target", out.String())
		}
	})
	t.Run("the link's busy time is not told: the socket is the jump host's", func(t *testing.T) {
		if _, ok := dial(t, cfg).LinkBusy(); ok {
			t.Fatal("LinkBusy told a busy time through a jump host")
		}
	})
	t.Run("jump host key is checked too", func(t *testing.T) {
		c := cfg
		c.KnownHosts = target.KnownHostsLine
		_, err := sshx.Dial(context.Background(), c)
		var unknown *sshx.UnknownHostError
		if !errors.As(err, &unknown) || unknown.Addr != jump.Addr {
			t.Fatalf("error %v, want UnknownHostError for the jump host %s", err, jump.Addr)
		}
	})
	t.Run("each hop is checked against its own fingerprints", func(t *testing.T) {
		c := cfg
		c.KnownHosts = ""
		c.Fingerprints, c.JumpHostFingerprints = []string{target.HostFingerprint}, []string{jump.HostFingerprint}
		dial(t, c).Close()
	})
	t.Run("a jump host answering for the target with its own key is refused", func(t *testing.T) {
		// The bastion forwards the target's connection to its own sshd:
		// what a compromised bastion does to stand in for the target.
		c := cfg
		c.KnownHosts = ""
		c.Host, c.Port = jump.Host, jump.Port
		c.Fingerprints, c.JumpHostFingerprints = []string{target.HostFingerprint}, []string{jump.HostFingerprint}
		_, err := sshx.Dial(context.Background(), c)
		wantMismatch(jump.HostFingerprint, target.HostFingerprint)(t, err)
		var mismatch *sshx.HostKeyMismatchError
		if errors.As(err, &mismatch) && (mismatch.Addr != jump.Addr || slices.Contains(mismatch.Expected, jump.HostFingerprint)) {
			t.Errorf("mismatch %+v: the target's pins are only its own", mismatch)
		}
	})
	t.Run("the jump host's fingerprint pinned for the target is refused", func(t *testing.T) {
		c := cfg
		c.KnownHosts = ""
		c.Fingerprints, c.JumpHostFingerprints = []string{jump.HostFingerprint}, []string{jump.HostFingerprint}
		_, err := sshx.Dial(context.Background(), c)
		wantMismatch(target.HostFingerprint, jump.HostFingerprint)(t, err)
	})
	t.Run("the target's fingerprint does not let the jump host in", func(t *testing.T) {
		c := cfg
		c.KnownHosts = ""
		c.Fingerprints, c.JumpHostFingerprints = []string{target.HostFingerprint}, []string{target.HostFingerprint}
		_, err := sshx.Dial(context.Background(), c)
		wantMismatch(jump.HostFingerprint, target.HostFingerprint)(t, err)
	})
	t.Run("a jump host without a pin of its own is refused before connecting", func(t *testing.T) {
		c := cfg
		c.KnownHosts = ""
		c.Fingerprints, c.JumpHostFingerprints = []string{target.HostFingerprint, jump.HostFingerprint}, nil
		c.InsecureIgnoreHostKey = true // skips nothing once a pin is given
		_, err := sshx.Dial(context.Background(), c)
		if !errors.Is(err, sshx.ErrNoHostKeyPin) || !strings.Contains(err.Error(), "jump host "+jump.Addr) {
			t.Fatalf("error %v, want ErrNoHostKeyPin for the jump host %s", err, jump.Addr)
		}
	})
	t.Run("jump host refused", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := l.Addr().String()
		l.Close()
		c := cfg
		c.JumpHost = addr
		_, err := sshx.Dial(context.Background(), c)
		var ce *sshx.ConnectError
		if !errors.As(err, &ce) || !ce.JumpHost || ce.Addr != addr || !strings.Contains(err.Error(), "jump host "+addr) {
			t.Fatalf("error %v, want a ConnectError for jump host %s", err, addr)
		}
	})
	t.Run("target refused behind the jump host", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		c := cfg
		c.Port = port
		_, err := sshx.Dial(context.Background(), c)
		var ce *sshx.ConnectError
		if !errors.As(err, &ce) || ce.Via != jump.Addr || !errors.Is(err, sshx.ErrConnectRefused) {
			t.Fatalf("error %v, want a refused ConnectError via %s", err, jump.Addr)
		}
	})
	t.Run("traffic goes through the jump host", func(t *testing.T) {
		tr := dial(t, cfg)
		ctx := context.Background()
		jump.Kill()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := tr.Lstat(ctx, "/")
			if err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the target connection survived the jump host's death")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// A server that dies makes operations fail instead of hanging.
func TestServerDies(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	tr := dial(t, s.Config())
	ctx := context.Background()
	dir := s.MkdirUserTemp(t)
	errc := make(chan error, 1)
	go func() { errc <- tr.Exec(ctx, testCommand("sleep 60"), nil, nil, nil) }()
	time.Sleep(200 * time.Millisecond)
	s.Kill()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Exec succeeded after the server died")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Exec hangs after the server died")
	}
	if _, err := tr.Create(ctx, dir+"/f", 0o644); err == nil {
		t.Fatal("Create succeeded after the server died")
	}
	if err := tr.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// A server that stops answering without closing the connection makes
// operations fail once the keepalive goes unanswered, instead of hanging.
func TestServerHangs(t *testing.T) {
	defer sshx.SetKeepalive(100*time.Millisecond, 500*time.Millisecond)()
	s := sshtest.Start(t, sshtest.Options{})
	tr := dial(t, s.Config())
	if err := tr.Ready(context.Background()); err != nil { // every server process exists, to be frozen
		t.Fatal(err)
	}
	s.Freeze()
	errc := make(chan error, 1)
	go func() {
		_, err := tr.Lstat(context.Background(), "/")
		errc <- err
	}()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Lstat succeeded on a frozen server")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Lstat hangs on a frozen server")
	}
}
