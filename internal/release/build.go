package release

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
)

// RevisionFile is written into every release with the deployed revision.
const RevisionFile = "REVISION"

// Options says what to release.
type Options struct {
	Source   string   // directory on the runner
	Exclude  []string // .gitignore patterns, after IgnoreFile's (see Excludes)
	Build    string   // shell command run in Source first; empty for none
	Revision string   // written to REVISION
	Stdout   io.Writer
	Stderr   io.Writer
	// Env is the build command's whole environment (KEY=value). It is
	// never the process's own: nil runs the build with an empty one.
	Env []string
	// SharedDirs and SharedFiles (shared-dirs, shared-files) become links
	// to <path>/shared/ on the server: a symlink may not climb out of one
	// with "..", which would lead outside the release there.
	SharedDirs  []string
	SharedFiles []string
}

// Build runs the build command, then walks Source into a Manifest and
// hashes every file.
func Build(ctx context.Context, o Options) (*Manifest, error) {
	m, err := Describe(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := m.Hash(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// Describe is Build without the hashing: every check of the source is done,
// and Hash fills in the content hashes later (a deploy hashes while it
// connects).
func Describe(ctx context.Context, o Options) (*Manifest, error) {
	info, err := os.Stat(o.Source)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("source %s does not exist", o.Source)
	case err != nil:
		return nil, fmt.Errorf("source %s: %w", o.Source, err)
	case !info.IsDir():
		return nil, fmt.Errorf("source %s is not a directory", o.Source)
	}
	if strings.TrimSpace(o.Build) != "" {
		cmd := exec.CommandContext(ctx, "/bin/sh", "-ec", o.Build)
		cmd.Dir = o.Source
		cmd.Env = o.Env
		if cmd.Env == nil {
			cmd.Env = []string{}
		}
		cmd.Stdout, cmd.Stderr = o.Stdout, o.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("build command failed in %s: %w", o.Source, err)
		}
	}
	m, err := walk(o.Source, o.Exclude, append(append([]string{}, o.SharedDirs...), o.SharedFiles...))
	if err != nil {
		return nil, err
	}
	if err := m.setGenerated(RevisionFile, []byte(o.Revision+"\n")); err != nil {
		return nil, err
	}
	m.trim()
	remember(m)
	if n, _ := m.Files(); n == 1 {
		return nil, fmt.Errorf("source %s has no files to release (after %s, %s and excludes %q)", o.Source, AlwaysExcluded, IgnoreFile, o.Exclude)
	}
	return m, nil
}

// Walk describes the tree at root, hashing files on all cores.
func Walk(ctx context.Context, root string, exclude []string) (*Manifest, error) {
	m, err := walk(root, exclude, nil)
	if err != nil {
		return nil, err
	}
	m.trim()
	remember(m)
	if err := m.Hash(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// walk describes the tree at root without reading the files; shared are
// the shared paths (see Options).
func walk(root string, exclude, shared []string) (*Manifest, error) {
	m := &Manifest{}
	// WalkDir does not follow a root that is itself a symlink (a source
	// directory linked elsewhere); walk what it points to.
	if real, err := filepath.EvalSymlinks(root); err == nil {
		root = real
	}
	excludes, err := sourceExcludes(root, exclude)
	if err != nil {
		return nil, err
	}
	// Every file's content is read from root joined with its Path.
	files := &source{root: root}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("read source: %w", err)
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		// Its own copy: rel shares the memory of p, the full local path.
		rel = strings.Clone(filepath.ToSlash(rel))
		if excludes.Excluded(rel, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("read source %s: %w", rel, err)
		}
		e := Entry{Path: rel, Mode: unixPerm(info.Mode())}
		switch {
		case d.IsDir():
			e.Type = TypeDir
		case info.Mode().IsRegular():
			e.Type, e.Size, e.src = TypeFile, info.Size(), files
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("read source symlink %s: %w", rel, err)
			}
			if err := symlinkStaysInside(rel, target); err != nil {
				return err
			}
			e.Type, e.Target, e.Mode = TypeSymlink, target, 0
		default:
			return fmt.Errorf("source %s is a %s; only files, directories and symlinks can be released (exclude it)", rel, info.Mode().Type())
		}
		m.Entries = append(m.Entries, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := linksStayInside(m, shared); err != nil {
		return nil, err
	}
	return m, nil
}

// unixPerm converts Go's mode bits to the Unix 12-bit permission field.
func unixPerm(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

// FileMode converts a Unix permission field back to Go's mode bits.
func FileMode(p uint32) fs.FileMode {
	m := fs.FileMode(p & 0o777)
	if p&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if p&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if p&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// symlinkStaysInside refuses links that would point outside the release:
// they would silently depend on the runner's or server's layout. Links into
// shared/ are made by shared-dirs/shared-files instead.
func symlinkStaysInside(rel, target string) error {
	if strings.HasPrefix(target, "/") {
		return fmt.Errorf("source %s is a symlink to the absolute path %s; only relative links inside the release are deployed (use shared-dirs/shared-files, or exclude it)", rel, target)
	}
	resolved := path.Join(path.Dir(rel), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return fmt.Errorf("source %s is a symlink to %s, outside the release; only relative links inside the release are deployed (exclude it)", rel, target)
	}
	return nil
}

// linksStayInside follows every symlink through the release's other
// symlinks and its shared paths, as the server will: "dot" -> "." makes
// "dot/dot/../../x" look inside to symlinkStaysInside but climb out of the
// release on the server, and so does ".." out of a shared path, which is a
// link to <path>/shared/<it> there.
func linksStayInside(m *Manifest, shared []string) error {
	links := map[string]string{}
	for _, e := range m.Entries {
		if e.Type == TypeSymlink {
			links[e.Path] = e.Target
		}
	}
	for _, e := range m.Entries {
		if e.Type != TypeSymlink || slices.Contains(shared, e.Path) {
			continue // a link at a shared path is replaced by the shared link
		}
		inside, escaped := resolvesInside(links, shared, e.Path)
		switch {
		case escaped != "":
			return fmt.Errorf("source %s is a symlink to %s, which climbs out of the shared path %s with ..: on the server %s is a link to <path>/shared/%s, so .. there leads outside the release; only links that stay inside the release or inside a shared path are deployed (exclude it)", e.Path, e.Target, escaped, escaped, escaped)
		case !inside:
			return fmt.Errorf("source %s is a symlink to %s, which leads outside the release through another symlink; only relative links inside the release are deployed (exclude it)", e.Path, e.Target)
		}
	}
	return nil
}

// resolvesInside resolves the link at rel component by component, expanding
// the release's own links on the way, and reports whether it never climbs
// above the release root. A shared path is where the server has a link to
// shared/ instead of what the release holds: resolving into one (or from a
// link that lives in one) continues in shared/, and ".." above it is
// reported as escaped (that shared path). Components the release does not
// have are taken as directories; a chain the kernel would refuse to follow
// (ELOOP) leads nowhere.
func resolvesInside(links map[string]string, shared []string, rel string) (inside bool, escaped string) {
	var dir []string
	if d := path.Dir(rel); d != "." {
		dir = strings.Split(d, "/")
	}
	// floor is the depth of the shared path the walk is in (0: none).
	floor, in := 0, ""
	for _, p := range shared {
		if strings.HasPrefix(rel, p+"/") {
			floor, in = strings.Count(p, "/")+1, p
		}
	}
	todo := strings.Split(links[rel], "/")
	for hops := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			switch {
			case floor > 0 && len(dir) == floor:
				return false, in
			case len(dir) == 0:
				return false, ""
			}
			dir = dir[:len(dir)-1]
			continue
		}
		dir = append(dir, c)
		p := strings.Join(dir, "/")
		if floor == 0 && slices.Contains(shared, p) {
			floor, in = len(dir), p
			continue
		}
		if t, ok := links[p]; ok {
			if hops++; hops > 40 || strings.HasPrefix(t, "/") {
				return true, ""
			}
			dir = dir[:len(dir)-1]
			todo = append(strings.Split(t, "/"), todo...)
		}
	}
	return true, ""
}

// Hash computes the content hash of every file not hashed yet, on all cores.
func (m *Manifest) Hash(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0) * 2)
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != TypeFile || !e.Hash.IsZero() {
			continue
		}
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			h, n, err := hashFile(e.local(), e.Size)
			if err != nil {
				return fmt.Errorf("hash %s: %w", e.Path, err)
			}
			e.Hash, e.Size = h, n
			return nil
		})
	}
	return g.Wait()
}

// copyBuffers are reused across files: a release of 100,000 files would
// otherwise allocate a buffer per file and keep the collector busy.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// hashFile hashes the file at p, to its end, whatever size the walk saw.
func hashFile(p string, size int64) (Digest, int64, error) {
	var d Digest
	f, err := openFile(p, size)
	if err != nil {
		return d, 0, err
	}
	defer f.Close()
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	h := sha256.New()
	n, err := io.CopyBuffer(h, f, *buf)
	if err != nil {
		return d, 0, err
	}
	h.Sum(d[:0])
	return d, n, nil
}

// setGenerated adds or replaces a top-level file whose content is in memory.
func (m *Manifest) setGenerated(name string, data []byte) error {
	e := Entry{Path: name, Type: TypeFile, Mode: 0o644, Size: int64(len(data)), Hash: sha256.Sum256(data), src: &source{data: data}}
	for i := range m.Entries {
		if m.Entries[i].Path == name {
			if m.Entries[i].Type != TypeFile {
				return fmt.Errorf("source %s must be a file if it exists: the deploy writes the revision there", name)
			}
			m.Entries[i] = e
			return nil
		}
	}
	m.Entries = append(m.Entries, e)
	return nil
}
