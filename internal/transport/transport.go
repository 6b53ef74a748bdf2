// Package transport is the one seam between the deploy logic and a target machine.
// The deploy steps are written once against Transport; local runs them on this
// machine's filesystem, sshx over one SSH connection (SFTP for files, exec for
// commands when the server allows a shell).
package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"
)

// ErrNoShell is returned by Exec when the target refuses shell commands
// (for example an SFTP-only account with ForceCommand internal-sftp).
var ErrNoShell = errors.New("the server does not allow shell commands (SFTP-only)")

// Transport is what a deploy needs from a target. Paths are absolute and
// slash-separated on the target. Implementations must be safe for concurrent
// use: uploads call Create/Link/Mkdir from many goroutines at once, which is how
// round trips are pipelined over SFTP.
//
// Errors wrap fs.ErrNotExist / fs.ErrExist where that is what happened, so
// callers can use errors.Is on any transport.
type Transport interface {
	// String names the target in messages, e.g. "local" or "deploy@web1:22".
	String() string

	// Mkdir creates one directory; it fails with fs.ErrExist if path exists.
	// It is atomic, so it doubles as a lock primitive.
	Mkdir(ctx context.Context, path string, perm fs.FileMode) error
	// MkdirAll creates path and any missing parents.
	MkdirAll(ctx context.Context, path string, perm fs.FileMode) error
	// Create makes a new file (it fails with fs.ErrExist when path exists) with
	// the given permission bits, exactly (no umask), and returns a writer for
	// its content. The writer may implement io.ReaderFrom for faster copies.
	Create(ctx context.Context, path string, perm fs.FileMode) (io.WriteCloser, error)
	// WriteFile replaces path atomically (temporary name + rename) with data.
	WriteFile(ctx context.Context, path string, data []byte, perm fs.FileMode) error
	// ReadFile returns the whole content of a small file.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// Symlink creates path as a symbolic link holding target, verbatim.
	Symlink(ctx context.Context, target, path string) error
	// Readlink returns the target of the symbolic link at path.
	Readlink(ctx context.Context, path string) (string, error)
	// Link creates newpath as a hard link to oldpath.
	Link(ctx context.Context, oldpath, newpath string) error
	// Copy makes newpath a private copy of oldpath, a regular file (a
	// symbolic link is followed): the same content and permission bits
	// (setuid, setgid and sticky included) under a new inode, so that a
	// write into one never shows in the other. Its modification time is
	// the time of the copy. It fails with fs.ErrExist when newpath exists,
	// and leaves no newpath behind when it fails otherwise. The target
	// copies by itself where it can (a reflink, SFTP's copy-data
	// extension), so that the bytes do not cross the network; CopyMethod
	// says which way it goes.
	Copy(ctx context.Context, oldpath, newpath string) error
	// CopyMethod names how Copy copies on this target, for the log and
	// the docs: one of the Copy* constants. It may wait, like Copy would,
	// until the transport knows (over SSH: SFTP started, shell probed).
	CopyMethod() string
	// Rename moves oldpath to newpath, atomically replacing newpath if it
	// exists (rename(2) semantics). Implementations that cannot replace
	// atomically must fail rather than emulate it.
	Rename(ctx context.Context, oldpath, newpath string) error
	// Remove deletes a file, a symbolic link or an empty directory.
	Remove(ctx context.Context, path string) error
	// RemoveAll deletes path and everything below it; a missing path is not an error.
	RemoveAll(ctx context.Context, path string) error
	// Lstat describes path without following a final symbolic link.
	Lstat(ctx context.Context, path string) (fs.FileInfo, error)
	// ReadDir lists a directory (entries as Lstat would describe them), sorted by name.
	ReadDir(ctx context.Context, path string) ([]fs.FileInfo, error)
	// Chmod sets the permission bits of path.
	Chmod(ctx context.Context, path string, mode fs.FileMode) error
	// Scan walks the tree below root and describes every entry in it, with
	// paths relative to root (slash-separated, root itself excluded).
	Scan(ctx context.Context, root string) ([]Stat, error)
	// Now is the target's clock, used for lock expiry so runner clocks don't matter.
	Now(ctx context.Context) (time.Time, error)

	// Ready waits until the connection is fully set up and returns what
	// went wrong. A transport may hand itself out before then (an SSH one
	// returns after the handshake, while SFTP starts); every other method
	// waits by itself, except Exec.
	Ready(ctx context.Context) error
	// CanExec reports whether Exec can run commands on the target.
	CanExec() bool
	// Exec runs cmd with /bin/sh on the target. It returns ErrNoShell when
	// CanExec is false, and an *ExitError when the script ran and exited
	// non-zero. Called before the transport knows
	// whether there is a shell, it sends the command at once: on a server
	// without one, whatever the server runs instead (internal-sftp waiting
	// for its input, say) gets it, so such a caller must check CanExec
	// before trusting the outcome, and end the command when it is false.
	Exec(ctx context.Context, cmd Command, stdin io.Reader, stdout, stderr io.Writer) error
	// Warm prepares, ahead of need, what the next Exec would have to set
	// up first (over SSH: a session and a waiting shell, two round trips),
	// so that a command that matters, such as an upload stream, starts at
	// once. It returns at once; where there is nothing to prepare it does
	// nothing.
	Warm()

	Close() error
}

