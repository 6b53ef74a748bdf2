package config_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
)

// fakePHP is a php on PATH that records each artisan command line and
// answers like Laravel would, as the environment says.
const fakePHP = `#!/bin/sh
while [ "$1" = -d ]; do
  case "$2" in auto_prepend_file=*) cp "${2#auto_prepend_file=}" "$PREPENDED" ;; esac
  shift 2
done
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
	out, artisan, _, err = runHookIn(t, t.TempDir(), script, files, env...)
	return out, artisan, err
}

// runHookIn is runHook in dir; prepended is the file artisan was given
// with -d auto_prepend_file, copied (dir/prepended.php, if any).
func runHookIn(t *testing.T, dir, script string, files map[string]string, env ...string) (out string, artisan []string, prepended string, err error) {
	t.Helper()
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
	prepended = filepath.Join(dir, "prepended.php")
	cmd.Env = append([]string{"PATH=" + bin + ":/usr/bin:/bin", "ARTISAN_LOG=" + log, "PREPENDED=" + prepended, "TMPDIR=" + dir}, env...)
	b, err := cmd.CombinedOutput()
	data, _ := os.ReadFile(log)
	return string(b), strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(data)), " ", "_")), prepended, err
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

// TestLaravelMaintenanceDownWritesWhole runs the file that down prepends
// to artisan in a real php: a file_put_contents called from Laravel's
// namespaces replaces the file by a rename (a new inode, never an empty
// file in between), appends still append, and down leaves no temp file.
func TestLaravelMaintenanceDownWritesWhole(t *testing.T) {
	php, err := exec.LookPath("php")
	if err != nil {
		t.Fatalf("php: %v (scripts/test.sh installs php-cli)", err)
	}
	dir := t.TempDir()
	out, artisan, prepended, err := runHookIn(t, dir, config.LaravelMaintenanceDown, nil, "PREVIOUS_RELEASE_ID=20261125231842")
	if err != nil || strings.Join(artisan, " ") != "down" {
		t.Fatalf("down: %v, artisan ran %q\n%s", err, artisan, out)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "tmp.*")); len(left) > 0 {
		t.Errorf("down left %v behind", left)
	}
	for _, ns := range []string{`Illuminate\Foundation\Console`, `Illuminate\Foundation`} {
		t.Run(ns, func(t *testing.T) {
			work := t.TempDir()
			down := filepath.Join(work, "down")
			os.WriteFile(down, []byte("old"), 0o644)
			before := testutil.Inode(t, down)
			script := filepath.Join(t.TempDir(), "write.php")
			code := `<?php
namespace ` + ns + `;
$f = getenv("DOWN");
echo file_put_contents($f, "{\"status\": 503}"), " ", file_put_contents($f, "\n", FILE_APPEND);`
			os.WriteFile(script, []byte(code), 0o644) // php -r would skip the prepended file
			cmd := exec.Command(php, "-d", "auto_prepend_file="+prepended, script)
			cmd.Env = append(os.Environ(), "DOWN="+down)
			b, err := cmd.CombinedOutput()
			if err != nil || string(b) != "15 1" {
				t.Fatalf("php: %v, printed %q, want the bytes written: \"15 1\"", err, b)
			}
			if got, _ := os.ReadFile(down); string(got) != "{\"status\": 503}\n" {
				t.Errorf("down holds %q", got)
			}
			if testutil.Inode(t, down) == before {
				t.Errorf("down was written in place, not renamed over")
			}
			if entries, _ := os.ReadDir(work); len(entries) != 1 {
				t.Errorf("left in the directory: %v", entries)
			}
		})
	}
}
