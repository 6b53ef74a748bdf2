package config

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
)

// ValidReleaseID accepts only ids of the form YYYYMMDDHHMMSS.
func ValidReleaseID(id string) error {
	if !releaseIDRE.MatchString(id) {
		return fmt.Errorf("%q is not a release id (YYYYMMDDHHMMSS, UTC, e.g. 20261125231842)", id)
	}
	if _, err := time.Parse(release.IDLayout, id); err != nil {
		return fmt.Errorf("%q is not a valid timestamp (YYYYMMDDHHMMSS)", id)
	}
	return nil
}

// splitList splits on newlines (and commas when commas is true), trims, and drops blanks.
func splitList(s string, commas bool) []string {
	f := func(r rune) bool { return r == '\n' || r == '\r' || (commas && r == ',') }
	var out []string
	for _, part := range strings.FieldsFunc(s, f) {
		if p := strings.TrimSpace(part); p != "" && !strings.HasPrefix(p, "#") {
			out = append(out, p)
		}
	}
	return out
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true", "yes", "1", "on":
		return true, nil
	case "false", "no", "0", "off", "":
		return false, nil
	}
	return false, fmt.Errorf("%q is not true or false", s)
}

// ParseDuration accepts Go durations ("30s", "2m") and bare seconds ("30").
func ParseDuration(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration (e.g. 30s, 2m)", s)
	}
	return d, nil
}

func validDeployPath(p string) (string, error) {
	switch {
	case p == "":
		return "", errors.New("the deploy root is required, e.g. /var/www/app")
	case strings.ContainsAny(p, "\x00\n\r"):
		return "", errors.New("contains a control character")
	case !strings.HasPrefix(p, "/"):
		return "", fmt.Errorf("%q must be an absolute path, e.g. /var/www/app", p)
	}
	clean := path.Clean(p)
	if clean == "/" {
		return "", errors.New("refusing to use / as the deploy root")
	}
	return clean, nil
}

// relPaths parses a list of paths that must stay inside a release.
func relPaths(s, input string, fail func(string, string, ...any)) []string {
	var out []string
	for _, p := range splitList(s, false) {
		if err := ValidRelPath(p); err != nil {
			fail(input, "%v", err)
			continue
		}
		out = append(out, path.Clean(p))
	}
	return out
}

// ValidRelPath accepts a relative path that stays inside its base directory.
func ValidRelPath(p string) error {
	switch {
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q must be relative to the release, not absolute", p)
	case strings.ContainsAny(p, "\x00\n\r"):
		return fmt.Errorf("%q contains a control character", p)
	}
	clean := path.Clean(p)
	if clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
		return fmt.Errorf("%q must name something inside the release", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fmt.Errorf("%q must not contain ..", p)
		}
	}
	return nil
}

// checkOverlap refuses shared paths that are listed twice or inside one
// another. Each error names a real input: shared-dirs when both paths are
// directories, shared-files otherwise.
func checkOverlap(dirs, files []string, fail func(string, string, ...any)) {
	paths := append(append([]string{}, dirs...), files...)
	for i, a := range paths {
		for j, b := range paths[i+1:] {
			if a == b || strings.HasPrefix(b, a+"/") || strings.HasPrefix(a, b+"/") {
				input := "shared-files"
				if i+1+j < len(dirs) {
					input = "shared-dirs"
				}
				fail(input, "%q and %q overlap; list each shared path once", a, b)
			}
		}
	}
}
