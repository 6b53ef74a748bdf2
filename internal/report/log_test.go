package report_test

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/report"
)

const (
	logKey = "-----BEGIN OPENSSH PRIVATE KEY-----\n" +
		"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n" +
		"QyNTUxOQAAACBSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETAAAAJgAAAA\n" +
		"-----END OPENSSH PRIVATE KEY-----\n"
	logPassword   = "hunter2-PASSWORD-5e77"
	logPassphrase = `pass "phrase" with \ and %`
)

func keyLines() []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(logKey), "\n") {
		out = append(out, l)
	}
	return out
}

// leaks returns the secrets (or key lines) found in s outside ::add-mask:: lines.
func leaks(s string) []string {
	var found []string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "::add-mask::") {
			continue
		}
		for _, secret := range append([]string{logPassword, logPassphrase}, keyLines()...) {
			if strings.Contains(line, secret) {
				found = append(found, secret)
			}
		}
	}
	return found
}

func actionsEnv(string) string { return "" }

// logEverything sends the secrets through every way a Log prints.
func logEverything(l *report.Log) {
	l.Infof("key: %s", logKey)
	l.Infof("password=%s passphrase=%s", logPassword, logPassphrase)
	l.Infof("quoted: %q %q", logPassword, logPassphrase)
	l.Infof("quoted key: %q", logKey)
	l.Warnf("warning with %s", logPassword)
	l.Errorf("Title "+logPassword, "error with %s and\n%s", logPassphrase, logKey)
	end := l.Group("group " + logPassword)
	w := l.Writer("web1")
	fmt.Fprintf(w, "remote says %s\n", logPassword)
	fmt.Fprint(w, strings.ReplaceAll(logKey, "\n", "\r\n"))
	fmt.Fprint(w, "partial "+logPassword[:5])
	fmt.Fprint(w, logPassword[5:]+"\n")
	end()
	l.Infof("%s", l.Redact("redact "+logPassword))
}

func TestLogMaskActions(t *testing.T) {
	var out bytes.Buffer
	l := report.NewActions(&out, actionsEnv)
	l.Mask([]string{logKey, logPassword, logPassphrase, "", "abc"})
	logEverything(l)
	s := out.String()
	if found := leaks(s); len(found) > 0 {
		t.Errorf("secrets in the log: %q\n%s", found, s)
	}
	// The runner is told to mask each secret, whole and line by line, with
	// the newlines of a multi-line secret escaped (one command per line).
	for _, want := range append([]string{
		"::add-mask::" + logPassword,
		"::add-mask::pass \"phrase\" with \\ and %25",
		"::add-mask::" + strings.ReplaceAll(strings.TrimSpace(logKey), "\n", "%0A"),
	}, func() []string {
		var m []string
		for _, l := range keyLines() {
			m = append(m, "::add-mask::"+l)
		}
		return m
	}()...) {
		if !strings.Contains(s, want+"\n") {
			t.Errorf("no line %q in\n%s", want, s)
		}
	}
	if strings.Contains(s, "::add-mask::abc\n") {
		t.Error("a 3-character secret was masked (it would garble every log line)")
	}
	// add-mask comes before anything else is printed.
	if !strings.HasPrefix(s, "::add-mask::") {
		t.Errorf("the log does not start with the masks:\n%s", s)
	}
	if strings.Count(s, "***") < 10 {
		t.Errorf("too few redactions:\n%s", s)
	}
}

func TestLogMaskTerminal(t *testing.T) {
	var out bytes.Buffer
	l := report.NewTerminal(&out, false)
	l.Mask([]string{logKey, logPassword, logPassphrase})
	logEverything(l)
	s := out.String()
	if found := leaks(s); len(found) > 0 {
		t.Errorf("secrets in the log: %q\n%s", found, s)
	}
	if strings.Contains(s, "::") {
		t.Errorf("workflow commands on a terminal:\n%s", s)
	}
	for _, want := range []string{"key: ***", "password=*** passphrase=***", "warning: warning with ***", "==> group ***", "[web1] remote says ***", "[web1] partial ***", "redact ***"} {
		if !strings.Contains(s, want) {
			t.Errorf("no %q in\n%s", want, s)
		}
	}
}

func TestLogWithoutMask(t *testing.T) {
	var out bytes.Buffer
	l := report.NewTerminal(&out, false)
	l.Infof("plain %s", "text")
	if out.String() != "plain text\n" || l.Redact("x") != "x" {
		t.Errorf("got %q", out.String())
	}
}

