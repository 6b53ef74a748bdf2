package report

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dustin/go-humanize"
	"github.com/sethvargo/go-githubactions"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/words"
)

// Log writes what a run has to say, to the Actions log (with workflow
// commands: groups, annotations, masks) or to a terminal. Every line goes
// through the redactor, so a secret never reaches the log even if some
// error message carried it. Text may come from servers and hooks, so no
// line it prints can act as a workflow command or a terminal control
// sequence (see printLines); only Mask, Warnf, Errorf and Group issue
// commands.
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
// line, because the runner matches masks within a line. Each is also
// masked in the forms it is likely printed in when some program (a hook,
// an error message) encodes it (see encodedForms).
func (l *Log) Mask(secrets []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var forms []string
	masked, seen := map[string]bool{}, map[string]bool{}
	for _, s := range secrets {
		for _, part := range append([]string{s}, strings.Split(s, "\n")...) {
			part = strings.TrimSpace(part)
			if len(part) < 4 || masked[part] {
				continue // masking tiny strings would garble every line
			}
			masked[part] = true
			if l.gha != nil {
				l.gha.AddMask(part) // the runner masks its own encodings of it
			}
			for _, f := range encodedForms(part) {
				if !seen[f] {
					seen[f] = true
					forms = append(forms, f)
				}
			}
		}
	}
	// Longest first: where one form starts with another, all of it goes.
	slices.SortStableFunc(forms, func(a, b string) int { return len(b) - len(a) })
	pairs := make([]string, 0, 2*len(forms))
	for _, f := range forms {
		pairs = append(pairs, f, "***")
	}
	l.redactor = strings.NewReplacer(pairs...)
}

