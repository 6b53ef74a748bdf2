package report

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/sethvargo/go-githubactions"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
)

// Log writes what a run has to say, to the Actions log (with workflow
// commands: groups, annotations, masks) or to a terminal. Every line goes
// through the redactor, so a secret never reaches the log even if some
// error message carried it.
type Log struct {
	mu       sync.Mutex
	w        io.Writer
	gha      *githubactions.Action // nil outside Actions
	redactor *strings.Replacer
	tty      bool
	lastBar  bool // a progress bar is on the current terminal line
}

// NewActions logs for the Actions runner.
func NewActions(w io.Writer, getenv func(string) string) *Log {
	return &Log{w: w, gha: githubactions.New(githubactions.WithWriter(w), githubactions.WithGetenv(getenv))}
}

// NewTerminal logs for a person; tty enables an in-place progress bar.
func NewTerminal(w io.Writer, tty bool) *Log { return &Log{w: w, tty: tty} }

// Mask registers secrets: Actions masks them in every log, and this Log
// replaces them before printing. Multi-line secrets are masked line by
// line, because the runner matches masks within a line. The redactor also
// knows each secret as %q prints it (quotes and backslashes escaped), the
// form error messages quote values in.
func (l *Log) Mask(secrets []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var pairs []string
	seen := map[string]bool{}
	for _, s := range secrets {
		for _, part := range append([]string{s}, strings.Split(s, "\n")...) {
			part = strings.TrimSpace(part)
			if len(part) < 4 || seen[part] {
				continue // masking tiny strings would garble every line
			}
			seen[part] = true
			if l.gha != nil {
				l.gha.AddMask(part)
			}
			pairs = append(pairs, part, "***")
			if q := strconv.Quote(part); q[1:len(q)-1] != part {
				pairs = append(pairs, q[1:len(q)-1], "***")
			}
		}
	}
	l.redactor = strings.NewReplacer(pairs...)
}

// Redact removes registered secrets from s.
func (l *Log) Redact(s string) string {
	if l.redactor == nil {
		return s
	}
	return l.redactor.Replace(s)
}

func (l *Log) println(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clearBar()
	fmt.Fprintln(l.w, l.Redact(s))
}

func (l *Log) clearBar() {
	if l.lastBar {
		fmt.Fprint(l.w, "\r\033[K")
		l.lastBar = false
	}
}

// Infof logs a line.
func (l *Log) Infof(format string, args ...any) { l.println(fmt.Sprintf(format, args...)) }

// Warnf logs a warning (an annotation in Actions).
func (l *Log) Warnf(format string, args ...any) {
	msg := l.Redact(fmt.Sprintf(format, args...))
	if l.gha != nil {
		l.mu.Lock()
		l.gha.Warningf("%s", msg) // the SDK escapes the message
		l.mu.Unlock()
		return
	}
	l.println("warning: " + msg)
}

// Errorf logs an error with a title (an error annotation in Actions).
func (l *Log) Errorf(title, format string, args ...any) {
	msg := l.Redact(fmt.Sprintf(format, args...))
	title = l.Redact(title)
	if l.gha != nil {
		l.mu.Lock()
		l.gha.WithFieldsMap(map[string]string{"title": title}).Errorf("%s", msg) // the SDK escapes both
		l.mu.Unlock()
		return
	}
	l.println("error: " + title + ": " + msg)
}

// Group opens a collapsible section (Actions) or prints a heading.
func (l *Log) Group(title string) func() {
	if l.gha == nil {
		l.println("==> " + title)
		return func() {}
	}
	l.mu.Lock()
	l.gha.Group(l.Redact(title))
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		l.gha.EndGroup()
		l.mu.Unlock()
	}
}

// Writer returns a writer that logs each line prefixed with the host.
func (l *Log) Writer(host string) io.Writer { return &lineWriter{l: l, prefix: "[" + host + "] "} }

type lineWriter struct {
	l      *Log
	prefix string
	mu     sync.Mutex
	buf    bytes.Buffer
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line) // incomplete line: wait for the rest
			break
		}
		w.l.println(w.prefix + strings.TrimRight(line, "\r\n"))
	}
	return len(p), nil
}

// Progress shows upload progress: a bar that redraws in a terminal, a line
// every few seconds elsewhere.
func (l *Log) Progress(p deploy.Progress) {
	pct := 100.0
	if p.BytesTotal > 0 {
		pct = float64(p.BytesDone) * 100 / float64(p.BytesTotal)
	}
	rate := float64(p.BytesDone) / max(p.Elapsed.Seconds(), 0.001)
	eta := "-"
	if rate > 0 && p.BytesTotal > p.BytesDone {
		eta = time.Duration(float64(p.BytesTotal-p.BytesDone) / rate * float64(time.Second)).Round(time.Second).String()
	}
	text := fmt.Sprintf("%s: %s/%s, %s/%s (%.0f%%), %s/s, ETA %s", p.Host, humanize.Comma(int64(p.FilesDone)), Count(p.FilesTotal, "file"),
		Bytes(p.BytesDone), Bytes(p.BytesTotal), pct, Bytes(int64(rate)), eta)
	if !l.tty {
		l.println(text)
		return
	}
	const width = 24
	filled := int(pct / 100 * width)
	bar := strings.Repeat("█", filled) + strings.Repeat("░", width-filled)
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "\r\033[K%s %s", bar, text)
	l.lastBar = true
}
