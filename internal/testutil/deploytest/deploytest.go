// Package deploytest puts a deploy root on a real server for the tests and
// benchmarks of deploys: on this machine's filesystem, behind an OpenSSH
// sshd with a shell, behind an SFTP-only sshd, or behind a fleet of sshd
// that all see it at one path (servers from internal/testutil/sshtest).
// A Host gives the deploy.Target and reads back what the server's
// filesystem holds (`current`, releases, files); a Source is the tree to
// release from, and a Log the deploy.Logger that keeps what a deploy said.
//
// What a test sets (deploy.Settings, the deploy.Options it calls with) stays
// in the test.
package deploytest

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/sshtest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/local"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/sshx"
)

// Kind is where a deploy root lives.
type Kind string

const (
	Local    Kind = "local"     // this machine's filesystem, through transport/local
	SSH      Kind = "ssh"       // an sshd on 127.0.0.1 with a shell
	SFTPOnly Kind = "sftp-only" // an sshd that allows SFTP only (ForceCommand internal-sftp)
)

// Kinds are all of them, for a table of tests.
var Kinds = []Kind{Local, SSH, SFTPOnly}

// Options say what to start.
type Options struct {
	Kind Kind
	// Tmpfs is the size ("2m") of a fresh tmpfs mounted at Base in each
	// sshd's own mount namespace: a small disk, for disk-full tests.
	Tmpfs string
}

// Host is a deploy root on one server.
type Host struct {
	Name   string          // its deploy.Target's name: host0, host1, ...
	Path   string          // the deploy root as the server sees it (deploy.Options.Root); not created
	Base   string          // the directory Path is in, owned by the login user, as the server sees it
	Server *sshtest.Server // nil on Local
	t      testing.TB
}

// New makes a deploy root on one server of kind o.Kind.
func New(t testing.TB, o Options) *Host {
	t.Helper()
	switch {
	case o.Kind == SSH || o.Kind == SFTPOnly:
		return NewFleet(t, 1, o)[0]
	case o.Kind != Local:
		t.Fatalf("deploytest: unknown Kind %q", o.Kind)
	case o.Tmpfs != "":
		t.Fatal("deploytest: a tmpfs needs an sshd (Kind SSH or SFTPOnly)")
	}
	base := t.TempDir()
	h := &Host{Name: "host0", Path: filepath.Join(base, "site"), Base: base, t: t}
	t.Cleanup(h.Settle)
	return h
}

// LocalRoot is a deploy root on this machine's filesystem, name in a new
// temporary directory (not created), for a test that deploys by other
// means than a Host (the CLI, the action): removed once no deploy holds
// its lock (Host.Settle).
func LocalRoot(t testing.TB, name string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), name)
	t.Cleanup(func() { WaitUnlocked(t, deploy.Layout{Root: root}.FlockFile()) })
	return root
}

// NewFleet starts n sshd of kind o.Kind at once, all seeing the deploy root
// at one path, each backed by its own directory: a private bind mount (or
// a tmpfs) at Base in each sshd's mount namespace.
func NewFleet(t testing.TB, n int, o Options) Fleet {
	t.Helper()
	if o.Kind != SSH && o.Kind != SFTPOnly {
		t.Fatalf("deploytest: a fleet is of sshd (Kind SSH or SFTPOnly), not %q", o.Kind)
	}
	var base string
	if n == 1 && o.Tmpfs == "" {
		base = sshtest.MkdirUserTemp(t) // nothing to keep apart: no mount
	} else {
		base = mountPoint(t)
	}
	opts := make([]sshtest.Options, n)
	for i := range opts {
		opts[i].SFTPOnly = o.Kind == SFTPOnly
		switch {
		case o.Tmpfs != "":
			opts[i].TmpfsMounts = map[string]string{base: o.Tmpfs}
		case n > 1:
			opts[i].PrivateMounts = map[string]string{base: sshtest.MkdirUserTemp(t)}
		}
	}
	f := make(Fleet, n)
	for i, srv := range sshtest.StartMany(t, opts...) {
		f[i] = &Host{Name: fmt.Sprintf("host%d", i), Path: filepath.Join(base, "site"), Base: base, Server: srv, t: t}
		t.Cleanup(f[i].Settle) // before the sshd stop and the directories go
	}
	return f
}

// Settle waits until no deploy holds the host's lock
// (deploy.Layout.FlockFile): its holder may keep it a while after the
// deploy returned, to clean up after it (remote/holder.sh). Registered as
// a cleanup of every Host; a test that looks at the deploy root's own
// files after a deploy calls it first.
func (h *Host) Settle() {
	h.t.Helper()
	WaitUnlocked(h.t, deploy.Layout{Root: h.Root()}.FlockFile())
}

// Locked is whether a process holds flock(2) on file (a deploy's lock:
// deploy.Layout.FlockFile).
func Locked(file string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false // no lock was ever taken there
	}
	defer f.Close()
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil
}

// WaitUnlocked waits, up to a minute, until flock(2) on file can be taken.
func WaitUnlocked(t testing.TB, file string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if !Locked(file) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s is still locked after a minute", file)
			return
		}
	}
}

