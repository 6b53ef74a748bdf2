package release

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// versionVar is the variable -ldflags -X sets; a typo in any build would
// silently ship "dev".
const versionVar = "-X github.com/atomic-deploy/atomic-deploy/internal/version.Version="

func read(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile("../../" + path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// Every build sets the version from the tag: make build (git describe),
// the image (the VERSION build argument) and release.yml (the pushed tag).
func TestBuildsSetTheVersion(t *testing.T) {
	if s := read(t, "Makefile"); !strings.Contains(s, versionVar+"$(VERSION)") || !strings.Contains(s, "git describe --tags --exact-match") {
		t.Errorf("Makefile does not set the version from the tag")
	}
	if s := read(t, "Dockerfile"); !strings.Contains(s, versionVar+"$VERSION") || !regexp.MustCompile(`(?m)^ARG VERSION`).MatchString(s) {
		t.Errorf("Dockerfile does not set the version from the VERSION build argument")
	}
	if s := read(t, ".github/workflows/release.yml"); !strings.Contains(s, "build-args: VERSION=${{ github.ref_name }}") {
		t.Errorf("release.yml does not pass the tag as VERSION")
	}
}

// Dependabot keeps the pinned actions, the Go modules and the Dockerfile's
// base images current.
func TestDependabotEcosystems(t *testing.T) {
	var cfg struct {
		Updates []struct {
			Ecosystem string `yaml:"package-ecosystem"`
			Directory string `yaml:"directory"`
		} `yaml:"updates"`
	}
	if err := yaml.Unmarshal([]byte(read(t, ".github/dependabot.yml")), &cfg); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, u := range cfg.Updates {
		have[u.Ecosystem+" "+u.Directory] = true
	}
	for _, want := range []string{"docker /", "github-actions /", "gomod /"} {
		if !have[want] {
			t.Errorf("dependabot.yml has no %q update", want)
		}
	}
}
