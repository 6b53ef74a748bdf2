// Package webtest starts a real nginx and php-fpm on 127.0.0.1 for
// integration tests: nginx serves <deploy>/current/public and hands PHP to a
// php-fpm pool running as the deploy user, the way a PHP site is run in
// production. Both run in the foreground from configs in a temporary
// directory and are stopped with SIGQUIT (graceful) in t.Cleanup.
package webtest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
)

// Binaries used: nginx, and the php-fpm of the distribution's PHP (8.2 on
// Debian 12, 8.3 on Ubuntu 24.04, each named php-fpm<version>).
var (
	NginxPath  = "/usr/sbin/nginx"
	PHPFPMPath = findPHPFPM("/usr/sbin")
)

// findPHPFPM returns dir's php-fpm<version> of the newest PHP, or
// dir/php-fpm (which Available reports missing) when there is none.
func findPHPFPM(dir string) string {
	matches, _ := filepath.Glob(filepath.Join(dir, "php-fpm[0-9]*"))
	best, bestVersion := filepath.Join(dir, "php-fpm"), []int(nil)
	for _, m := range matches {
		var v []int
		for _, part := range strings.Split(strings.TrimPrefix(filepath.Base(m), "php-fpm"), ".") {
			n, err := strconv.Atoi(part)
			if err != nil {
				v = nil
				break
			}
			v = append(v, n)
		}
		if v != nil && slices.Compare(v, bestVersion) > 0 {
			best, bestVersion = m, v
		}
	}
	return best
}

// RequireEnv set to 1 turns missing servers into a test failure instead of
// a skip (the same switch as the sshd harness, so CI fails loudly).
const RequireEnv = "ATOMIC_DEPLOY_REQUIRE_SSHD"

// Options configures one nginx + php-fpm pair.
type Options struct {
	// DeployPath is the deploy root; nginx serves DeployPath/current/public.
	DeployPath string
	// User runs the php-fpm pool and the nginx workers when the test runs
	// as root (the deploy user, so PHP can write storage/ and
	// bootstrap/cache); default "nobody". Ignored when not root: everything
	// then runs as the caller.
	User string
	// DocumentRoot passes $document_root (the path through the `current`
	// symlink) as SCRIPT_FILENAME and DOCUMENT_ROOT instead of
	// $realpath_root. This is the common misconfiguration that keeps PHP
	// serving the old release after a switch (realpath cache and opcache
	// key on the symlinked path); use it only to reproduce that trap.
	DocumentRoot bool
	// Workers is pm.max_children of the static pool; default 4.
	Workers int
	// PHPAdminValues are extra php_admin_value[...] settings for the pool.
	PHPAdminValues map[string]string
	// Nice lowers the scheduling priority of the php-fpm and nginx workers
	// (1..19). A load test on a small machine uses it so that the deploy
	// being measured is not starved of CPU by the traffic it is tested
	// under; 0 leaves the priority alone.
	Nice int
}

// Server is a running nginx + php-fpm.
type Server struct {
	URL  string // http://127.0.0.1:port
	Addr string // 127.0.0.1:port
	Port int
	Dir  string // configs, socket, pids and logs

	procs []*proc
}

type proc struct {
	name   string
	cmd    *exec.Cmd
	out    *testutil.SyncBuffer
	exited chan struct{}
	stop   sync.Once
}

// Available reports why the servers cannot run here, or "" when they can.
func Available() string {
	for _, p := range []string{NginxPath, PHPFPMPath} {
		if _, err := os.Stat(p); err != nil {
			return p + " is not installed (apt-get install -y nginx php-fpm php-sqlite3 php-laravel-framework)"
		}
	}
	return ""
}

// Skip skips (or, with ATOMIC_DEPLOY_REQUIRE_SSHD=1, fails) t when nginx
// or php-fpm is missing.
func Skip(t testing.TB) {
	t.Helper()
	if why := Available(); why != "" {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%s and %s=1", why, RequireEnv)
		}
		t.Skipf("%s (set %s=1 to fail instead)", why, RequireEnv)
	}
}

