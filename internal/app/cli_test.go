package app_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
	"github.com/atomic-deploy/atomic-deploy/internal/version"
)

// Flags are parsed GNU style, and a mistake is named the way it was typed.
func TestFlagParsing(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "index.html"), []byte("hi\n"), 0o644)
	refused := []struct {
		args []string
		want string
	}{
		{[]string{"deploy", "--bogus-flag"}, "atomic-deploy: unknown flag --bogus-flag\n"},
		{[]string{"--bogus-flag=1"}, "atomic-deploy: unknown flag --bogus-flag\n"},
		{[]string{"deploy", "--keep-release", "3"}, "atomic-deploy: unknown flag --keep-release; did you mean --keep-releases?\n"},
		{[]string{"plan", "--privat-key-file", "k"}, "atomic-deploy: unknown flag --privat-key-file; did you mean --private-key-file?\n"},
		{[]string{"deploy", "-path", "/x"}, "atomic-deploy: unknown flag -path; options take two dashes: --path\n"},
		{[]string{"deploy", "--path"}, "atomic-deploy: flag --path needs a value\n"},
		{[]string{"deploy", "--auto-rollback", "false"}, `atomic-deploy: unexpected argument "false"`},
		{[]string{"deploy", "--private-key-file", "/nonexistent/key"}, "atomic-deploy: --private-key-file: open /nonexistent/key: no such file or directory\n"},
		{[]string{"deploy", "--known-hosts-file", "/nonexistent/kh"}, "atomic-deploy: --known-hosts-file: open /nonexistent/kh: no such file or directory\n"},
		{[]string{"frobnicate"}, `atomic-deploy: unknown command "frobnicate"`},
	}
	for _, tt := range refused {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out := runCLI(t, nil, tt.args...)
			if code != 2 || !strings.HasPrefix(out, tt.want) || !strings.Contains(out, "Run 'atomic-deploy --help' for usage.") {
				t.Errorf("exit %d, want 2 and %q:\n%s", code, tt.want, out)
			}
			if strings.Contains(out, "provided but not defined") {
				t.Errorf("Go's flag package wording:\n%s", out)
			}
		})
	}
	// --name=value and --name value both work; a true/false option alone is true.
	for _, args := range [][]string{
		{"--path=ROOT", "--source=" + src, "--keep-releases=2", "--auto-rollback=false"},
		{"--path", "ROOT", "--source", src, "--keep-releases", "2", "--auto-rollback"},
	} {
		root := deploytest.LocalRoot(t, "site")
		for i := range args {
			args[i] = strings.Replace(args[i], "ROOT", root, 1)
		}
		code, out := runCLI(t, nil, append([]string{"deploy"}, args...)...)
		if code != 0 {
			t.Fatalf("%q: exit %d\n%s", args, code, out)
		}
		if _, err := os.Lstat(filepath.Join(root, "current")); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
}

func TestVersionFlag(t *testing.T) {
	code, out := runCLI(t, nil, "--version")
	if code != 0 || out != "atomic-deploy "+version.String()+"\n" {
		t.Errorf("exit %d, output %q", code, out)
	}
	// A test binary has no version set: dev, with the revision when Go recorded one.
	if !regexp.MustCompile(`^dev(-[0-9a-f]{12}(-dirty)?)?$`).MatchString(version.String()) {
		t.Errorf("version %q", version.String())
	}
}

// --help follows the Security model: keys come from a file or the
// environment, host keys from a file checked out of band; and it names both
// switches of the remote-operation trace.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"deploy", "--help"}} {
		code, out := runCLI(t, nil, args...)
		if code != 0 || !strings.Contains(out, "EXAMPLES") {
			t.Fatalf("%q: exit %d\n%s", args, code, out)
		}
		for _, want := range []string{"--private-key-file", "--known-hosts-file", "ATOMIC_DEPLOY_PRIVATE_KEY=", "ATOMIC_DEPLOY_TRACE=1", "RUNNER_DEBUG=1", "--version", "--option=value"} {
			if !strings.Contains(out, want) {
				t.Errorf("%q: help lacks %q", args, want)
			}
		}
		for _, bad := range []string{"$(cat", "--private-key \"", "--private-key '", "$(ssh-keyscan", "--known-hosts \""} {
			if strings.Contains(out, bad) {
				t.Errorf("%q: help shows %q: a secret or an unchecked host key on a command line", args, bad)
			}
		}
	}
}

// releases: newest first, ages and counts for people, and the version.
func TestReleasesOutput(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "index.html"), []byte("hi\n"), 0o644)
	root := deploytest.LocalRoot(t, "site")
	for _, id := range []string{"20200101000000", "20200301120000"} {
		if code, out := runCLI(t, nil, "deploy", "--path", root, "--source", src, "--release-id", id); code != 0 {
			t.Fatalf("deploy %s: exit %d\n%s", id, code, out)
		}
	}
	code, out := runCLI(t, nil, "releases", "--path", root)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	age := func(id string) string {
		tm, _ := time.Parse("20060102150405", id)
		return humanize.Time(tm)
	}
	lines := strings.Split(out, "\n")
	want := []*regexp.Regexp{
		regexp.MustCompile(`^local: 2 releases$`),
		regexp.MustCompile(`^\s+RELEASE\s+STATUS\s+AGE\s+REVISION$`),
		regexp.MustCompile(`^  \*\s+20200301120000\s+success\s+` + age("20200301120000") + `\s+\S+$`),
		regexp.MustCompile(`^\s+20200101000000\s+success\s+` + age("20200101000000") + `\s+\S+$`),
		regexp.MustCompile(`^\(atomic-deploy ` + regexp.QuoteMeta(version.String()) + `\)$`),
	}
	if len(lines) < len(want) {
		t.Fatalf("output:\n%s", out)
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d = %q, want %s", i+1, lines[i], re)
		}
	}
	if !strings.Contains(age("20200101000000"), "years ago") {
		t.Errorf("age %q", age("20200101000000"))
	}
}

// The job summary ends with the version that wrote it.
func TestSummaryFooterNamesTheVersion(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "index.html"), []byte("hi\n"), 0o644)
	r := runAction(t, actionEnv(t, map[string]string{"path": deploytest.LocalRoot(t, "site"), "source": src}))
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stdout)
	}
	if !strings.Contains(r.summaryRaw, "<sub>atomic-deploy "+version.String()+"</sub>") {
		t.Errorf("summary lacks the version:\n%s", r.summaryRaw)
	}
}
