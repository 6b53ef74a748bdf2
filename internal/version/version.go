// Package version says which build of atomic-deploy is running.
package version

import (
	"regexp"
	"runtime/debug"
)

// Version is the release tag, set at build time (Makefile, Dockerfile,
// release.yml):
//
//	go build -ldflags "-X github.com/atomic-deploy/atomic-deploy/internal/version.Version=v1.2.3"
var Version string

// String is Version when it was set, else the module version `go install
// ...@v1.2.3` records, else "dev" plus the VCS revision the binary was
// built from (dev-0123abcd4567, -dirty with uncommitted changes), else "dev".
func String() string { return resolve(Version, debug.ReadBuildInfo) }

// releaseVersion is a tag that names a release (or pre-release); Go's
// pseudo-versions for untagged commits (v0.0.0-2026...-abcdef+dirty) are
// not one.
var releaseVersion = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)
var pseudoVersion = regexp.MustCompile(`-(0\.)?\d{14}-[0-9a-f]{12}$`)

func resolve(set string, read func() (*debug.BuildInfo, bool)) string {
	if set != "" {
		return set
	}
	info, ok := read()
	if !ok {
		return "dev"
	}
	if v := info.Main.Version; releaseVersion.MatchString(v) && !pseudoVersion.MatchString(v) {
		return v
	}
	s := "dev"
	for _, kv := range info.Settings {
		if kv.Key == "vcs.revision" && kv.Value != "" {
			s += "-" + kv.Value[:min(12, len(kv.Value))]
		}
	}
	for _, kv := range info.Settings {
		if kv.Key == "vcs.modified" && kv.Value == "true" && s != "dev" {
			s += "-dirty"
		}
	}
	return s
}
