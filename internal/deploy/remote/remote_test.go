package remote

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// named are the statuses status.go gives a name, by number.
var named = map[int]string{
	StatusLogNotAppended: "StatusLogNotAppended", StatusTailCut: "StatusTailCut",
	StatusCurrentNotLink: "StatusCurrentNotLink", StatusNoFlock: "StatusNoFlock", StatusLockBusy: "StatusLockBusy",
	StatusWritable: "StatusWritable", StatusManifestDelta: "StatusManifestDelta", StatusNotSwitched: "StatusNotSwitched",
	StatusSwitchedNotRecorded: "StatusSwitchedNotRecorded",
}

// Every exit status a script gives its own meaning to has a name, and every
// name is used by a script.
func TestEveryStatusHasAName(t *testing.T) {
	exit := regexp.MustCompile(`\b(?:exit|return) ([0-9]+)\b`)
	used := map[int]bool{}
	scripts, _ := fs.Glob(files, "*.sh")
	defs, _ := fs.Glob(files, "lib/*.sh")
	for _, name := range append(scripts, defs...) {
		text, _ := files.ReadFile(name)
		for _, m := range exit.FindAllStringSubmatch(string(text), -1) {
			n, _ := strconv.Atoi(m[1])
			used[n] = true
			if _, ok := named[n]; !ok && n > 1 {
				t.Errorf("%s ends with %d, which status.go does not name", name, n)
			}
		}
	}
	for n, name := range named {
		if !used[n] {
			t.Errorf("%s (%d) is used by no script", name, n)
		}
	}
}

// Every script is loaded, says at its top what it is called, and holds no
// Go formatting verb (nothing is put together from values).
func TestScriptsAreConstantAndNamed(t *testing.T) {
	all := []Script{Holder, Upload, Hook, Writable, GNUTools, EndHolder, Seal}
	scripts, _ := fs.Glob(files, "*.sh")
	if len(all) != len(scripts) {
		t.Errorf("%d scripts loaded, %d files", len(all), len(scripts))
	}
	for _, s := range all {
		if !strings.Contains(s.text, "# atomic-deploy:"+s.name) {
			t.Errorf("%s.sh does not start by naming itself atomic-deploy:%s", s.name, s.name)
		}
		if regexp.MustCompile(`%\[[0-9]+\]|%!`).MatchString(s.text) {
			t.Errorf("%s.sh holds a Go formatting verb", s.name)
		}
		if c := s.Command("a"); c.Name != s.name || c.Script != s.text || len(c.Args) != 1 {
			t.Errorf("%s: Command = %+v", s.name, c)
		}
	}
}

// shellcheck finds nothing in the scripts, read as POSIX sh. make test
// installs it; elsewhere the test skips without it.
func TestShellcheck(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		if os.Getenv("ATOMIC_DEPLOY_REQUIRE_SSHD") == "1" {
			t.Fatal("shellcheck is not installed (make test installs it)")
		}
		t.Skip("shellcheck is not installed")
	}
	scripts, _ := filepath.Glob("*.sh")
	lib, _ := filepath.Glob("lib/*.sh")
	out, err := exec.Command("shellcheck", append(append([]string{"-s", "sh"}, scripts...), lib...)...).CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}
