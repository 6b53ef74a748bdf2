package shell_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
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

func TestScript(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, `my "app" it's $(id) `+"`x`")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"RELEASE_ID":   "20261125231842",
		"RELEASE_PATH": dir,
		"QUOTES":       `it's "quoted" '\''`,
		"MULTI":        "line 1\nline 2\n\nline 4\n",
		"DOLLAR":       "$HOME $(id) `id` ${x:-y}",
		"BACKSLASH":    `a\nb\\c\`,
		"EMPTY":        "",
		"GLOB":         "* ? [a]",
	}
	// The user's own script uses both kinds of quotes, a here-document and
	// a pipe; it prints every variable between markers.
	user := `set -u
printf '[%s]' "$(pwd)"
for v in RELEASE_ID RELEASE_PATH QUOTES MULTI DOLLAR BACKSLASH EMPTY GLOB; do
  eval "val=\${$v}"
  printf "<%s=%s>" "$v" "$val"
done
cat <<'EOF' | tr a-z A-Z
it's "here"
EOF
echo "done: 'single' in double"
`
	got, err := sh(t, shell.Script(dir, env, user))
	if err != nil {
		t.Fatalf("script failed: %v\n%s", err, shell.Script(dir, env, user))
	}
	var want strings.Builder
	want.WriteString("[" + dir + "]")
	for _, k := range []string{"RELEASE_ID", "RELEASE_PATH", "QUOTES", "MULTI", "DOLLAR", "BACKSLASH", "EMPTY", "GLOB"} {
		want.WriteString("<" + k + "=" + env[k] + ">")
	}
	want.WriteString("IT'S \"HERE\"\ndone: 'single' in double\n")
	if got != want.String() {
		t.Errorf("script printed\n%q\nwant\n%q", got, want.String())
	}
}

func TestScriptStopsAtFirstFailure(t *testing.T) {
	out, err := sh(t, shell.Script("/", nil, "echo one\nfalse\necho two"))
	if err == nil {
		t.Fatal("a failing command in the user script did not fail the script")
	}
	if out != "one\n" {
		t.Errorf("printed %q; the script went on after a failure", out)
	}
}

func TestScriptExitStatus(t *testing.T) {
	_, err := sh(t, shell.Script("/", nil, "exit 7"))
	ee, ok := err.(*shError)
	if !ok {
		t.Fatalf("err = %v", err)
	}
	if code := ee.err.(*exec.ExitError).ExitCode(); code != 7 {
		t.Errorf("exit code %d, want 7", code)
	}
}

func TestScriptMissingDirectory(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	out, err := sh(t, shell.Script(filepath.Join(t.TempDir(), "no such dir"), nil, "touch "+shell.Quote(marker)+"; echo ran"))
	if err == nil {
		t.Fatal("cd into a missing directory did not fail the script")
	}
	if out != "" {
		t.Errorf("printed %q", out)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the user script ran outside its directory")
	}
}

func TestScriptSyntaxCannotEscape(t *testing.T) {
	// An unbalanced quote in the user script is the user script's syntax
	// error; it must not run what comes after it in the prefix or change
	// what the prefix means.
	marker := filepath.Join(t.TempDir(), "escaped")
	user := "echo 'unterminated\n; touch " + marker
	_, err := sh(t, shell.Script("/", map[string]string{"X": "'; touch " + marker + "; '"}, user))
	if err == nil {
		t.Error("a script with a syntax error succeeded")
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("a value or unbalanced quote ran a command")
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