// TestLogAnnotations checks the workflow command text: a message is escaped
// once (by the SDK), so the runner shows newlines and percent signs as they
// were; a "\r\n" or a lone "\r" is shown as the newline it ends a line with.
func TestLogAnnotations(t *testing.T) {
	var out bytes.Buffer
	l := report.NewActions(&out, actionsEnv)
	l.Errorf("Deploy failed", "50%% done\nthen: boom")
	l.Warnf("disk at 90%%\r\nsecond line")
	end := l.Group("Upload release 20261125231842")
	l.Infof("inside")
	end()
	want := "::error title=Deploy failed::50%25 done%0Athen: boom\n" +
		"::warning::disk at 90%25%0Asecond line\n" +
		"::group::Upload release 20261125231842\n" +
		"inside\n" +
		"::endgroup::\n"
	if out.String() != want {
		t.Errorf("log =\n%q\nwant\n%q", out.String(), want)
	}
}

func TestLogWriterLines(t *testing.T) {
	var out bytes.Buffer
	l := report.NewTerminal(&out, false)
	w := l.Writer("deploy@web1:22")
	fmt.Fprint(w, "one\ntw")
	fmt.Fprint(w, "o\r\nthree\n")
	fmt.Fprint(w, "unterminated")
	if want := "[deploy@web1:22] one\n[deploy@web1:22] two\n[deploy@web1:22] three\n"; out.String() != want {
		t.Errorf("log = %q, want %q", out.String(), want)
	}
}

func TestLogProgress(t *testing.T) {
	var out bytes.Buffer
	l := report.NewTerminal(&out, false)
	l.Progress(deploy.Progress{Host: "web1", FilesDone: 5, FilesTotal: 10, BytesDone: 1024, BytesTotal: 2048, Elapsed: time.Second})
	if want := "web1: 5/10 files, 1.0 KiB/2.0 KiB (50%), 1.0 KiB/s, ETA 1s\n"; out.String() != want {
		t.Errorf("progress = %q, want %q", out.String(), want)
	}
	out.Reset()
	l.Progress(deploy.Progress{Host: "web1", FilesDone: 1, FilesTotal: 1, BytesDone: 10, BytesTotal: 10, Elapsed: time.Second})
	if want := "web1: 1/1 file, 10 B/10 B (100%), 10 B/s, ETA -\n"; out.String() != want {
		t.Errorf("progress = %q, want %q", out.String(), want)
	}
	var tty bytes.Buffer
	l = report.NewTerminal(&tty, true)
	l.Progress(deploy.Progress{Host: "web1", FilesTotal: 0, BytesTotal: 0, Elapsed: 0})
	l.Infof("after")
	if s := tty.String(); !strings.HasPrefix(s, "\r\033[K") || !strings.HasSuffix(s, "\r\033[Kafter\n") || !strings.Contains(s, "(100%)") {
		t.Errorf("tty progress = %q", s)
	}
}

// forgedCommands is remote text (hook output, a server's error message, a
// lock owner's name) that tries to become a workflow command: after a
// "\r" (the runner ends a line there too), after white space, in the old
// ##[...] form anywhere in a line, with a stop-commands of its own.
var forgedCommands = []string{
	"x\r::set-output name=release-id::evil",
	"progress 10%\r::error::forged annotation",
	"x\r::add-mask::[web1]",
	"x\r::stop-commands::forged-token",
	"::forged-token::",
	"x\r\n::warning::forged warning",
	"  \t::notice::forged notice",
	"\u0085::error::after a NEL",
	"\u2028::error::after a line separator",
	"x ##[set-output name=release-id;]evil",
	"x\r##[add-mask]everything",
	"x\r::group::forged group",
	"x\r::endgroup::",
	"::error::at the start of a line",
	"\u00ad::error::after a soft hyphen",
	"x #\u200b#[add-mask]zero-width space inside",
	"\x1b]0;forged terminal title\x07 and \x1b[2J a cleared screen, \x1b[31mred\x1b[0m kept",
}

// logForged sends forgedCommands through every way remote text is printed,
// between commands of the Log's own.
func logForged(l *report.Log) {
	end := l.Group("Upload and prepare release 20261125231842")
	w := l.Writer("web1")
	for _, f := range forgedCommands {
		fmt.Fprint(w, f+"\n")
		l.Infof("web1: lock held by %s", f)
	}
	fmt.Fprint(w, strings.Join(forgedCommands, "\r"))
	fmt.Fprint(w, "\n")
	end()
	l.Warnf("could not remove: %s", strings.Join(forgedCommands, "\n"))
	l.Errorf("Deploy failed", "before-activate failed on web1: %s", strings.Join(forgedCommands, "\n"))
}