// LinkMeter is what a transport over a network may also be: LinkBusy says
// how long its connection's socket has had bytes in flight or waiting to
// be sent since it opened, and ok is false where that is not known. An
// upload whose writes wait while the link was idle is held back by the
// far end, not by the link.
type LinkMeter interface {
	LinkBusy() (busy time.Duration, ok bool)
}

// How Copy copies, as CopyMethod names it.
const (
	// CopyLocal: this machine's filesystem, sharing the blocks (FICLONE)
	// where the filesystem can, else copying them in the kernel.
	CopyLocal = "reflink or local copy"
	// CopyServerSide: SFTP's copy-data extension (OpenSSH 9.0 and later);
	// the server reads and writes, nothing crosses the network.
	CopyServerSide = "copy-data (server-side)"
	// CopyShell: GNU cp over exec on the server (a reflink where its
	// filesystem can); one command per file.
	CopyShell = "cp on the server"
	// CopyThroughClient: read over SFTP and written back, for a server
	// with neither: every byte crosses the network twice.
	CopyThroughClient = "through this machine (no server-side copy)"
)

// Command is a shell script for the target's /bin/sh. Script is constant
// text, written in a .sh file of this program and embedded (never put
// together from values); the values it works on travel as Args, its
// positional parameters $1, $2, ... Name says what it is: $0 is
// atomic-deploy:<Name>, so traces, tests and `ps` on the server tell
// commands apart without reading their text.
type Command struct {
	Name   string
	Script string
	Args   []string
}

// Argv is what /bin/sh -c gets after the script: $0, then the arguments.
func (c Command) Argv() []string {
	return append([]string{"atomic-deploy:" + c.Name}, c.Args...)
}

// Stat describes one entry found by Scan.
type Stat struct {
	Path    string      // relative to the scanned root, slash-separated
	Mode    fs.FileMode // type and permission bits
	Size    int64
	ModTime time.Time
	// Precise is true when ModTime has sub-second precision (SFTP v3 only
	// carries seconds); comparisons must then truncate to seconds.
	Precise bool
	// Inode, Links and ChangeTime are known only where the transport can
	// see them (local, or exec with find); zero otherwise. They let the
	// deploy notice a hook writing in place into a file that is hard-linked
	// with an older release.
	Inode      uint64
	Links      uint64
	ChangeTime time.Time
}

// ExitError is a remote command that ran and exited non-zero.
type ExitError struct {
	Status int
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("exit status %d", e.Status)
}

// LimitWriter passes the first n bytes written to it on to w and drops the
// rest, never failing: a command's stderr kept for an error message, which
// must not grow without end nor stop the command.
func LimitWriter(w io.Writer, n int) io.Writer { return &limitWriter{w: w, n: n} }

type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
