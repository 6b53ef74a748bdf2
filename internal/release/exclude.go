package release

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
)

// IgnoreFile is read from the source root, when it exists, for exclude
// patterns kept with the code (.gitignore syntax).
const IgnoreFile = ".deployignore"

// AlwaysExcluded is excluded before any other pattern: a checkout's .git
// holds its history and, in Actions, .git/config holds the token the
// checkout used. Only a later "!.git" ships it.
const AlwaysExcluded = ".git"

// Excludes decides which paths of a source tree stay out of a release,
// with .gitignore semantics: the last matching pattern wins, "!" re-includes,
// a trailing "/" matches directories only, a pattern with a "/" other than
// a trailing one is anchored at the source root, one without matches a name
// at any depth, and "**" spans directories. As in git, nothing below an
// excluded directory can be re-included (the walk does not enter it).
type Excludes struct {
	matcher gitignore.Matcher
}

// NewExcludes compiles patterns, in order, after AlwaysExcluded. Blank
// lines and "#" comments are skipped ("\#" is a literal "#").
func NewExcludes(patterns []string) (*Excludes, error) {
	ps := []gitignore.Pattern{gitignore.ParsePattern(AlwaysExcluded, nil)}
	for _, p := range patterns {
		if strings.TrimSpace(p) == "" || strings.HasPrefix(p, "#") {
			continue
		}
		if err := CheckExcludePattern(p); err != nil {
			return nil, err
		}
		ps = append(ps, gitignore.ParsePattern(p, nil))
	}
	return &Excludes{matcher: gitignore.NewMatcher(ps)}, nil
}

// Excluded reports whether rel (slash-separated, relative to the source
// root) is left out; isDir says whether it is a directory.
func (x *Excludes) Excluded(rel string, isDir bool) bool {
	return x.matcher.Match(strings.Split(rel, "/"), isDir)
}

// CheckExcludePattern reports a pattern that can never match because its
// glob is malformed (an unclosed "[", a trailing "\"), which git would
// silently ignore.
func CheckExcludePattern(p string) error {
	body := strings.TrimSuffix(strings.TrimPrefix(p, "!"), "/")
	for _, part := range strings.Split(body, "/") {
		if _, err := path.Match(part, ""); err != nil {
			return fmt.Errorf("%q is not a valid pattern (an unclosed [ or a trailing \\?)", p)
		}
	}
	return nil
}

// sourceExcludes are the patterns a walk of root applies: AlwaysExcluded,
// then root's IgnoreFile, then patterns (so the input has the last word).
func sourceExcludes(root string, patterns []string) (*Excludes, error) {
	var all []string
	data, err := os.ReadFile(filepath.Join(root, IgnoreFile))
	switch {
	case err == nil:
		sc := bufio.NewScanner(bytes.NewReader(data))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSuffix(sc.Text(), "\r")
			if strings.TrimSpace(line) != "" && !strings.HasPrefix(line, "#") {
				if err := CheckExcludePattern(line); err != nil {
					return nil, fmt.Errorf("source %s line %d: %w", IgnoreFile, n, err)
				}
			}
			all = append(all, line)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read source %s: %w", IgnoreFile, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read source %s: %w", IgnoreFile, err)
	}
	return NewExcludes(append(all, patterns...))
}
