package report

import (
	"strings"
	"unicode"
)

// RunnerCommand is a workflow command the Actions runner would act on.
type RunnerCommand struct {
	Name       string // as written; the runner compares names ignoring case
	Properties map[string]string
	Data       string
	Line       int // 1-based, counted as the runner counts lines
}

// runnerCommands are the command names the runner knows
// (actions/runner ActionCommandManager and its extensions).
var runnerCommands = []string{"add-mask", "add-matcher", "add-path", "debug", "echo", "endgroup", "error", "group",
	"notice", "remove-matcher", "save-state", "set-env", "set-output", "stop-commands", "warning"}

// ParseRunnerLog reads a step's stdout the way the runner does and returns
// the commands it would act on, stop-commands and its resume token
// included: a line ends at "\n", "\r\n" or a lone "\r" (StreamReader.ReadLine);
// a line is a command when, after leading white space, it starts with
// "::name ...::" (TryParseV2), or when it holds "##[name ...]" anywhere
// (TryParse, the old form); only known names count; between
// "::stop-commands::TOKEN" and a command named TOKEN nothing else does.
// Tests use it to check that nothing printed can act as a command.
func ParseRunnerLog(stdout string) []RunnerCommand {
	known := map[string]bool{}
	for _, n := range runnerCommands {
		known[n] = true
	}
	var out []RunnerCommand
	stopToken := ""
	lines := strings.Split(strings.ReplaceAll(strings.ReplaceAll(stdout, "\r\n", "\n"), "\r", "\n"), "\n")
	for i, line := range lines {
		isKnown := func(name string) bool {
			name = strings.ToLower(name)
			return known[name] || (stopToken != "" && name == strings.ToLower(stopToken))
		}
		c, ok := parseCommandV2(line, isKnown)
		if !ok {
			c, ok = parseCommandV1(line, isKnown)
		}
		if !ok {
			continue
		}
		c.Line = i + 1
		switch {
		case stopToken != "":
			if !strings.EqualFold(c.Name, stopToken) {
				continue // ignored while stopped
			}
			stopToken = ""
		case strings.EqualFold(c.Name, "stop-commands"):
			stopToken = c.Data
			if stopToken == "" {
				stopToken = "\x00never" // the runner then never resumes
			}
		}
		out = append(out, c)
	}
	return out
}

func parseCommandV2(line string, known func(string) bool) (RunnerCommand, bool) {
	line = strings.TrimLeftFunc(line, unicode.IsSpace)
	if !strings.HasPrefix(line, "::") {
		return RunnerCommand{}, false
	}
	end := strings.Index(line[2:], "::")
	if end < 0 {
		return RunnerCommand{}, false
	}
	info := line[2 : 2+end]
	name, props, _ := strings.Cut(info, " ")
	if !known(name) {
		return RunnerCommand{}, false
	}
	c := RunnerCommand{Name: name, Properties: map[string]string{}, Data: unescapeCommand(line[2+end+2:], "%0D", "\r", "%0A", "\n", "%25", "%")}
	for _, p := range strings.Split(strings.TrimSpace(props), ",") {
		if k, v, ok := strings.Cut(p, "="); ok && k != "" && v != "" {
			c.Properties[k] = unescapeCommand(v, "%0D", "\r", "%0A", "\n", "%3A", ":", "%2C", ",", "%25", "%")
		}
	}
	return c, true
}

func parseCommandV1(line string, known func(string) bool) (RunnerCommand, bool) {
	start := strings.Index(line, "##[")
	if start < 0 {
		return RunnerCommand{}, false
	}
	end := strings.IndexByte(line[start:], ']')
	if end < 0 {
		return RunnerCommand{}, false
	}
	info := line[start+3 : start+end]
	name, props, _ := strings.Cut(info, " ")
	if !known(name) {
		return RunnerCommand{}, false
	}
	unescape := []string{"%3B", ";", "%0D", "\r", "%0A", "\n", "%5D", "]", "%25", "%"}
	c := RunnerCommand{Name: name, Properties: map[string]string{}, Data: unescapeCommand(line[start+end+1:], unescape...)}
	for _, p := range strings.Split(props, ";") {
		if k, v, ok := strings.Cut(p, "="); ok && k != "" && v != "" {
			c.Properties[k] = unescapeCommand(v, unescape...)
		}
	}
	return c, true
}

// unescapeCommand undoes the escapes in order, one after the other, as
// the runner does.
func unescapeCommand(s string, pairs ...string) string {
	for i := 0; i+1 < len(pairs); i += 2 {
		s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
	}
	return s
}
