package report_test

import (
	"bytes"
	"fmt"
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
// were.
func TestLogAnnotations(t *testing.T) {
	var out bytes.Buffer
	l := report.NewActions(&out, actionsEnv)
	l.Errorf("Deploy failed", "50%% done\nthen: boom")
	l.Warnf("disk at 90%%\r\nsecond line")
	end := l.Group("Upload release 20261125231842")
	l.Infof("inside")
	end()
	want := "::error title=Deploy failed::50%25 done%0Athen: boom\n" +
		"::warning::disk at 90%25%0D%0Asecond line\n" +
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
