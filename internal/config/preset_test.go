package config_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
)

// fakePHP is a php on PATH that records each artisan command line and
// answers like Laravel would, as the environment says.
const fakePHP = `#!/bin/sh
shift # artisan
echo "$*" >> "$ARTISAN_LOG"
case "$*" in
"help event:cache") [ -n "$HAS_EVENT_CACHE" ] ;;
"storage:link") ln -s "$PWD/storage/app/public" public/storage ;;
"$FAIL_ON") echo "$* failed" >&2; exit 1 ;;
*) echo "ran $*" ;;
esac
`

// runHook runs a preset script the way a deploy does (sh -e in the
// release directory) against a fake php, and returns its output and the
// artisan commands it ran.
func runHook(t *testing.T, script string, files map[string]string, env ...string) (out string, artisan []string, err error) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	rel := filepath.Join(dir, "release")
	for _, d := range []string{bin, filepath.Join(rel, "public"), filepath.Join(rel, "config")} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(bin, "php"), []byte(fakePHP), 0o755)
	for name, content := range files {
		os.WriteFile(filepath.Join(rel, name), []byte(content), 0o644)
	}
	log := filepath.Join(dir, "artisan.log")
	cmd := exec.Command("/bin/sh", "-ec", script)
	cmd.Dir = rel
	cmd.Env = append([]string{"PATH=" + bin + ":/usr/bin:/bin", "ARTISAN_LOG=" + log}, env...)
	b, err := cmd.CombinedOutput()
	data, _ := os.ReadFile(log)
	return string(b), strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(data)), " ", "_")), err
}

func TestLaravelPresetSteps(t *testing.T) {
	linked := map[string]string{"config/filesystems.php": "'links' => [\n    public_path('storage') => storage_path('app/public'),\n],\n"}
	tests := []struct {
		name    string
		script  string
		files   map[string]string
		env     []string
		artisan []string
		says    []string
		fails   bool
	}{
		{
			name: "event:cache and storage:link where the app has them", script: config.LaravelBeforeActivate, files: linked, env: []string{"HAS_EVENT_CACHE=1"},
			artisan: []string{"config:cache", "route:cache", "view:cache", "help_event:cache", "event:cache", "storage:link"},
			says:    []string{"> php artisan config:cache\nran config:cache", "> php artisan event:cache\nran event:cache", "> php artisan storage:link"},
		},
		{
			name: "skipped where it has not", script: config.LaravelBeforeActivate,
			files:   map[string]string{"config/filesystems.php": "'disks' => ['local' => ['root' => storage_path('app')]],\n"},
			artisan: []string{"config:cache", "route:cache", "view:cache", "help_event:cache"},
			says:    []string{"event:cache: skipped, this Laravel version has no event:cache", "storage:link: skipped, config/filesystems.php links no public/storage"},
		},
		{
			name: "storage:link once: the release has public/storage", script: config.LaravelBeforeActivate + "\n" + config.LaravelBeforeActivate, files: linked,
			artisan: []string{"config:cache", "route:cache", "view:cache", "help_event:cache", "storage:link", "config:cache", "route:cache", "view:cache", "help_event:cache"},
			says:    []string{"storage:link: skipped, public/storage is in the release already"},
		},
		{
			name: "a failing step ends the hook", script: config.LaravelBeforeActivate, files: linked, env: []string{"FAIL_ON=route:cache"},
			artisan: []string{"config:cache", "route:cache"}, says: []string{"route:cache failed"}, fails: true,
		},
		{
			name: "down when a release is live", script: config.LaravelMaintenanceDown, env: []string{"PREVIOUS_RELEASE_ID=20261125231842"},
			artisan: []string{"down"}, says: []string{"> php artisan down (release 20261125231842 is live"},
		},
		{
			name: "no down on a first deploy", script: config.LaravelMaintenanceDown, env: []string{"PREVIOUS_RELEASE_ID="},
		},
		{name: "up", script: config.LaravelMaintenanceUp, artisan: []string{"up"}, says: []string{"> php artisan up\nran up"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, artisan, err := runHook(t, tt.script, tt.files, tt.env...)
			if (err != nil) != tt.fails {
				t.Fatalf("exit: %v, want failure %v\n%s", err, tt.fails, out)
			}
			if strings.Join(artisan, " ") != strings.Join(tt.artisan, " ") {
				t.Errorf("artisan ran %q, want %q\n%s", artisan, tt.artisan, out)
			}
			for _, s := range tt.says {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
		})
	}
}
