// Package sshtest starts real OpenSSH servers on 127.0.0.1 for integration
// tests: throwaway host and client keys, a non-root login user, one sshd per
// Start on its own port, everything killed in t.Cleanup.
package sshtest

import (
	"bufio"
	"crypto"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/sshx"
)

// SSHDPath is the server binary used.
const SSHDPath = "/usr/sbin/sshd"

// RequireEnv set to 1 turns a missing sshd into a test failure instead of a skip.
const RequireEnv = "ATOMIC_DEPLOY_REQUIRE_SSHD"

// KeyType names a key algorithm for generated keys.
type KeyType string

const (
	ED25519 KeyType = "ed25519"
	RSA     KeyType = "rsa"
	ECDSA   KeyType = "ecdsa"
)

// Options configures one server; the zero value is a shell-capable server
// for user "adtest" with an ed25519 host key.
type Options struct {
	User        string  // login user; default "adtest" (the current user when not root)
	SFTPOnly    bool    // ForceCommand internal-sftp: no shell
	HostKeyType KeyType // the host key exposed as HostPublicKey; default ED25519
	// ExtraHostKeyTypes adds more host keys, so a client that does not limit
	// HostKeyAlgorithms may negotiate one that was not pinned.
	ExtraHostKeyTypes []KeyType
	// ClientKeyPEM is an unencrypted private key to authorize instead of a
	// generated one (one key for a jump host and its target, say).
	ClientKeyPEM string
	// PrivateMounts bind-mounts source directories (values) over paths
	// (keys) in a mount namespace of this sshd only: several servers on one
	// machine then see different trees at the same path, like a fleet.
	PrivateMounts map[string]string
	// TmpfsMounts mounts a fresh tmpfs of the given size ("2m") at each
	// path (keys; the directory must exist), owned by the login user, in
	// this sshd's private mount namespace: a small disk for disk-full tests
	// that leaves no mount behind on the machine. Server.Path shows it to
	// the test. A Restart starts with an empty tmpfs.
	TmpfsMounts map[string]string
	// ExtraConfig is sshd_config text. It is placed before the defaults
	// (sshd uses the first value of a keyword) except that a Match block
	// goes at the end, where sshd requires it.
	ExtraConfig string
}

// Server is a running sshd.
type Server struct {
	Addr string // 127.0.0.1:port
	Host string
	Port int
	User string
	Home string // the user's home directory

	ClientKeyPEM    string // unencrypted OpenSSH private key, authorized for User
	ClientSigner    ssh.Signer
	HostPublicKey   ssh.PublicKey
	HostKeys        []ssh.PublicKey // all host keys, HostPublicKey first
	KnownHostsLine  string          // "[127.0.0.1]:port ssh-ed25519 AAAA..."
	HostFingerprint string          // "SHA256:..."
	Dir             string          // config, keys and pid file

	uid, gid  int
	clientKey crypto.PrivateKey
	opts      Options
	log       *testutil.SyncBuffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	killed bool          // cmd was killed (its pid may be reused since)
}

// Start starts sshd and returns when it accepts connections. Call it from
// the test goroutine; StartMany starts several in parallel.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	requireSSHD(t)
	s, err := start(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// StartMany starts one server per element of opts, in parallel.
func StartMany(t testing.TB, opts ...Options) []*Server {
	t.Helper()
	requireSSHD(t)
	servers := make([]*Server, len(opts))
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i, o := range opts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers[i], errs[i] = start(t, o)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return servers
}

func requireSSHD(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(SSHDPath); err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%s is missing and %s=1: install it with `apt-get install -y openssh-server`", SSHDPath, RequireEnv)
		}
		t.Skipf("%s not installed (set %s=1 to fail instead)", SSHDPath, RequireEnv)
	}
}

// start does the work of Start without t.Fatal, so it can run in any
// goroutine; t is only used for Cleanup and Logf.
func start(t testing.TB, opts Options) (*Server, error) {
	s := &Server{Host: "127.0.0.1", opts: opts, log: &testutil.SyncBuffer{}}
	if err := s.setUser(opts.User); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sshtest-")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// sshd reads authorized keys as the user, who must reach this directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	s.Dir = dir
	if err := s.writeKeys(opts); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return nil, err
		}
	}
	// The port is found free and then bound by sshd; another test may take
	// it in between, so retry with a new port.
	for attempt := 0; ; attempt++ {
		port, err := testutil.FreePort()
		if err == nil {
			err = s.launch(opts, port)
		}
		if err == nil {
			break
		}
		if attempt < 5 && strings.Contains(s.log.String(), "Address already in use") {
			s.log.Reset()
			continue
		}
		return nil, fmt.Errorf("start sshd: %v\n%s", err, s.log.String())
	}
	t.Cleanup(func() {
		s.Kill()
		<-s.exitedChan()
		if t.Failed() {
			t.Logf("sshd %s log:\n%s", s.Addr, s.log.String())
		}
	})
	return s, nil
}