// Start starts php-fpm and nginx and returns once nginx accepts
// connections. It skips the test when either is missing.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	Skip(t)
	if o.DeployPath == "" || !filepath.IsAbs(o.DeployPath) {
		t.Fatalf("webtest: DeployPath must be absolute, got %q", o.DeployPath)
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	dir, err := os.MkdirTemp("", "webtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The workers (as o.User) reach the socket in here.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Server{Dir: dir}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("webtest logs (%s):\n%s", dir, s.Logs())
		}
	})

	runAs := ""
	if os.Geteuid() == 0 {
		runAs = o.User
		if runAs == "" || runAs == "root" {
			runAs = "nobody" // php-fpm refuses to run a pool as root
		}
	}
	group := ""
	if runAs != "" {
		g, err := primaryGroup(runAs)
		if err != nil {
			t.Fatal(err)
		}
		group = g
	}

	sock := filepath.Join(dir, "php-fpm.sock")
	fpmConf := filepath.Join(dir, "php-fpm.conf")
	if err := os.WriteFile(fpmConf, []byte(fpmConfig(dir, sock, runAs, group, o)), 0o644); err != nil {
		t.Fatal(err)
	}
	fpm, err := s.start("php-fpm", PHPFPMPath, "-F", "-y", fpmConf)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitFor(fpm, 15*time.Second, func() bool { _, err := os.Stat(sock); return err == nil }); err != nil {
		t.Fatalf("php-fpm: %v\n%s", err, s.Logs())
	}

	// The port is found free and then bound by nginx; another test may take
	// it in between, so retry with a new port.
	for attempt := 0; ; attempt++ {
		err := s.startNginx(o, sock, runAs, group)
		if err == nil {
			break
		}
		if attempt < 5 && (strings.Contains(err.Error(), "Address already in use") || strings.Contains(s.Logs(), "Address already in use")) {
			os.Remove(filepath.Join(s.Dir, "error.log"))
			continue
		}
		t.Fatalf("nginx: %v\n%s", err, s.Logs())
	}
	return s
}

func (s *Server) startNginx(o Options, sock, runAs, group string) error {
	port, err := testutil.FreePort()
	if err != nil {
		return err
	}
	s.Port = port
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.URL = "http://" + s.Addr
	conf := filepath.Join(s.Dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConfig(s.Dir, s.Addr, sock, runAs, group, o)), 0o644); err != nil {
		return err
	}
	p, err := s.start("nginx", NginxPath, "-e", filepath.Join(s.Dir, "error.log"), "-p", s.Dir+"/", "-c", conf)
	if err != nil {
		return err
	}
	err = waitFor(p, 15*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if err != nil {
		p.quit(5 * time.Second)
		s.procs = s.procs[:len(s.procs)-1]
	}
	return err
}

func (s *Server) start(name string, path string, args ...string) (*proc, error) {
	p := &proc{name: name, out: &testutil.SyncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Dir = s.Dir
	// Its own process group: a ^C to the test does not hit it first. If the
	// test binary dies without cleaning up (a go test timeout), the master
	// still gets SIGQUIT and takes its workers down with it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	s.procs = append(s.procs, p)
	return p, nil
}

// quit asks the master to finish gracefully (SIGQUIT for both nginx and
// php-fpm) and kills it if it has not gone after wait.
func (p *proc) quit(wait time.Duration) {
	p.stop.Do(func() {
		p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.exited:
		case <-time.After(wait):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
	})
}

// Stop shuts nginx and then php-fpm down; t.Cleanup calls it too.
func (s *Server) Stop() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].quit(10 * time.Second)
	}
}

// Logs returns the servers' output and log files, for failure messages.
func (s *Server) Logs() string {
	var b strings.Builder
	for _, p := range s.procs {
		if out := strings.TrimSpace(p.out.String()); out != "" {
			fmt.Fprintf(&b, "--- %s output\n%s\n", p.name, out)
		}
	}
	for _, f := range []string{"error.log", "php-fpm.log", "php-errors.log"} {
		data, err := os.ReadFile(filepath.Join(s.Dir, f))
		if err == nil && len(bytes.TrimSpace(data)) > 0 {
			fmt.Fprintf(&b, "--- %s\n%s\n", f, tail(data, 8<<10))
		}
	}
	return b.String()
}

