package shell_test

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/shell"
)

// sh runs script with /bin/sh -c and returns its stdout.
func sh(t testing.TB, script string) (string, error) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent", "IFS= \t\n"}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		return out.String(), &shError{err: err, stderr: errOut.String()}
	}
	return out.String(), nil
}

type shError struct {
	err    error
	stderr string
}

func (e *shError) Error() string { return e.err.Error() + ": " + e.stderr }

// roundTrip asks a real shell to print Quote(s) back.
func roundTrip(t testing.TB, s string) string {
	t.Helper()
	got, err := sh(t, "printf %s "+shell.Quote(s))
	if err != nil {
		t.Fatalf("sh -c printf %%s %s: %v", shell.Quote(s), err)
	}
	return got
}

var nasty = []string{
	"",
	" ",
	"plain",
	"two words",
	"  leading and trailing  ",
	"'",
	"''",
	`"`,
	`it's`,
	`'\''`,
	`"$HOME"`,
	"$HOME",
	"${HOME:-x}",
	"$(id)",
	"$(rm -rf /tmp/should-not-exist)",
	"`id`",
	"a\nb",
	"\n",
	"trailing newline\n\n",
	"tab\there",
	"carriage\rreturn",
	"\\",
	`\\`,
	`\n`,
	`back\slash'quote`,
	"*",
	"/*",
	"?",
	"[a-z]*",
	"~",
	"~root",
	"~/x",
	"-n",
	"-e",
	"--",
	"-rf /",
	"--help",
	"a;b",
	"a|b",
	"a&b",
	"a&&b||c",
	"a>b",
	"<b",
	"2>&1",
	"(sub)",
	"{a,b}",
	"#comment",
	"a #comment",
	"!",
	"!!",
	"%s%d%n",
	"=",
	"A=b",
	"@",
	"héllo wörld",
	"日本語",
	"emoji 🚀",
	"\u200b zero width",
	"\x01\x02\x7f",
	"\xff\xfe invalid utf-8",
	"release/20261125231842",
	"/var/www/my app/releases/20261125231842",
}

func TestQuoteRoundTrip(t *testing.T) {
	for _, s := range nasty {
		if got := roundTrip(t, s); got != s {
			t.Errorf("sh printed %q for Quote(%q) = %s", got, s, shell.Quote(s))
		}
	}
}

func TestQuoteIsOneWord(t *testing.T) {
	// Every value must stay one argument, however many spaces or globs it has.
	for _, s := range nasty {
		got, err := sh(t, `set -- `+shell.Quote(s)+`; printf %s "$#"`)
		if err != nil {
			t.Fatal(err)
		}
		if got != "1" {
			t.Errorf("Quote(%q) = %s is %s words", s, shell.Quote(s), got)
		}
	}
}

func TestQuoteLeavesSafeWordsAlone(t *testing.T) {
	for _, s := range []string{"abc", "/var/www/app", "20261125231842", "user@host:22", "a,b", "x=y", "a+b", "100%", "file.tar.gz", "-n"} {
		if got := shell.Quote(s); got != s {
			t.Errorf("Quote(%q) = %s, want it unquoted", s, got)
		}
	}
	for _, s := range []string{"", " ", "a b", "$x", "*", "~", "'", "é"} {
		if got := shell.Quote(s); !strings.HasPrefix(got, "'") {
			t.Errorf("Quote(%q) = %s, want it quoted", s, got)
		}
	}
}

func TestCommand(t *testing.T) {
	args := []string{"it's", "$(id)", "a b", "", "*", "-n", "x\ny", "`id`", `\`}
	got, err := sh(t, shell.Command(append([]string{"printf", "<%s>"}, args...)...))
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, a := range args {
		want.WriteString("<" + a + ">")
	}
	if got != want.String() {
		t.Errorf("Command printed %q, want %q", got, want.String())
	}
	if c := shell.Command("rm", "-rf", "--", "/var/www/app/releases/2026 1"); c != `rm -rf -- '/var/www/app/releases/2026 1'` {
		t.Errorf("Command = %s", c)
	}
}

func TestExports(t *testing.T) {
	env := map[string]string{"B": "it's $(id)\nline 2", "A": ""}
	text := shell.Exports(env)
	if text != "export A=''\nexport B='it'\\''s $(id)\nline 2'\n" {
		t.Errorf("Exports = %q", text)
	}
	got, err := sh(t, text+`printf '%s|%s' "$A" "$B"`)
	if err != nil || got != "|"+env["B"] {
		t.Errorf("the shell read %q (%v)", got, err)
	}
}

// FuzzQuoteRoundTrip checks with a real /bin/sh that Quote(s) is one word
// that expands to exactly s.
func FuzzQuoteRoundTrip(f *testing.F) {
	for _, s := range nasty {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsRune(s, 0) {
			t.Skip("sh cannot carry NUL in an argument")
		}
		q := shell.Quote(s)
		got, err := sh(t, `set -- `+q+`; printf '%s:' "$#"; printf %s "$1"`)
		if err != nil {
			t.Fatalf("Quote(%q) = %s: %v", s, q, err)
		}
		if want := "1:" + s; got != want {
			t.Fatalf("Quote(%q) = %s; sh saw %q", s, q, got)
		}
	})
}
