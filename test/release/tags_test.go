// Package release tests how a release is built and tagged: which tags a
// pushed tag moves (.github/workflows/release.yml), the version every
// build stamps, and what Dependabot keeps fresh.
package release

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const script = "../../scripts/release-tags.sh"

// The major tag vX is what every `uses: ...@vX` workflow runs: only a final
// release vX.Y.Z may move it. release.yml's trigger v*.*.* also matches
// pre-releases, which get their own tag only.
func TestReleaseTags(t *testing.T) {
	tests := []struct {
		tag          string
		major, minor string // "" = not moved
		refused      bool
	}{
		{tag: "v1.2.3", major: "v1", minor: "v1.2"},
		{tag: "v0.1.0", major: "v0", minor: "v0.1"},
		{tag: "v10.20.30", major: "v10", minor: "v10.20"},
		{tag: "v1.3.0-rc.1"},
		{tag: "v1.3.0-beta"},
		{tag: "v2.0.0-alpha.1.2"},
		{tag: "v1.3.0+build.5"},
		{tag: "v1.3.0-rc.1+build.5"},
		{tag: "v1.2", refused: true},
		{tag: "1.2.3", refused: true},
		{tag: "v1.2.3.4", refused: true},
		{tag: "vfoo.bar.baz", refused: true},
		{tag: "v1.x.3", refused: true},
		{tag: "v1.2.3-", refused: true},
		{tag: "v1.2.3\nv9", refused: true},
		{tag: "v1.2.3 ", refused: true},
	}
	for _, tt := range tests {
		t.Run(tt.tag, func(t *testing.T) {
			var stderr strings.Builder
			cmd := exec.Command(script, tt.tag)
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if tt.refused {
				if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
					t.Fatalf("err = %v, want exit status 2; output %q", err, out)
				}
				if !strings.Contains(stderr.String(), "not a release tag") {
					t.Errorf("stderr %q does not say why", stderr.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("%v: %s", err, stderr.String())
			}
			want := "major=" + tt.major + "\nminor=" + tt.minor + "\n"
			if string(out) != want {
				t.Errorf("output %q, want %q", out, want)
			}
		})
	}
}

// The workflow takes the decision from the script: the major tag is moved
// (git tag and image tags) only when the script named one.
func TestReleaseWorkflowUsesTheDecision(t *testing.T) {
	data, err := os.ReadFile("../../.github/workflows/release.yml")
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		Jobs map[string]struct {
			Steps []struct {
				ID   string            `yaml:"id"`
				Name string            `yaml:"name"`
				Uses string            `yaml:"uses"`
				Run  string            `yaml:"run"`
				Env  map[string]string `yaml:"env"`
				With map[string]string `yaml:"with"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal(data, &wf); err != nil {
		t.Fatal(err)
	}
	steps := wf.Jobs["image"].Steps
	if len(steps) < 2 || steps[1].ID != "tags" || !strings.Contains(steps[1].Run, `scripts/release-tags.sh "$GITHUB_REF_NAME" >> "$GITHUB_OUTPUT"`) {
		t.Fatalf("the image job's first step after checkout must be the tags decision (id: tags)")
	}
	const enabled = "enable=${{ steps.tags.outputs.major != '' }}"
	checked := 0
	for _, s := range steps {
		if strings.HasPrefix(s.Uses, "docker/metadata-action@") {
			for _, line := range strings.Split(strings.TrimSpace(s.With["tags"]), "\n") {
				if strings.Contains(line, "{{major}}") && !strings.Contains(line, enabled) {
					t.Errorf("image tag %q is not limited to final releases (%s)", line, enabled)
				}
			}
			if s.With["flavor"] != "latest=${{ steps.tags.outputs.major != '' }}" {
				t.Errorf("flavor %q: latest must follow the decision too", s.With["flavor"])
			}
			checked++
		}
		if strings.Contains(s.Run, "git tag -f") {
			if s.Env["MAJOR"] != "${{ steps.tags.outputs.major }}" {
				t.Errorf("step %q moves tags without MAJOR from the decision", s.Name)
			}
			if !strings.Contains(s.Run, "if [ -n \"$MAJOR\" ]; then\n  git tag -f \"$MAJOR\"") {
				t.Errorf("step %q does not move the major tag only when MAJOR is set:\n%s", s.Name, s.Run)
			}
			checked++
		}
	}
	if checked != 2 {
		t.Errorf("found %d of the 2 steps that tag (metadata and git)", checked)
	}
}
