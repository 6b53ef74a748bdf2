// Package sshtest starts real OpenSSH servers on 127.0.0.1 for integration
// tests: throwaway host and client keys, a non-root login user, one sshd per
// Start on its own port, everything killed in t.Cleanup.
package sshtest

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

func (s *Server) setUser(name string) error {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return err
		}
		if name != "" && name != u.Username {
			return fmt.Errorf("sshtest: user %q needs root (sshd can only log in its own user otherwise)", name)
		}
		return s.fillUser(u)
	}
	if name == "" {
		name = "adtest"
	}
	u, err := ensureUser(name)
	if err != nil {
		return err
	}
	return s.fillUser(u)
}

func (s *Server) fillUser(u *user.User) error {
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("sshtest: user %s: %w", u.Username, err)
	}
	s.User, s.Home, s.uid, s.gid = u.Username, u.HomeDir, uid, gid
	return nil
}

var userMu sync.Mutex

// ensureUser creates the login user once. Test binaries of several packages
// run at the same time, so an flock serializes useradd across processes.
func ensureUser(name string) (*user.User, error) {
	userMu.Lock()
	defer userMu.Unlock()
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "atomic-deploy-sshtest-user.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	if _, err := user.Lookup(name); err != nil {
		if out, err := exec.Command("useradd", "-m", "-s", "/bin/bash", name).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("useradd %s: %v: %s", name, err, out)
		}
	}
	// A new account is locked ("!"), and sshd refuses locked accounts even
	// for key logins; "*" means no password but not locked.
	if out, err := exec.Command("usermod", "-p", "*", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("usermod %s: %v: %s", name, err, out)
	}
	return user.Lookup(name)
}

func (s *Server) writeKeys(opts Options) error {
	types := append([]KeyType{cmpOr(opts.HostKeyType, ED25519)}, opts.ExtraHostKeyTypes...)
	for i, typ := range types {
		priv, err := generateKey(typ)
		if err != nil {
			return err
		}
		block, err := ssh.MarshalPrivateKey(priv, "sshtest host key")
		if err != nil {
			return err
		}
		if err := os.WriteFile(s.hostKeyPath(i), pem.EncodeToMemory(block), 0o600); err != nil {
			return err
		}
		signer, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			return err
		}
		s.HostKeys = append(s.HostKeys, signer.PublicKey())
	}
	s.HostPublicKey = s.HostKeys[0]
	s.HostFingerprint = ssh.FingerprintSHA256(s.HostPublicKey)

	if opts.ClientKeyPEM != "" {
		key, err := ssh.ParseRawPrivateKey([]byte(opts.ClientKeyPEM))
		if err != nil {
			return fmt.Errorf("sshtest: Options.ClientKeyPEM: %w", err)
		}
		s.clientKey = key
	} else {
		key, err := generateKey(ED25519)
		if err != nil {
			return err
		}
		s.clientKey = key
	}
	block, err := ssh.MarshalPrivateKey(s.clientKey, "sshtest client key")
	if err != nil {
		return err
	}
	s.ClientKeyPEM = string(pem.EncodeToMemory(block))
	if s.ClientSigner, err = ssh.NewSignerFromKey(s.clientKey); err != nil {
		return err
	}
	authKeys := filepath.Join(s.Dir, "authorized_keys."+s.User)
	if err := os.WriteFile(authKeys, ssh.MarshalAuthorizedKey(s.ClientSigner.PublicKey()), 0o600); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		return os.Chown(authKeys, s.uid, s.gid)
	}
	return nil
}

func (s *Server) hostKeyPath(i int) string {
	return filepath.Join(s.Dir, fmt.Sprintf("host_key_%d", i))
}

func generateKey(typ KeyType) (crypto.PrivateKey, error) {
	switch typ {
	case ED25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	case RSA:
		return rsa.GenerateKey(rand.Reader, 2048)
	case ECDSA:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return nil, fmt.Errorf("sshtest: unknown key type %q", typ)
}

func cmpOr(t, def KeyType) KeyType {
	if t == "" {
		return def
	}
	return t
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

// Kill ends sshd and every process it started (connection handlers call
// setsid, so they are found through /proc, not a process group) with
// SIGKILL: to clients the server has died.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil && !s.killed {
		s.killed = true
		killTree(s.cmd.Process.Pid)
	}
}

// Down kills sshd as Kill does and returns once it has exited: its port
// refuses connections until Restart.
func (s *Server) Down() {
	s.Kill()
	<-s.exitedChan()
}

func (s *Server) exitedChan() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exited
}

// Restart kills sshd and every process it started, as Kill does, and
// starts it again on the same port with the same keys and options: to
// clients the server went down and came back. Connections open before are
// gone; new ones are accepted when Restart returns.
func (s *Server) Restart() error {
	s.Kill()
	<-s.exitedChan()
	// The kernel may hold the port briefly; sshd sets SO_REUSEADDR, so
	// this is short.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.log.Write([]byte("sshtest: restarting sshd\n"))
		err := s.launch(s.opts, s.Port)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("restart sshd: %v\n%s", err, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Pid is the process id of the listening sshd.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
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

// Freeze stops sshd and all its processes without closing anything: to
// clients the server hangs (a dead host, a dropped NAT entry). Cleanup or
// Kill still ends it.
func (s *Server) Freeze() {
	stopTree(s.Pid())
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

// EncryptedClientKeyPEM returns the authorized client key encrypted with
// passphrase (OpenSSH format, bcrypt KDF).
func (s *Server) EncryptedClientKeyPEM(t testing.TB, passphrase string) string {
	t.Helper()
	block, err := ssh.MarshalPrivateKeyWithPassphrase(s.clientKey, "sshtest client key", []byte(passphrase))
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}

// MkdirUserTemp makes an empty directory owned by the login user (a deploy
// target), removed in t.Cleanup.
func (s *Server) MkdirUserTemp(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sshtest-deploy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, s.uid, s.gid); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// MkdirUserTemp makes an empty directory owned by the login user that
// servers get by default (Options.User empty), removed in t.Cleanup: a
// deploy target to bind-mount (PrivateMounts) into servers not started yet.
func MkdirUserTemp(t testing.TB) string {
	t.Helper()
	requireSSHD(t)
	var s Server
	if err := s.setUser(""); err != nil {
		t.Fatal(err)
	}
	return s.MkdirUserTemp(t)
}

// GenerateKeyPEM returns a new unencrypted OpenSSH private key that no
// server authorizes (for wrong-key tests) or that Options.ClientKeyPEM shares.
func GenerateKeyPEM(t testing.TB, typ KeyType) string {
	t.Helper()
	key, err := generateKey(typ)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(key, "sshtest key")
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}

// stopTree stops pid and its descendants with SIGSTOP, so none can fork or
// be reparented away meanwhile, and returns them all.
func stopTree(pid int) map[int]bool {
	stopped := map[int]bool{pid: true}
	syscall.Kill(pid, syscall.SIGSTOP)
	for {
		added := false
		for _, p := range descendants(pid) {
			if !stopped[p] {
				stopped[p] = true
				syscall.Kill(p, syscall.SIGSTOP)
				added = true
			}
		}
		if !added {
			return stopped
		}
	}
}

func killTree(pid int) {
	for p := range stopTree(pid) {
		syscall.Kill(p, syscall.SIGKILL)
	}
}

func descendants(root int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may contain spaces and ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}
