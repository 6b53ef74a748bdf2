// Package shell is the only place where strings meant for a remote /bin/sh
// are built. Every value from a user, a path or a release id goes through
// Quote, so no input can change the meaning of a command.
package shell

import (
	"sort"
	"strings"
)

// Quote returns s as one POSIX shell word that expands to exactly s.
// It uses single quotes, inside which sh interprets nothing; a single quote
// itself is written as '\” .
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	if isSafe(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// isSafe reports whether s needs no quoting at all; it keeps logs readable.
func isSafe(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("@%+=:,./_-", r):
		default:
			return false
		}
	}
	// A word starting with '-' is safe for the shell but not for the
	// command receiving it; callers pass "--" where that matters.
	return true
}

// Command joins a program and its arguments into one command line, quoting each.
func Command(args ...string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = Quote(a)
	}
	return strings.Join(q, " ")
}

// Exports sets and exports env in a shell: one line a variable, in the
// order of the names. The names are checked by the caller (the program's
// own, or validated input); every value is quoted.
func Exports(env map[string]string) string {
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		b.WriteString("export " + k + "=" + Quote(env[k]) + "\n")
	}
	return b.String()
}
