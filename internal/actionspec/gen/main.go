// Command gen rewrites the generated regions of action.yml and README.md
// from internal/config's tables. Run it from the module root: make generate.
package main

import (
	"fmt"
	"os"

	"github.com/atomic-deploy/atomic-deploy/internal/actionspec"
)

func main() {
	files := []struct {
		path    string
		regions []actionspec.Region
	}{
		{"action.yml", actionspec.ActionRegions},
		{"README.md", actionspec.ReadmeRegions},
	}
	for _, f := range files {
		old, err := os.ReadFile(f.path)
		if err != nil {
			fail(err)
		}
		text, err := actionspec.Apply(string(old), f.regions)
		if err != nil {
			fail(fmt.Errorf("%s: %w", f.path, err))
		}
		if text == string(old) {
			continue
		}
		if err := os.WriteFile(f.path, []byte(text), 0o644); err != nil {
			fail(err)
		}
		fmt.Println("updated", f.path)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gen:", err)
	os.Exit(1)
}
