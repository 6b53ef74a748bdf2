// Package report is everything a person or a later job reads: step outputs,
// the job summary, log lines and groups, progress, and secret masking.
package report

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
)

// Output is one step output.
type Output struct {
	Name  string
	Value string
}

// WriteOutputs appends outputs to the runner's GITHUB_OUTPUT file in the
// heredoc form NAME<<DELIM ... DELIM. The delimiter is random per value and
// checked against it, unlike the SDK's fixed one, so no value (multi-line,
// or holding a delimiter-like line) can end early or inject another output.
func WriteOutputs(w io.Writer, outs []Output) error {
	var b strings.Builder
	for _, o := range outs {
		if strings.ContainsAny(o.Name, "<=\n\r") || o.Name == "" {
			return fmt.Errorf("output name %q is not valid", o.Name)
		}
		delim := ""
		for delim == "" || strings.Contains(o.Value, delim) {
			delim = randomDelimiter()
		}
		fmt.Fprintf(&b, "%s<<%s\n%s\n%s\n", o.Name, delim, o.Value, delim)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// AppendOutputs writes outputs to the file at path (GITHUB_OUTPUT).
func AppendOutputs(path string, outs []Output) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("write outputs to %s: %w", path, err)
	}
	if err := WriteOutputs(f, outs); err != nil {
		f.Close()
		return fmt.Errorf("write outputs to %s: %w", path, err)
	}
	return f.Close()
}

func randomDelimiter() string {
	b := make([]byte, 16)
	rand.Read(b)
	return "ghadelimiter_" + hex.EncodeToString(b)
}

// ParseOutputs reads a GITHUB_OUTPUT file the way the Linux runner does
// (actions/runner FileCommandManager): lines end at "\n" only, so a "\r" is
// part of the value; empty lines are skipped; NAME=VALUE or NAME<<DELIM,
// whichever of "=" and "<<" comes first; a heredoc value is the raw text up
// to the line that is exactly DELIM. Tests use it to check what a later step
// would see.
func ParseOutputs(data string) (map[string]string, error) {
	out := map[string]string{}
	lines := strings.Split(data, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1] // the text after a final newline is no line
	}
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if line == "" {
			continue
		}
		eq, heredoc := strings.Index(line, "="), strings.Index(line, "<<")
		switch {
		case eq >= 0 && (heredoc < 0 || eq < heredoc):
			if eq == 0 {
				return nil, fmt.Errorf("line %d: empty output name", i+1)
			}
			out[line[:eq]] = line[eq+1:]
		case heredoc >= 0:
			name, delim := line[:heredoc], line[heredoc+2:]
			if name == "" || delim == "" {
				return nil, fmt.Errorf("line %d: output name and delimiter must not be empty", i+1)
			}
			var val []string
			closed := false
			for i++; i < len(lines); i++ {
				if lines[i] == delim {
					closed = true
					break
				}
				val = append(val, lines[i])
			}
			if !closed {
				return nil, fmt.Errorf("output %s: missing closing delimiter %s", name, delim)
			}
			out[name] = strings.Join(val, "\n")
		default:
			return nil, fmt.Errorf("line %d: not NAME=VALUE or NAME<<DELIMITER", i+1)
		}
	}
	return out, nil
}