// launch writes the config for port and starts sshd.
func (s *Server) launch(opts Options, port int) error {
	s.Port = port
	s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(port))
	s.KnownHostsLine = knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostPublicKey)

	cfgPath := filepath.Join(s.Dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(s.config(opts)), 0o644); err != nil {
		return err
	}
	cmd := exec.Command(SSHDPath, "-D", "-e", "-f", cfgPath)
	if len(opts.PrivateMounts) > 0 || len(opts.TmpfsMounts) > 0 {
		// unshare and sh exec into sshd, so the pid stays sshd's.
		script := ""
		args := []string{"--mount", "--propagation", "private", "--", "/bin/sh", "-ec", "", "sh"}
		n := 0
		for target, source := range opts.PrivateMounts {
			script += fmt.Sprintf("mount --bind \"$%d\" \"$%d\"\n", n+1, n+2)
			args = append(args, source, target)
			n += 2
		}
		for target, size := range opts.TmpfsMounts {
			script += fmt.Sprintf("mount -t tmpfs -o \"$%d\" tmpfs \"$%d\"\n", n+1, n+2)
			args = append(args, fmt.Sprintf("size=%s,mode=0755,uid=%d,gid=%d", size, s.uid, s.gid), target)
			n += 2
		}
		script += fmt.Sprintf("exec %s -D -e -f \"$%d\"\n", SSHDPath, n+1)
		args[6] = script
		args = append(args, cfgPath)
		cmd = exec.Command("unshare", args...)
	}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	// Connection handlers inherit the log pipe; do not wait on a straggler.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	if err := waitReady(s.Addr, exited); err != nil {
		killTree(cmd.Process.Pid)
		<-exited
		return err
	}
	s.mu.Lock()
	s.cmd, s.exited, s.killed = cmd, exited, false
	s.mu.Unlock()
	return nil
}

func (s *Server) config(opts Options) string {
	var b strings.Builder
	extra, match := opts.ExtraConfig, ""
	if i := matchIndex(extra); i >= 0 {
		extra, match = extra[:i], extra[i:]
	}
	b.WriteString(extra + "\n")
	fmt.Fprintf(&b, "Port %d\nListenAddress %s\n", s.Port, s.Host)
	for i := range s.HostKeys {
		fmt.Fprintf(&b, "HostKey %s\n", s.hostKeyPath(i))
	}
	fmt.Fprintf(&b, "PidFile %s\n", filepath.Join(s.Dir, "sshd.pid"))
	fmt.Fprintf(&b, "AuthorizedKeysFile %s\n", filepath.Join(s.Dir, "authorized_keys.%u"))
	b.WriteString(`PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
LogLevel VERBOSE
`)
	if opts.SFTPOnly {
		b.WriteString("ForceCommand internal-sftp\n")
	}
	b.WriteString(match)
	return b.String()
}

// matchIndex finds the first line starting with the Match keyword.
func matchIndex(cfg string) int {
	off := 0
	for _, line := range strings.SplitAfter(cfg, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.EqualFold(f[0], "Match") {
			return off
		}
		off += len(line)
	}
	return -1
}

// waitReady waits until addr answers with an SSH banner.
func waitReady(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("sshd exited")
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			banner, err := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if err == nil && strings.HasPrefix(banner, "SSH-2.0-") {
				return nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("sshd did not accept connections on %s", addr)
}

// Path returns where the test process finds path p as this server sees it:
// p itself, or p inside the server's private mount namespace (through
// /proc/<pid>/root) when it has PrivateMounts or TmpfsMounts.
func (s *Server) Path(p string) string {
	if len(s.opts.PrivateMounts) == 0 && len(s.opts.TmpfsMounts) == 0 {
		return p
	}
	return fmt.Sprintf("/proc/%d/root%s", s.Pid(), p)
}

// Log returns what sshd has logged so far.
func (s *Server) Log() string { return s.log.String() }

// Config returns a client config for this server, pinned by known_hosts.
func (s *Server) Config() sshx.Config {
	return sshx.Config{
		Host:           s.Host,
		Port:           s.Port,
		User:           s.User,
		PrivateKey:     s.ClientKeyPEM,
		KnownHosts:     s.KnownHostsLine + "\n",
		ConnectTimeout: 10 * time.Second,
	}
}

// ConfigVia returns a client config that reaches this server through a
// forwarder listening on addr ("127.0.0.1:port", a proxy in front of sshd),
// with the host key pinned under addr.
func (s *Server) ConfigVia(t testing.TB, addr string) sshx.Config {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("sshtest: forwarder address %q: %v", addr, err)
	}
	cfg := s.Config()
	cfg.Host = host
	if cfg.Port, err = strconv.Atoi(port); err != nil {
		t.Fatalf("sshtest: forwarder address %q: %v", addr, err)
	}
	cfg.KnownHosts = knownhosts.Line([]string{knownhosts.Normalize(addr)}, s.HostPublicKey) + "\n"
	return cfg
}
