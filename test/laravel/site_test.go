// Package laravel_test deploys examples/laravel (a real Laravel 8 app on
// Debian's php-laravel-framework) with `--preset laravel` over a real sshd to
// a real nginx + php-fpm, through the program's own entry point, and checks
// that visitors never see an error or a mixed release while it deploys again
// and again under load.
package laravel_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/app"
	"github.com/atomic-deploy/atomic-deploy/internal/report"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/webtest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/sshx"
)

// exampleDir is the application under test, relative to this package.
const exampleDir = "../../examples/laravel"

// site is one deploy target: an sshd, a deploy root, and the source tree
// the deploys are made from.
type site struct {
	*deploytest.Host
	t   testing.TB
	src string // copy of examples/laravel, changed between deploys
	dir string // scratch space for outputs files

	builds map[string]int // release id -> build number it was deployed with
	build  int            // build number of the next deploy
}

// deployResult is one run of the program.
type deployResult struct {
	Code    int
	Stdout  string
	Stderr  string
	Outputs map[string]string
	Elapsed time.Duration
}

func (r deployResult) ReleaseID() string { return r.Outputs["release-id"] }

// skipUnlessPHP skips (or fails, with ATOMIC_DEPLOY_REQUIRE_SSHD=1) when
// the PHP side of the test is not installed.
func skipUnlessPHP(t testing.TB) {
	t.Helper()
	webtest.Skip(t)
	var missing []string
	if _, err := exec.LookPath("php"); err != nil {
		missing = append(missing, "php-cli")
	}
	if _, err := os.Stat("/usr/share/php/Illuminate/autoload.php"); err != nil {
		missing = append(missing, "php-laravel-framework")
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("%s not installed (apt-get install -y php-cli php-sqlite3 php-laravel-framework)", strings.Join(missing, ", "))
		if distro := osID(); distro != "debian" && slices.Equal(missing, []string{"php-laravel-framework"}) {
			// Only Debian packages Laravel 8 (Ubuntu 24.04, the GitHub runner,
			// does not), so elsewhere the requirement cannot be met with apt.
			t.Skipf("the Laravel tests need Debian's php-laravel-framework, which %s does not package", distro)
		}
		if os.Getenv(webtest.RequireEnv) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// osID is the distribution's ID from /etc/os-release ("debian", "ubuntu").
func osID() string {
	data, _ := os.ReadFile("/etc/os-release")
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "ID="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "unknown"
}

// newSite starts sshd and prepares an empty deploy root and a source copy
// of the example application.
func newSite(t *testing.T) *site {
	t.Helper()
	skipUnlessPHP(t)
	s := &site{
		Host:   deploytest.New(t, deploytest.Options{Kind: deploytest.SSH}),
		t:      t,
		src:    filepath.Join(t.TempDir(), "src"),
		dir:    t.TempDir(),
		builds: map[string]int{},
		build:  1,
	}
	copyTree(t, exampleDir, s.src)
	return s
}

// deploy runs `atomic-deploy deploy --preset laravel ...` through app.Main,
// after writing the next build number into config/example.php, and records
// which build went out under which release id.
func (s *site) deploy(ctx context.Context, extra ...string) deployResult {
	s.t.Helper()
	build := s.build
	s.build++
	conf := fmt.Sprintf("<?php\n\n// Written by the test before deploy %d.\nreturn [\n    'build' => %d,\n];\n", build, build)
	if err := os.WriteFile(filepath.Join(s.src, "config", "example.php"), []byte(conf), 0o644); err != nil {
		s.t.Fatal(err)
	}
	outFile := filepath.Join(s.dir, fmt.Sprintf("outputs-%d", build))
	args := append([]string{"deploy",
		"--host", s.Server.User + "@" + s.Server.Addr,
		"--path", s.Path,
		"--private-key", s.Server.ClientKeyPEM,
		"--known-hosts", s.Server.KnownHostsLine,
		"--source", s.src,
		"--preset", "laravel",
	}, extra...)
	environ := []string{
		"GITHUB_OUTPUT=" + outFile,
		"GITHUB_SHA=" + fmt.Sprintf("build-%d", build),
		"USER=laravel-test",
	}
	var stdout bytes.Buffer
	start := time.Now()
	stderr := &stampWriter{start: start}
	code := app.Main(ctx, args, environ, app.IO{Stdout: &stdout, Stderr: stderr})
	r := deployResult{Code: code, Stdout: stdout.String(), Stderr: stderr.String(), Elapsed: time.Since(start)}
	if data, err := os.ReadFile(outFile); err == nil {
		if r.Outputs, err = report.ParseOutputs(string(data)); err != nil {
			s.t.Fatalf("outputs of deploy %d: %v", build, err)
		}
	}
	if r.Outputs == nil {
		r.Outputs = map[string]string{}
	}
	if code == 0 && r.ReleaseID() != "" {
		s.builds[r.ReleaseID()] = build
	}
	return r
}

// stampWriter prefixes each line with the time since start, so a slow
// step shows in a failure message.
type stampWriter struct {
	start   time.Time
	buf     bytes.Buffer
	partial bool
}

func (w *stampWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.SplitAfter(p, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if !w.partial {
			fmt.Fprintf(&w.buf, "[%6.3fs] ", time.Since(w.start).Seconds())
		}
		w.buf.Write(line)
		w.partial = line[len(line)-1] != '\n'
	}
	return len(p), nil
}

func (w *stampWriter) String() string { return w.buf.String() }

// mustDeploy deploys and fails the test unless it worked.
func (s *site) mustDeploy(ctx context.Context, extra ...string) deployResult {
	s.t.Helper()
	r := s.deploy(ctx, extra...)
	if r.Code != 0 || r.ReleaseID() == "" {
		s.t.Fatalf("deploy failed (exit %d, release-id %q):\n%s", r.Code, r.ReleaseID(), r.Stderr)
	}
	return r
}

// ssh opens a transport as the deploy user, for what an operator does by
// hand on the server (put .env in place, run a queue worker).
func (s *site) ssh(ctx context.Context) *sshx.Transport {
	s.t.Helper()
	tr, err := sshx.Dial(ctx, s.Server.Config())
	if err != nil {
		s.t.Fatalf("ssh: %v", err)
	}
	s.t.Cleanup(func() { tr.Close() })
	return tr
}

// productionEnv is the .env an operator puts into <path>/shared/.env.
func productionEnv(t testing.TB) []byte {
	t.Helper()
	example, err := os.ReadFile(filepath.Join(exampleDir, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	env := strings.Replace(string(example), "\nAPP_KEY=\n", "\nAPP_KEY=base64:"+base64.StdEncoding.EncodeToString(key)+"\n", 1)
	if env == string(example) {
		t.Fatal(".env.example has no empty APP_KEY= line to fill in")
	}
	return []byte(strings.Replace(env, `APP_NAME="Laravel example"`, `APP_NAME="Laravel example (test)"`, 1))
}

// putEnv writes the production .env into shared/ over SSH, as the deploy user.
func (s *site) putEnv(ctx context.Context) {
	s.t.Helper()
	tr := s.ssh(ctx)
	shared := s.Path + "/shared"
	if err := tr.MkdirAll(ctx, shared, 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := tr.WriteFile(ctx, shared+"/.env", productionEnv(s.t), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// status is what GET / answers.
type status struct {
	App      string `json:"app"`
	Release  string `json:"release"`
	Revision string `json:"revision"`
	Build    int    `json:"build"`
}

func getStatus(t testing.TB, web *webtest.Server) status {
	t.Helper()
	code, body, err := web.Get("/")
	if err != nil || code != 200 {
		t.Fatalf("GET /: %d %v\n%s\n%s", code, err, body, web.Logs())
	}
	var st status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("GET /: %v in %q", err, body)
	}
	return st
}

var (
	releaseIDRE   = regexp.MustCompile(`^[0-9]{14}$`)
	releaseInBody = regexp.MustCompile(`"release":"([0-9]{14})"`)
)

// copyTree copies a directory of regular files, directories and symlinks.
func copyTree(t testing.TB, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, info.Mode().Perm()|0o700)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		default:
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, info.Mode().Perm())
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
			return out.Close()
		}
	})
	if err != nil {
		t.Fatalf("copy %s: %v", from, err)
	}
}

// waitFor polls cond every 50ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