// mountPoint is an empty directory for the sshd to mount over in their own
// namespaces (on this machine it stays empty).
func mountPoint(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "deploytest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Target dials the host: the local transport, or SSH with its host key pinned.
func (h *Host) Target() deploy.Target {
	if h.Server == nil {
		return deploy.Target{Name: h.Name, Dial: func(context.Context) (transport.Transport, error) { return local.New(), nil }}
	}
	return SSHTarget(h.Name, h.Server.Config())
}

// SSHTarget is a target named name that dials cfg.
func SSHTarget(name string, cfg sshx.Config) deploy.Target {
	return deploy.Target{Name: name, Dial: func(ctx context.Context) (transport.Transport, error) { return sshx.Dial(ctx, cfg) }}
}

// Local is where this process finds path p of the server: p itself, or p
// inside the sshd's mount namespace (sshtest.Server.Path).
func (h *Host) Local(p string) string {
	if h.Server == nil {
		return p
	}
	return h.Server.Path(p)
}

// Root is the deploy root joined with elem, where this process finds it.
func (h *Host) Root(elem ...string) string {
	return filepath.Join(append([]string{h.Local(h.Path)}, elem...)...)
}

// Current is the release id `current` points at, "" when there is none.
func (h *Host) Current() string {
	h.t.Helper()
	target, err := os.Readlink(h.Root("current"))
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return filepath.Base(target)
}

// Releases lists the release directories, oldest first.
func (h *Host) Releases() []string {
	entries, _ := os.ReadDir(h.Root("releases"))
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.Name())
	}
	return ids
}

// Read returns the content of file p of the deploy root ("current/a.txt").
func (h *Host) Read(p string) string {
	h.t.Helper()
	b, err := os.ReadFile(h.Root(p))
	if err != nil {
		h.t.Fatal(err)
	}
	return string(b)
}

// Fleet is the hosts of NewFleet.
type Fleet []*Host

// Path is the deploy root as every host sees it.
func (f Fleet) Path() string { return f[0].Path }

// Targets are the hosts' targets, in order.
func (f Fleet) Targets() []deploy.Target {
	var ts []deploy.Target
	for _, h := range f {
		ts = append(ts, h.Target())
	}
	return ts
}

// Currents are the hosts' Current, in order.
func (f Fleet) Currents() []string {
	var ids []string
	for _, h := range f {
		ids = append(ids, h.Current())
	}
	return ids
}

// SwitchSpread is how far apart in time the hosts of res switched.
func SwitchSpread(res *deploy.Result) time.Duration {
	times := make([]time.Time, 0, len(res.Hosts))
	for _, h := range res.Hosts {
		times = append(times, h.SwitchedAt)
	}
	return Spread(times)
}

// Spread is how far apart the earliest and the latest of times are.
func Spread(times []time.Time) time.Duration {
	var lo, hi time.Time
	for _, t := range times {
		if lo.IsZero() || t.Before(lo) {
			lo = t
		}
		if t.After(hi) {
			hi = t
		}
	}
	return hi.Sub(lo)
}

// Source is a source tree on this machine to release from.
type Source struct {
	Dir string
	t   testing.TB
}

// NewSource makes a source tree holding files (path: content).
func NewSource(t testing.TB, files map[string]string) *Source {
	s := &Source{Dir: t.TempDir(), t: t}
	s.Write(files)
	return s
}

// Write writes files (path: content) into the tree.
func (s *Source) Write(files map[string]string) {
	s.t.Helper()
	for p, content := range files {
		s.write(p, []byte(content))
	}
}

// WriteBig adds n files of size bytes of incompressible content under dir.
func (s *Source) WriteBig(dir string, n, size int) {
	s.t.Helper()
	rng := rand.New(rand.NewPCG(uint64(n), uint64(size)))
	buf := make([]byte, size)
	for i := range n {
		for j := 0; j < size; j += 8 {
			v := rng.Uint64()
			for k := 0; k < 8 && j+k < size; k++ {
				buf[j+k] = byte(v >> (8 * k))
			}
		}
		s.write(filepath.Join(dir, fmt.Sprintf("f%04d.bin", i)), buf)
	}
}

func (s *Source) write(p string, content []byte) {
	s.t.Helper()
	full := filepath.Join(s.Dir, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(full, content, 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// Manifest builds the release of the tree as it is now.
func (s *Source) Manifest(revision string) *release.Manifest {
	s.t.Helper()
	m, err := release.Build(context.Background(), release.Options{Source: s.Dir, Revision: revision})
	if err != nil {
		s.t.Fatal(err)
	}
	return m
}

// Log is a deploy.Logger that keeps everything a deploy says.
type Log struct{ buf testutil.SyncBuffer }

func (l *Log) Infof(f string, a ...any) { fmt.Fprintf(&l.buf, "info: "+f+"\n", a...) }
func (l *Log) Warnf(f string, a ...any) { fmt.Fprintf(&l.buf, "warn: "+f+"\n", a...) }

// Writer prefixes what a remote command on host wrote with "[host] ".
func (l *Log) Writer(host string) io.Writer {
	return writerFunc(func(p []byte) { fmt.Fprintf(&l.buf, "[%s] %s", host, p) })
}

func (l *Log) Progress(deploy.Progress) {}

func (l *Log) String() string { return l.buf.String() }

type writerFunc func([]byte)

func (w writerFunc) Write(p []byte) (int, error) { w(p); return len(p), nil }
