package version

import (
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	info := func(version string, settings ...string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/atomic-deploy/atomic-deploy", Version: version}}
			for i := 0; i+1 < len(settings); i += 2 {
				bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
			}
			return bi, true
		}
	}
	const rev = "0e5e53f1a2b3c4d5e6f708192a3b4c5d6e7f8091"
	tests := []struct {
		name string
		set  string
		read func() (*debug.BuildInfo, bool)
		want string
	}{
		{"set at build time wins", "v1.2.3", info("v9.9.9", "vcs.revision", rev), "v1.2.3"},
		{"pre-release set at build time", "v1.3.0-rc.1", nil, "v1.3.0-rc.1"},
		{"go install module@v1.2.3", "", info("v1.2.3"), "v1.2.3"},
		{"go build in a checkout at a tag", "", info("v1.2.3", "vcs.revision", rev), "v1.2.3"},
		{"go build between tags: pseudo-version", "", info("v1.2.4-0.20261204153012-0e5e53f1a2b3", "vcs.revision", rev), "dev-0e5e53f1a2b3"},
		{"go build, no tag yet", "", info("v0.0.0-20261204153012-0e5e53f1a2b3+dirty", "vcs.revision", rev, "vcs.modified", "true"), "dev-0e5e53f1a2b3-dirty"},
		{"go build -buildvcs=false", "", info("(devel)"), "dev"},
		{"clean checkout", "", info("(devel)", "vcs.revision", rev, "vcs.modified", "false"), "dev-0e5e53f1a2b3"},
		{"no build info", "", func() (*debug.BuildInfo, bool) { return nil, false }, "dev"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resolve(tt.set, tt.read); got != tt.want {
				t.Errorf("resolve = %q, want %q", got, tt.want)
			}
		})
	}
}