// TestLogNeutralisesForgedCommands reads the log as the runner does: only
// the Log's own commands act (its masks, group, warning and error; a
// stop-commands pair is allowed around remote text), and the remote text
// is still shown.
func TestLogNeutralisesForgedCommands(t *testing.T) {
	var out bytes.Buffer
	l := report.NewActions(&out, actionsEnv)
	l.Mask([]string{logPassword})
	logForged(l)
	s := out.String()
	var names []string
	open := ""
	for _, c := range report.ParseRunnerLog(s) {
		switch {
		case c.Name == "stop-commands" && open == "" && len(c.Data) >= 32:
			open = c.Data
			continue
		case open != "" && c.Name == open:
			open = ""
			continue
		}
		names = append(names, c.Name)
		if c.Name == "add-mask" && c.Data != logPassword {
			t.Errorf("forged mask %q", c.Data)
		}
		if (c.Name == "error" || c.Name == "warning") && !strings.HasPrefix(c.Data, "before-activate failed") && !strings.HasPrefix(c.Data, "could not remove") {
			t.Errorf("forged %s %q", c.Name, c.Data)
		}
	}
	if want := []string{"add-mask", "group", "endgroup", "warning", "error"}; !slices.Equal(names, want) {
		t.Errorf("the runner would act on %q, want %q; log:\n%s", names, want, s)
	}
	if open != "" {
		t.Errorf("commands left stopped at the end of the log")
	}
	for _, shown := range []string{"[web1] ::set-output name=release-id::evil", "[web1] x ##[set-output name=release-id;]evil",
		"[web1] ::error::at the start of a line", "web1: lock held by x", "\x1b[31mred\x1b[0m kept"} {
		if !strings.Contains(s, shown+"\n") && !strings.Contains(s, shown+" ") {
			t.Errorf("the log does not show %q:\n%s", shown, s)
		}
	}
	for _, raw := range []string{"\x07", "\x1b]", "\x1b[2J", "\u0085", "\u2028"} {
		if strings.Contains(s, raw) {
			t.Errorf("the log holds the control sequence %q:\n%q", raw, s)
		}
	}
}

// TestLogTerminalShowsControlsEscaped: on a terminal, remote text cannot
// move the cursor, retitle the window or hide a line behind a "\r".
func TestLogTerminalShowsControlsEscaped(t *testing.T) {
	var out bytes.Buffer
	l := report.NewTerminal(&out, true)
	logForged(l)
	s := out.String()
	for _, raw := range []string{"\r", "\x07", "\x1b]", "\x1b[2J", "\u0085", "\u2028"} {
		if strings.Contains(s, raw) {
			t.Errorf("the terminal gets the control sequence %q:\n%q", raw, s)
		}
	}
	for _, shown := range []string{"[web1] progress 10%\n[web1] ::error::forged annotation\n", `\x1b]0;forged terminal title\x07`, "\x1b[31mred\x1b[0m kept"} {
		if !strings.Contains(s, shown) {
			t.Errorf("the terminal does not show %q:\n%s", shown, s)
		}
	}
}

// FuzzLogRemoteText: whatever a server sends, as hook output or inside a
// message, the runner acts on no command but the Log's own stop-commands
// pairs, and commands are never left stopped.
func FuzzLogRemoteText(f *testing.F) {
	for _, s := range forgedCommands {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, remote string) {
		var out bytes.Buffer
		l := report.NewActions(&out, actionsEnv)
		fmt.Fprint(l.Writer("web1"), remote+"\n")
		l.Infof("said: %s", remote)
		open := ""
		for _, c := range report.ParseRunnerLog(out.String()) {
			switch {
			case c.Name == "stop-commands" && open == "" && len(c.Data) >= 32:
				open = c.Data
			case open != "" && c.Name == open:
				open = ""
			default:
				t.Fatalf("the runner would act on %s %q in\n%q", c.Name, c.Data, out.String())
			}
		}
		if open != "" {
			t.Fatalf("commands left stopped:\n%q", out.String())
		}
	})
}

// TestParseRunnerLog: the tests' reading of a log finds what the runner
// acts on (else they would pass whatever is printed).
func TestParseRunnerLog(t *testing.T) {
	log := "plain\n::error title=T%3A1::m%0A2\nx\r::set-output name=a::b\r\n  ::warning::w\n" +
		"x ##[add-mask]secret\n::unknown::u\n::stop-commands::tok\n::error::ignored\n##[set-output name=c;]d\n::TOK::\n::notice::n"
	var got []string
	for _, c := range report.ParseRunnerLog(log) {
		got = append(got, fmt.Sprintf("%d %s %v %q", c.Line, c.Name, c.Properties, c.Data))
	}
	want := []string{
		`2 error map[title:T:1] "m\n2"`, `4 set-output map[name:a] "b"`, `5 warning map[] "w"`, `6 add-mask map[] "secret"`,
		`8 stop-commands map[] "tok"`, `11 TOK map[] ""`, `12 notice map[] "n"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("commands\n%q\nwant\n%q", got, want)
	}
}