// percentEncode writes every byte of s as %XX except ASCII letters,
// digits and the bytes in keep.
func percentEncode(s, keep string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(keep, c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// encodedForms is s and s as it reads quoted with %q (Go error messages),
// as a JSON string, percent-encoded (in the usual flavours), and quoted for
// a POSIX shell (bash's and busybox's set -x), without the quotes around
// each.
func encodedForms(s string) []string {
	forms := []string{s}
	add := func(f string) {
		if f != s && !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	q := strconv.Quote(s)
	add(q[1 : len(q)-1])
	var js bytes.Buffer
	enc := json.NewEncoder(&js)
	for _, html := range []bool{true, false} {
		js.Reset()
		enc.SetEscapeHTML(html)
		if enc.Encode(s) == nil {
			j := strings.TrimSuffix(js.String(), "\n")
			add(j[1 : len(j)-1])
		}
	}
	add(url.QueryEscape(s))
	add(url.PathEscape(s))
	add(percentEncode(s, "-_.~"))           // RFC 3986 unreserved only (jq @uri, curl --data-urlencode)
	add(percentEncode(s, "-_.~!*'()"))      // JavaScript's encodeURIComponent
	add(strings.ReplaceAll(s, "'", `'\''`)) // inside '...', as shell.Quote writes it
	add(strings.ReplaceAll(s, "'", `'"'"'`))
	return forms
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
	l.printLines(splitLines(l.Redact(s)))
}

// printLines prints lines that are not ours to trust, sanitized (see
// displayable). In Actions a line that the runner could still read as a
// command (one starting with "::" after white space, or holding the old
// "##[" form anywhere) is printed between ::stop-commands:: with a fresh
// random token and that token, which the runner knows from
// actions/toolkit: it acts on nothing in between.
func (l *Log) printLines(lines []string) {
	var b strings.Builder
	guard := false
	for i, line := range lines {
		lines[i] = displayable(line)
		guard = guard || (l.gha != nil && commandLike(lines[i]))
	}
	token := ""
	if guard {
		token = stopToken(lines)
		b.WriteString("::stop-commands::" + token + "\n")
	}
	for _, line := range lines {
		b.WriteString(line + "\n")
	}
	if guard {
		b.WriteString("::" + token + "::\n")
	}
	io.WriteString(l.w, b.String())
}

// splitLines splits s where the runner and a terminal end a line: "\n",
// "\r\n" and a lone "\r".
func splitLines(s string) []string {
	return strings.Split(strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n"), "\n")
}

// commandLike reports whether the runner could take line (one line, no
// "\r" or "\n") for a workflow command. Invisible format characters (soft
// hyphen, zero-width space) are dropped first: .NET compares "::" and "##["
// with the culture's rules, which may skip them.
func commandLike(line string) bool {
	line = strings.Map(func(r rune) rune {
		if unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, line)
	return strings.HasPrefix(strings.TrimLeftFunc(line, unicode.IsSpace), "::") || strings.Contains(line, "##[")
}

// stopToken returns a random token that none of lines contains.
func stopToken(lines []string) string {
	for {
		b := make([]byte, 16)
		rand.Read(b)
		token := hex.EncodeToString(b)
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(strings.ToLower(l), token) }) {
			return token
		}
	}
}

// Displayable is s as one line safe to print: control characters (line
// ends included) and the other characters that disguise text are shown
// as escapes, colour is kept. For text from a server printed outside a Log.
func Displayable(s string) string { return displayable(s) }

// displayable shows the control characters of one line as Go escapes
// (\x07, \u0085), keeping tabs and colour (SGR: ESC [ digits ; m): others
// move a terminal's cursor, set its title or clipboard, or hide text, and
// U+2028/U+2029 and the bidirectional overrides disguise a line.
func displayable(line string) string {
	if !strings.ContainsFunc(line, hidden) {
		return line
	}
	var b strings.Builder
	for i := 0; i < len(line); {
		if n := sgrLen(line[i:]); n > 0 {
			b.WriteString(line[i : i+n])
			i += n
			continue
		}
		r, size := utf8.DecodeRuneInString(line[i:])
		switch {
		case size == 1 && r == utf8.RuneError:
			b.WriteByte(line[i])
		case hidden(r) && r < utf8.RuneSelf:
			fmt.Fprintf(&b, `\x%02x`, r)
		case hidden(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
		i += size
	}
	return b.String()
}

func hidden(r rune) bool {
	switch {
	case r == '\t':
		return false
	case r < 0x20, r >= 0x7f && r <= 0x9f, r == '\u2028', r == '\u2029', r == '\u061c', r == '\u200e', r == '\u200f',
		r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069':
		return true
	}
	return false
}

// sgrLen is the length of the colour sequence s starts with, or 0.
func sgrLen(s string) int {
	if !strings.HasPrefix(s, "\x1b[") {
		return 0
	}
	for i := 2; i < len(s); i++ {
		switch c := s[i]; {
		case c == 'm':
			return i + 1
		case c != ';' && (c < '0' || c > '9'):
			return 0
		}
	}
	return 0
}

// annotationText is msg for an annotation: its lines displayable, joined
// by "\n" (which the SDK escapes).
func annotationText(msg string) string {
	lines := splitLines(msg)
	for i := range lines {
		lines[i] = displayable(lines[i])
	}
	return strings.Join(lines, "\n")
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
	msg := annotationText(l.Redact(fmt.Sprintf(format, args...)))
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
	msg := annotationText(l.Redact(fmt.Sprintf(format, args...)))
	title = displayable(strings.Join(splitLines(l.Redact(title)), " "))
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
	l.gha.Group(displayable(strings.Join(splitLines(l.Redact(title)), " ")))
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		l.gha.EndGroup()
		l.mu.Unlock()
	}
}

// Writer returns a writer that logs each line prefixed with the host. A
// line ends at "\n"; the pieces of it a "\r" separates (a progress bar's
// redraws) are lines of their own, each with the prefix.
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
		w.l.printPrefixed(w.prefix, strings.TrimRight(line, "\r\n"))
	}
	return len(p), nil
}

// printPrefixed prints each piece of line between "\r"s with prefix, as one
// line when there are none.
func (l *Log) printPrefixed(prefix, line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clearBar()
	var lines []string
	for _, piece := range strings.Split(l.Redact(line), "\r") {
		if piece != "" || len(lines) == 0 {
			lines = append(lines, prefix+piece)
		}
	}
	l.printLines(lines)
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
	text := fmt.Sprintf("%s: %s/%s, %s/%s (%.0f%%), %s/s, ETA %s", p.Host, humanize.Comma(int64(p.FilesDone)), words.Count(p.FilesTotal, "file"),
		words.Bytes(p.BytesDone), words.Bytes(p.BytesTotal), pct, words.Bytes(int64(rate)), eta)
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
