package actionspec_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/atomic-deploy/atomic-deploy/internal/actionspec"
	"github.com/atomic-deploy/atomic-deploy/internal/config"
)

const root = "../.."

// actionFile is the metadata syntax for a container action; unknown keys
// are errors, so a misspelt one does not go unnoticed.
type actionFile struct {
	Name        string
	Author      string
	Description string
	Branding    struct{ Icon, Color string }
	Inputs      map[string]struct {
		Description        string
		Required           bool
		Default            *string
		DeprecationMessage string `yaml:"deprecationMessage"`
	}
	Outputs map[string]struct{ Description string }
	Runs    struct {
		Using          string
		Image          string
		Args           []string
		Env            map[string]string
		Entrypoint     string
		PreEntrypoint  string `yaml:"pre-entrypoint"`
		PostEntrypoint string `yaml:"post-entrypoint"`
	}
}

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func loadAction(t *testing.T) actionFile {
	t.Helper()
	var a actionFile
	dec := yaml.NewDecoder(strings.NewReader(readFile(t, "action.yml")))
	dec.KnownFields(true) // a misspelt top-level key is an error
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("action.yml: %v", err)
	}
	return a
}

const fix = "edit internal/config/inputs.go, then run `make generate`"

func TestActionInputsMatchConfig(t *testing.T) {
	a := loadAction(t)
	want := map[string]config.Input{}
	for _, in := range config.Inputs {
		want[in.Name] = in
		got, ok := a.Inputs[in.Name]
		if !ok {
			t.Errorf("input %q is in config.Inputs but not in action.yml (%s)", in.Name, fix)
			continue
		}
		def := ""
		if got.Default != nil {
			def = *got.Default
		}
		if def != in.Default {
			t.Errorf("input %q: action.yml default %q, config.Inputs default %q (%s)", in.Name, def, in.Default, fix)
		}
		if got.Description != in.Description {
			t.Errorf("input %q: action.yml description %q, config.Inputs %q (%s)", in.Name, got.Description, in.Description, fix)
		}
		if got.Required != actionspec.Required[in.Name] {
			t.Errorf("input %q: required is %v in action.yml", in.Name, got.Required)
		}
		if got.Required && got.Default != nil {
			t.Errorf("input %q is required and has a default", in.Name)
		}
	}
	for name := range a.Inputs {
		if _, ok := want[name]; !ok {
			t.Errorf("action.yml declares input %q, which config.Inputs does not have (%s)", name, fix)
		}
	}
}

func TestActionOutputsMatchConfig(t *testing.T) {
	a := loadAction(t)
	want := map[string]bool{}
	for _, out := range config.Outputs {
		want[out.Name] = true
		got, ok := a.Outputs[out.Name]
		if !ok {
			t.Errorf("output %q is in config.Outputs but not in action.yml (%s)", out.Name, fix)
			continue
		}
		if got.Description != out.Description {
			t.Errorf("output %q: action.yml description %q, config.Outputs %q (%s)", out.Name, got.Description, out.Description, fix)
		}
	}
	for name := range a.Outputs {
		if !want[name] {
			t.Errorf("action.yml declares output %q, which config.Outputs does not have (%s)", name, fix)
		}
	}
}

func TestActionRunsDocker(t *testing.T) {
	a := loadAction(t)
	if a.Runs.Using != "docker" {
		t.Errorf("runs.using = %q, want docker", a.Runs.Using)
	}
	// On branches the image is built from source; release.yml rewrites this
	// line to a pinned digest only on the commit behind a release tag.
	if a.Runs.Image != "Dockerfile" && !regexp.MustCompile(`^docker://ghcr\.io/[^/]+/atomic-deploy@sha256:[0-9a-f]{64}$`).MatchString(a.Runs.Image) {
		t.Errorf("runs.image = %q, want Dockerfile (or a digest-pinned ghcr.io image on a release tag)", a.Runs.Image)
	}
	if a.Name == "" || a.Description == "" || a.Branding.Icon == "" || a.Branding.Color == "" {
		t.Errorf("name, description and branding are needed for the Marketplace: %+v", a)
	}
	if n := len(a.Description); n > 125 {
		t.Errorf("description is %d characters; the Marketplace shows 125", n)
	}
}

// Every generated region is exactly what the table renders, so the README
// and action.yml cannot drift by hand edits either.
func TestGeneratedRegionsUpToDate(t *testing.T) {
	for file, regions := range map[string][]actionspec.Region{"action.yml": actionspec.ActionRegions, "README.md": actionspec.ReadmeRegions} {
		text := readFile(t, file)
		got, err := actionspec.Apply(text, regions)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if got != text {
			t.Errorf("%s is out of date with internal/config/inputs.go: run `make generate`", file)
		}
	}
}

// tableNames returns the names in the first column of the Markdown table
// that follows heading in the README.
func tableNames(t *testing.T, readme, heading string) map[string]bool {
	t.Helper()
	i := strings.Index(readme, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no %q heading", heading)
	}
	names := map[string]bool{}
	inTable := false
	cell := regexp.MustCompile("^\\| `([a-z0-9-]+)` \\|")
	for _, line := range strings.Split(readme[i+len(heading)+2:], "\n") {
		if strings.HasPrefix(line, "|") {
			inTable = true
			if m := cell.FindStringSubmatch(line); m != nil {
				names[m[1]] = true
			}
			continue
		}
		if inTable || strings.HasPrefix(line, "#") {
			break
		}
	}
	if len(names) == 0 {
		t.Fatalf("README.md: no table rows under %q", heading)
	}
	return names
}

func TestReadmeTables(t *testing.T) {
	readme := readFile(t, "README.md")
	for _, c := range []struct {
		heading string
		list    []config.Input
	}{{"### Inputs", config.Inputs}, {"### Outputs", config.Outputs}} {
		names := tableNames(t, readme, c.heading)
		want := map[string]bool{}
		for _, in := range c.list {
			want[in.Name] = true
			if !names[in.Name] {
				t.Errorf("README.md %s table lacks %q (%s)", c.heading, in.Name, fix)
			}
		}
		for n := range names {
			if !want[n] {
				t.Errorf("README.md %s table lists %q, which internal/config does not have", c.heading, n)
			}
		}
	}
}

// Every declared output is written by internal/app: an output in the table
// that nothing sets would be empty for every user.
func TestOutputsWrittenByApp(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(root, "internal", "app", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no sources in internal/app (%v)", err)
	}
	var src strings.Builder
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(b)
	}
	for _, out := range config.Outputs {
		if !strings.Contains(src.String(), "Name: "+strconv.Quote(out.Name)) {
			t.Errorf("output %q is declared but internal/app never writes it (no `Name: %q`)", out.Name, out.Name)
		}
	}
}