// Get fetches path (e.g. "/health") with a short timeout and returns the
// status and body.
func (s *Server) Get(path string) (int, string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(s.URL + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), err
}

func fpmConfig(dir, sock, runAs, group string, o Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, `[global]
pid = %s
error_log = %s
daemonize = no
log_level = notice

[app]
listen = %s
listen.mode = 0660
`, filepath.Join(dir, "php-fpm.pid"), filepath.Join(dir, "php-fpm.log"), sock)
	if runAs != "" {
		fmt.Fprintf(&b, "user = %s\ngroup = %s\nlisten.owner = %s\nlisten.group = %s\n", runAs, group, runAs, group)
	}
	fmt.Fprintf(&b, `pm = static
pm.max_children = %d
clear_env = no%s
catch_workers_output = yes
php_admin_value[error_log] = %s
php_admin_flag[log_errors] = on
`, o.Workers, niceLine("process.priority = %d", o.Nice), filepath.Join(dir, "php-errors.log"))
	for k, v := range o.PHPAdminValues {
		fmt.Fprintf(&b, "php_admin_value[%s] = %s\n", k, v)
	}
	return b.String()
}

func nginxConfig(dir, addr, sock, runAs, group string, o Options) string {
	root := "$realpath_root"
	if o.DocumentRoot {
		root = "$document_root"
	}
	userLine := ""
	if runAs != "" {
		userLine = fmt.Sprintf("user %s %s;\n", runAs, group)
	}
	return fmt.Sprintf(`%sdaemon off;
worker_processes 1;%[7]s
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;

events {
    worker_connections 1024;
}

http {
    access_log off;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    types {
        text/html html;
        text/plain txt;
        application/json json;
    }
    default_type application/octet-stream;
    keepalive_requests 100000;

    server {
        listen %[3]s;
        server_name localhost;
        root %[4]s/current/public;
        index index.php;

        location / {
            try_files $uri $uri/ /index.php?$query_string;
        }

        location ~ \.php$ {
            try_files $fastcgi_script_name =404;
            fastcgi_pass unix:%[5]s;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param SCRIPT_NAME $fastcgi_script_name;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param DOCUMENT_URI $document_uri;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_param REQUEST_SCHEME $scheme;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param SERVER_SOFTWARE nginx;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param REMOTE_PORT $remote_port;
            fastcgi_param SERVER_ADDR $server_addr;
            fastcgi_param SERVER_PORT $server_port;
            fastcgi_param SERVER_NAME $server_name;
            fastcgi_param HTTP_HOST $host;
            fastcgi_param REDIRECT_STATUS 200;
            # The release is resolved once, here: PHP gets the real path of
            # releases/<id>, so a switch of current never mixes releases
            # within a request, and PHP's caches never hold the symlink.
            fastcgi_param SCRIPT_FILENAME %[6]s$fastcgi_script_name;
            fastcgi_param DOCUMENT_ROOT %[6]s;
        }
    }
}
`, userLine, dir, addr, o.DeployPath, sock, root, niceLine("worker_priority %d;", o.Nice))
}

// niceLine is "\n" + the directive for a nice value, or "" for 0.
func niceLine(format string, nice int) string {
	if nice == 0 {
		return ""
	}
	return "\n" + fmt.Sprintf(format, nice)
}

func primaryGroup(name string) (string, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return "", fmt.Errorf("webtest: user %s: %w", name, err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		return "", fmt.Errorf("webtest: group of %s: %w", name, err)
	}
	return g.Name, nil
}

func waitFor(p *proc, timeout time.Duration, ready func() bool) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited: %s", p.name, strings.TrimSpace(p.out.String()))
		default:
		}
		if ready() {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s", p.name, timeout)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
