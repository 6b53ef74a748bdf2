package config

import (
	"net/url"
	"strings"
)

// splitUserinfo finds the password of the user info of raw, a URL that
// may not parse: after "scheme://" (if any), before the last "@" of the
// authority, after the user's ":". ok is false when there is none.
func splitUserinfo(raw string) (before, password, after string, ok bool) {
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 {
		start = i + 3
	}
	end := len(raw)
	if i := strings.IndexAny(raw[start:], "/?#"); i >= 0 {
		end = start + i
	}
	at := strings.LastIndex(raw[start:end], "@")
	if at < 0 {
		return "", "", "", false
	}
	colon := strings.Index(raw[start:start+at], ":")
	if colon < 0 {
		return "", "", "", false
	}
	return raw[:start+colon+1], raw[start+colon+1 : start+at], raw[start+at:], true
}

// RedactURL is raw as url.URL.Redacted shows it (the password as
// "xxxxx"), also when raw does not parse.
func RedactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		return u.Redacted()
	}
	if before, _, after, ok := splitUserinfo(raw); ok {
		return before + "xxxxx" + after
	}
	return raw
}

// URLPasswords returns the password in raw's user info as written and
// decoded (the forms it may be printed in), none when it has none.
func URLPasswords(raw string) []string {
	_, written, _, ok := splitUserinfo(raw)
	if !ok || written == "" {
		return nil
	}
	out := []string{written}
	if decoded, err := url.PathUnescape(written); err == nil && decoded != written {
		out = append(out, decoded)
	}
	return out
}
