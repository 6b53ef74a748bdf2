package config

import (
	"fmt"
	"maps"
	"regexp"
	"strings"
)

// The env and secret-env inputs give the hooks environment variables, one a
// line, in the forms of GitHub's own environment files ($GITHUB_ENV), which
// workflow authors already write:
//
//	NAME=value          value is the rest of the line, verbatim ('=' included)
//	NAME                the runner's variable of that name (the step's env:)
//	NAME<<EOF           a multi-line value: the lines up to one holding only EOF
//	...
//	EOF
//
// Blank lines and lines starting with # are skipped (outside a multi-line
// value). The inputs are plain text in a workflow, so no YAML list or map
// could carry them without a second syntax.

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// HookEnv is what env and secret-env set in every hook's environment
// (nil when neither sets anything).
func (c *Config) HookEnv() map[string]string {
	if len(c.Env)+len(c.SecretEnv) == 0 {
		return nil
	}
	m := make(map[string]string, len(c.Env)+len(c.SecretEnv))
	maps.Copy(m, c.Env)
	maps.Copy(m, c.SecretEnv)
	return m
}

// hookVar is one variable of env or secret-env.
type hookVar struct {
	name, value string
	line        int
}

// parseHookEnv reads the text of input (env or secret-env). A line of
// secret-env is never quoted in a message: a value pasted there by mistake
// may look like anything, a name included.
func parseHookEnv(input, text string, getenv func(string) (string, bool), fail func(string, string, ...any)) []hookVar {
	secret := input == "secret-env"
	lines := strings.Split(text, "\n")
	var vars []hookVar
	for i := 0; i < len(lines); i++ {
		lineNo := i + 1
		line := strings.TrimLeft(strings.TrimSuffix(lines[i], "\r"), " \t")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		failLine := func(format string, a ...any) { fail(input, "line %d: "+format, append([]any{lineNo}, a...)...) }
		name, value, form := splitEnvLine(line)
		if !envNameRE.MatchString(name) {
			if secret {
				failLine("not NAME=value, NAME or NAME<<EOF (a name is letters, digits and _, not starting with a digit)")
			} else {
				failLine("%q is not NAME=value, NAME or NAME<<EOF (a name is letters, digits and _, not starting with a digit)", name)
			}
			if form == "heredoc" {
				i = skipHeredoc(lines, i, value)
			}
			continue
		}
		if reason := reservedEnvName(name); reason != "" {
			failLine("%s cannot be set: %s", name, reason)
			if form == "heredoc" {
				i = skipHeredoc(lines, i, value)
			}
			continue
		}
		switch form {
		case "heredoc":
			end := skipHeredoc(lines, i, value)
			switch {
			case value == "":
				failLine("%s<< needs a delimiter, e.g. %s<<EOF, then the lines, then a line EOF", name, name)
				continue
			case end == len(lines):
				failLine("%s<<%s has no closing line %s", name, value, value)
				i = end
				continue
			default:
				body := lines[i+1 : end]
				for j := range body {
					body[j] = strings.TrimSuffix(body[j], "\r")
				}
				value = strings.Join(body, "\n")
			}
			i = end
		case "runner":
			v, ok := getenv(name)
			if !ok {
				if secret {
					failLine("the variable this line names is not set in the runner's environment (a name alone passes the step's variable of that name; NAME=value sets one)")
				} else {
					failLine("%s is not set in the runner's environment (a name alone passes the step's variable of that name; NAME=value sets one)", name)
				}
				continue
			}
			value = v
		}
		if strings.ContainsRune(value, 0) {
			failLine("the value of %s holds a NUL byte, which no environment variable can", name)
			continue
		}
		vars = append(vars, hookVar{name: name, value: value, line: lineNo})
	}
	return vars
}

// splitEnvLine tells the three forms apart as the runner does for its
// environment files: whichever of "=" and "<<" comes first decides.
func splitEnvLine(line string) (name, rest, form string) {
	eq, heredoc := strings.Index(line, "="), strings.Index(line, "<<")
	switch {
	case heredoc >= 0 && (eq < 0 || heredoc < eq):
		return line[:heredoc], strings.TrimSpace(line[heredoc+2:]), "heredoc"
	case eq >= 0:
		return line[:eq], line[eq+1:], "value"
	}
	return strings.TrimRight(line, " \t"), "", "runner"
}

// skipHeredoc returns the index of the line closing the multi-line value
// that starts after lines[start], or len(lines) when none does.
func skipHeredoc(lines []string, start int, delimiter string) int {
	if delimiter == "" {
		return start
	}
	for j := start + 1; j < len(lines); j++ {
		if strings.TrimSpace(lines[j]) == delimiter {
			return j
		}
	}
	return len(lines)
}

// reservedEnvName says why name cannot be given to hooks, or "".
func reservedEnvName(name string) string {
	switch name {
	case "PATH", "HOME", "SHELL", "USER", "LOGNAME":
		return "the server's login sets it for the deploy user, and the hooks rely on it"
	case "IFS", "PS1", "PS2", "PS3", "PS4", "ENV", "BASH_ENV":
		return "it changes how the shell running the hook reads and runs it"
	}
	switch {
	case strings.HasPrefix(name, "LD_"):
		return "it changes how every program the hook starts is loaded"
	case strings.HasPrefix(name, "RELEASE_"), strings.HasPrefix(name, "DEPLOY_"), strings.HasPrefix(name, "PREVIOUS_RELEASE_"), strings.HasPrefix(name, "REVISION"):
		return "atomic-deploy sets RELEASE_ID, RELEASE_PATH, DEPLOY_PATH, PREVIOUS_RELEASE_ID and REVISION itself, and keeps their prefixes for itself"
	}
	return ""
}

// parseHookEnvs reads env and secret-env and refuses a name given twice,
// in one input or across both.
func parseHookEnvs(envText, secretText string, getenv func(string) (string, bool), fail func(string, string, ...any)) (env, secret map[string]string) {
	if getenv == nil {
		getenv = func(string) (string, bool) { return "", false }
	}
	seen := map[string]string{} // name -> where it was set
	collect := func(input string, vars []hookVar) map[string]string {
		if len(vars) == 0 {
			return nil
		}
		m := map[string]string{}
		for _, v := range vars {
			where := fmt.Sprintf("%s line %d", input, v.line)
			if first, dup := seen[v.name]; dup {
				fail(input, "line %d: %s is already set by %s; give each variable once", v.line, v.name, first)
				continue
			}
			seen[v.name] = where
			m[v.name] = v.value
		}
		return m
	}
	env = collect("env", parseHookEnv("env", envText, getenv, fail))
	secret = collect("secret-env", parseHookEnv("secret-env", secretText, getenv, fail))
	return env, secret
}

// SecretEnvValues returns what of a secret-env text may be secret, for
// masking before the input is validated: the values, the lines of
// multi-line values, and every line that is not a bare variable name.
// Bare names stay readable: masking them would garble every message
// about the variable.
func SecretEnvValues(text string) []string {
	var out []string
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, form := splitEnvLine(line)
		switch {
		case form == "heredoc" && value != "":
			end := skipHeredoc(lines, i, value)
			out = append(out, lines[i+1:min(end, len(lines))]...)
			i = end
		case form == "value":
			out = append(out, value)
		case form == "runner" && !envNameRE.MatchString(name):
			out = append(out, line)
		}
	}
	return out
}
