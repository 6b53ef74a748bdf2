package actionspec_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
)

// TestExamplesUseTheAction: every step of the example workflows that uses
// the action gives only its inputs, a mode it has (activate with the
// release-id it needs), and reads only outputs it sets.
func TestExamplesUseTheAction(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(root, "examples/workflows/*.yml"))
	if len(files) == 0 {
		t.Fatal("no example workflows")
	}
	inputs, outputs := map[string]bool{}, map[string]bool{}
	for _, in := range config.Inputs {
		inputs[in.Name] = true
	}
	for _, out := range config.Outputs {
		outputs[out.Name] = true
	}
	modes := []string{config.ModeDeploy, config.ModePrepare, config.ModeActivate, config.ModeRollback, config.ModeUnlock}
	readsOutput := regexp.MustCompile(`steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)`)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var wf struct {
				Jobs map[string]struct {
					Steps []struct {
						ID   string
						Uses string
						With map[string]string
					}
				}
			}
			if err := yaml.Unmarshal(data, &wf); err != nil {
				t.Fatal(err)
			}
			ours := map[string]bool{}
			used := 0
			for job, j := range wf.Jobs {
				for _, s := range j.Steps {
					if !regexp.MustCompile(`^atomic-deploy/atomic-deploy@v\d+$`).MatchString(s.Uses) {
						continue
					}
					used++
					ours[s.ID] = true
					for name := range s.With {
						if !inputs[name] {
							t.Errorf("job %s gives %s, which is not an input", job, name)
						}
					}
					mode := s.With["mode"]
					if mode != "" && !slices.Contains(modes, mode) {
						t.Errorf("job %s: mode %q", job, mode)
					}
					if mode == config.ModeActivate && s.With["release-id"] == "" {
						t.Errorf("job %s: mode activate without release-id", job)
					}
				}
			}
			if used == 0 {
				t.Error("the example does not use atomic-deploy/atomic-deploy@v1")
			}
			for _, m := range readsOutput.FindAllStringSubmatch(string(data), -1) {
				if ours[m[1]] && !outputs[m[2]] {
					t.Errorf("reads steps.%s.outputs.%s, which the action does not set", m[1], m[2])
				}
			}
		})
	}
}
