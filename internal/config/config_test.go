package config_test

import (
	"errors"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
)

// Recognisable secret values: no error message may ever contain them.
const (
	testKey = "-----BEGIN OPENSSH PRIVATE KEY-----\n" +
		"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQSECRETKEYLINEONE\n" +
		"QyNTUxOQAAACDSECRETKEYLINETWOzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\n" +
		"-----END OPENSSH PRIVATE KEY-----"
	testPassphrase = "correct-horse-PASSPHRASE-8c1f"
	testPassword   = "hunter2-PASSWORD-5e77"
)

const unset = "\x00unset" // in a case's inputs: remove this input from the base

// lookupOf is a map-based config.Lookup: an input is given iff it is a key.
func lookupOf(m map[string]string) config.Lookup {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

// remoteBase is a valid remote deploy that each hostile case breaks in one place.
func remoteBase() map[string]string {
	return map[string]string{
		"host":        "deploy@web1.example.com",
		"path":        "/var/www/app",
		"private-key": testKey,
		"passphrase":  testPassphrase,
		"password":    testPassword,
		"known-hosts": "web1.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
	}
}

// localBase is a valid deploy to this machine's filesystem.
func localBase() map[string]string {
	return map[string]string{
		"path":        "/var/www/app",
		"private-key": testKey,
		"passphrase":  testPassphrase,
		"password":    testPassword,
	}
}

func merge(base, over map[string]string) map[string]string {
	m := maps.Clone(base)
	for k, v := range over {
		if v == unset {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

func inputErrors(t *testing.T, err error) []*config.InputError {
	t.Helper()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var out []*config.InputError
	for _, e := range errs {
		var ie *config.InputError
		if !errors.As(e, &ie) {
			t.Fatalf("error %q is not a *config.InputError", e)
		}
		out = append(out, ie)
	}
	return out
}

// assertNoSecrets checks msg for the secrets, their key lines and their %q
// spelling, in any letter case.
func assertNoSecrets(t *testing.T, msg string, secrets ...string) {
	t.Helper()
	if len(secrets) == 0 {
		secrets = []string{testPassphrase, testPassword, testKey}
	}
	var needles []string
	for _, s := range secrets {
		q := strconv.Quote(s)
		needles = append(needles, s, q[1:len(q)-1])
	}
	for _, s := range needles {
		if strings.Contains(strings.ToLower(msg), strings.ToLower(s)) {
			t.Errorf("error message contains a secret %q:\n%s", s, msg)
		}
	}
	for _, line := range strings.Split(testKey, "\n") {
		if strings.Contains(strings.ToLower(msg), strings.ToLower(line)) {
			t.Errorf("error message contains a line of the private key %q:\n%s", line, msg)
		}
	}
}

func TestParseHostileInputs(t *testing.T) {
	tests := []struct {
		name   string
		base   func() map[string]string // remoteBase when nil
		inputs map[string]string
		input  string // the input every error must name
		phrase string // a phrase some error for that input must contain
	}{
		// mode
		{name: "mode unknown", inputs: map[string]string{"mode": "deploi"}, input: "mode", phrase: "not one of deploy, prepare, activate, rollback, unlock"},
		{name: "mode quoted as given", inputs: map[string]string{"mode": "DEPLOI"}, input: "mode", phrase: `"DEPLOI"`},
		{name: "mode injection", inputs: map[string]string{"mode": "deploy; rm -rf /"}, input: "mode", phrase: "not one of"},

		// host
		{name: "host without a name", inputs: map[string]string{"host": ":22"}, input: "host", phrase: "no host name"},
		{name: "host user@ only", inputs: map[string]string{"host": "user@"}, input: "host", phrase: "no host name"},
		{name: "host @host without user", inputs: map[string]string{"host": "@web1"}, input: "host", phrase: "not a valid user name"},
		{name: "host with empty port", inputs: map[string]string{"host": "deploy@web1:"}, input: "host", phrase: "not a TCP port"},
		{name: "host port 0", inputs: map[string]string{"host": "deploy@web1:0"}, input: "host", phrase: "not a TCP port"},
		{name: "host port 65536", inputs: map[string]string{"host": "deploy@web1:65536"}, input: "host", phrase: "not a TCP port"},
		{name: "host port abc", inputs: map[string]string{"host": "deploy@web1:abc"}, input: "host", phrase: "not a TCP port"},
		{name: "host with a space", inputs: map[string]string{"host": "deploy@a b"}, input: "host", phrase: "not a host name or IP address"},
		{name: "host with shell command", inputs: map[string]string{"host": "deploy@host;rm -rf /"}, input: "host", phrase: "not a host name or IP address"},
		{name: "host command substitution", inputs: map[string]string{"host": "$(id)"}, input: "host", phrase: "not a host name or IP address"},
		{name: "host backticks", inputs: map[string]string{"host": "deploy@`id`"}, input: "host", phrase: "not a host name or IP address"},
		{name: "host leading dash (ssh option)", inputs: map[string]string{"host": "deploy@-oProxyCommand=id"}, input: "host", phrase: "not a host name"},
		{name: "host unbracketed IPv6", inputs: map[string]string{"host": "deploy@2001:db8::1"}, input: "host", phrase: "brackets"},
		{name: "host unbracketed IPv6 loopback", inputs: map[string]string{"host": "::1"}, input: "host", phrase: "brackets"},
		{name: "host unclosed bracket", inputs: map[string]string{"host": "deploy@[::1"}, input: "host", phrase: "missing ]"},
		{name: "host bracketed non-address", inputs: map[string]string{"host": "deploy@[web1]:22"}, input: "host", phrase: "not an IPv6 address"},
		{name: "host junk after bracket", inputs: map[string]string{"host": "deploy@[::1]x"}, input: "host", phrase: "unexpected"},
		{name: "host bracketed empty port", inputs: map[string]string{"host": "deploy@[::1]:"}, input: "host", phrase: "not a TCP port"},
		{name: "host listed twice", inputs: map[string]string{"host": "deploy@web1\nweb1:22", "username": "deploy"}, input: "host", phrase: "listed twice"},
		{name: "host listed twice with other users", inputs: map[string]string{"host": "a@web1, b@web1"}, input: "host", phrase: "listed twice"},
		{name: "host name too long", inputs: map[string]string{"host": "deploy@" + strings.Repeat("a", 254)}, input: "host", phrase: "not a host name"},

		// port
		{name: "port 0", inputs: map[string]string{"port": "0"}, input: "port", phrase: "1-65535"},
		{name: "port 65536", inputs: map[string]string{"port": "65536"}, input: "port", phrase: "1-65535"},
		{name: "port negative", inputs: map[string]string{"port": "-22"}, input: "port", phrase: "1-65535"},
		{name: "port not a number", inputs: map[string]string{"port": "ssh"}, input: "port", phrase: "not a TCP port"},
		{name: "port with a unit", inputs: map[string]string{"port": "22/tcp"}, input: "port", phrase: "not a TCP port"},

		// username
		{name: "username with semicolon", inputs: map[string]string{"username": "deploy;id", "host": "web1"}, input: "username", phrase: "not a valid user name"},
		{name: "username with command substitution", inputs: map[string]string{"username": "$(whoami)", "host": "web1"}, input: "username", phrase: "not a valid user name"},
		{name: "username with a space", inputs: map[string]string{"username": "de ploy", "host": "web1"}, input: "username", phrase: "not a valid user name"},
		{name: "username with leading dash", inputs: map[string]string{"username": "-oProxyCommand", "host": "web1"}, input: "username", phrase: "not a valid user name"},
		{name: "username too long", inputs: map[string]string{"username": strings.Repeat("u", 65), "host": "web1"}, input: "username", phrase: "not a valid user name"},
		{name: "host user with metacharacters", inputs: map[string]string{"host": "de|ploy@web1"}, input: "host", phrase: "not a valid user name"},

		// jump-host
		{name: "jump-host port garbled", inputs: map[string]string{"jump-host": "bastion:abc"}, input: "jump-host", phrase: "not a TCP port"},
		{name: "jump-host user@ only", inputs: map[string]string{"jump-host": "jump@"}, input: "jump-host", phrase: "no host name"},
		{name: "jump-host with shell command", inputs: map[string]string{"jump-host": "bastion;id"}, input: "jump-host", phrase: "not a host name"},
		{name: "jump-host without a host", base: localBase, inputs: map[string]string{"jump-host": "jump@bastion"}, input: "jump-host", phrase: "needs a host"},

		// fingerprint
		{name: "fingerprint MD5 colon form", inputs: map[string]string{"fingerprint": "16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48"}, input: "fingerprint", phrase: "not a SHA256 fingerprint"},
		{name: "fingerprint MD5 prefixed", inputs: map[string]string{"fingerprint": "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48"}, input: "fingerprint", phrase: "not a SHA256 fingerprint"},
		{name: "fingerprint without SHA256 prefix", inputs: map[string]string{"fingerprint": "nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"}, input: "fingerprint", phrase: "SHA256:"},
		{name: "fingerprint too short", inputs: map[string]string{"fingerprint": "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY"}, input: "fingerprint", phrase: "not a SHA256 fingerprint"},
		{name: "fingerprint too long", inputs: map[string]string{"fingerprint": "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8xx"}, input: "fingerprint", phrase: "not a SHA256 fingerprint"},
		{name: "fingerprint one good one bad", inputs: map[string]string{"fingerprint": "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8, sha256:bad"}, input: "fingerprint", phrase: "ssh-keygen -lf"},
		// A pin is per server: a bare fingerprint would let any of them
		// (a compromised jump host among them) present its key for another.
		{name: "fingerprint bare with two hosts", inputs: map[string]string{"known-hosts": unset, "host": "deploy@web1, deploy@web2:2222",
			"fingerprint": "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"}, input: "fingerprint", phrase: "web1=SHA256:…\n  [web2]:2222 SHA256:…"},
		{name: "fingerprint bare with a jump host", inputs: map[string]string{"known-hosts": unset, "jump-host": "bastion",
			"fingerprint": "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"}, input: "fingerprint", phrase: "bastion=SHA256:…"},
		{name: "fingerprint bare next to per-host pins", inputs: map[string]string{"host": "deploy@web1, deploy@web2", "fingerprint": "web1=SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8\nSHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"},
			input: "fingerprint", phrase: "only for a single host"},
		{name: "fingerprint for a host not listed", inputs: map[string]string{"fingerprint": "web9.example.com=SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"},
			input: "fingerprint", phrase: "web9.example.com is not in host or jump-host"},
		{name: "fingerprint for a listed host on another port", inputs: map[string]string{"fingerprint": "[web1.example.com]:2222 SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"},
			input: "fingerprint", phrase: "[web1.example.com]:2222 is not in host or jump-host"},
		{name: "fingerprint with a user", inputs: map[string]string{"fingerprint": "deploy@web1.example.com=SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"},
			input: "fingerprint", phrase: "without the user"},
		{name: "fingerprint with a bad host", inputs: map[string]string{"fingerprint": "web1;id=SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"},
			input: "fingerprint", phrase: "not a host name"},
		{name: "fingerprint for a host, empty", inputs: map[string]string{"fingerprint": "web1.example.com="}, input: "fingerprint", phrase: "not a SHA256 fingerprint"},
		{name: "fingerprint as ssh-keygen -l prints it", inputs: map[string]string{"fingerprint": "256 SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8 root@web1 (ED25519)"},
			input: "fingerprint", phrase: "HOST=SHA256:…"},
		{name: "fingerprint missing for a second host", inputs: map[string]string{"known-hosts": unset, "host": "deploy@web1, deploy@web2",
			"fingerprint": "web1=SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"}, input: "fingerprint", phrase: "no fingerprint for web2"},
		{name: "fingerprint missing for the jump host", inputs: map[string]string{"known-hosts": unset, "jump-host": "bastion:2200",
			"fingerprint": "web1.example.com=SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"}, input: "fingerprint", phrase: "no fingerprint for [bastion]:2200"},
		{name: "fingerprint without a port for a name on two ports", inputs: map[string]string{"host": "deploy@web1, deploy@web1:2222",
			"fingerprint": "web1=SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"}, input: "fingerprint", phrase: "name the port"},

		// insecure-ignore-host-key
		{name: "insecure-ignore-host-key yes please", inputs: map[string]string{"insecure-ignore-host-key": "yes please"}, input: "insecure-ignore-host-key", phrase: "not true or false"},

		// path
		{name: "path relative", inputs: map[string]string{"path": "var/www/app"}, input: "path", phrase: "absolute"},
		{name: "path dot relative", inputs: map[string]string{"path": "./app"}, input: "path", phrase: "absolute"},
		{name: "path home relative", inputs: map[string]string{"path": "~/app"}, input: "path", phrase: "absolute"},
		{name: "path empty", inputs: map[string]string{"path": ""}, input: "path", phrase: "required"},
		{name: "path missing", inputs: map[string]string{"path": unset}, input: "path", phrase: "required"},
		{name: "path blank", inputs: map[string]string{"path": "  \n "}, input: "path", phrase: "required"},
		{name: "path root", inputs: map[string]string{"path": "/"}, input: "path", phrase: "refusing"},
		{name: "path double slash", inputs: map[string]string{"path": "//"}, input: "path", phrase: "refusing"},
		{name: "path dot-dot to root", inputs: map[string]string{"path": "/var/.."}, input: "path", phrase: "refusing"},
		{name: "path root locally", base: localBase, inputs: map[string]string{"path": "/"}, input: "path", phrase: "refusing"},
		{name: "path with newline", inputs: map[string]string{"path": "/var/www\n/etc"}, input: "path", phrase: "control character"},
		{name: "path with carriage return", inputs: map[string]string{"path": "/var/www\r/etc"}, input: "path", phrase: "control character"},
		{name: "path with NUL", inputs: map[string]string{"path": "/var/www\x00/etc"}, input: "path", phrase: "control character"},

		// exclude
		{name: "exclude bad glob", inputs: map[string]string{"exclude": ".git\n[unclosed"}, input: "exclude", phrase: "not a valid pattern"},
		{name: "exclude negated bad glob", inputs: map[string]string{"exclude": "!docs/[a-"}, input: "exclude", phrase: "not a valid pattern"},

		// shared-dirs, shared-files, writable-dirs
		{name: "shared-dirs escaping with ..", inputs: map[string]string{"shared-dirs": "../etc"}, input: "shared-dirs", phrase: "inside the release"},
		{name: "shared-dirs just ..", inputs: map[string]string{"shared-dirs": ".."}, input: "shared-dirs", phrase: "inside the release"},
		{name: "shared-dirs absolute", inputs: map[string]string{"shared-dirs": "/etc"}, input: "shared-dirs", phrase: "not absolute"},
		{name: "shared-dirs dot", inputs: map[string]string{"shared-dirs": "."}, input: "shared-dirs", phrase: "inside the release"},
		{name: "shared-dirs dot slash", inputs: map[string]string{"shared-dirs": "./"}, input: "shared-dirs", phrase: "inside the release"},
		{name: "shared-dirs a/../b", inputs: map[string]string{"shared-dirs": "a/../b"}, input: "shared-dirs", phrase: "must not contain .."},
		{name: "shared-dirs with NUL", inputs: map[string]string{"shared-dirs": "stor\x00age"}, input: "shared-dirs", phrase: "control character"},
		{name: "shared-dirs duplicate", inputs: map[string]string{"shared-dirs": "storage\nstorage/"}, input: "shared-dirs", phrase: "overlap"},
		{name: "shared-dirs nested", inputs: map[string]string{"shared-dirs": "storage\nstorage/app"}, input: "shared-dirs", phrase: "overlap"},
		{name: "shared-files duplicate", inputs: map[string]string{"shared-files": ".env\n./.env"}, input: "shared-files", phrase: "overlap"},
		{name: "shared-files inside shared-dirs", inputs: map[string]string{"shared-dirs": "storage", "shared-files": "storage/logs"}, input: "shared-files", phrase: `"storage" and "storage/logs" overlap`},
		{name: "shared-files same as shared-dirs", inputs: map[string]string{"shared-dirs": "storage", "shared-files": "storage"}, input: "shared-files", phrase: "overlap"},
		{name: "shared-files absolute", inputs: map[string]string{"shared-files": "/etc/passwd"}, input: "shared-files", phrase: "not absolute"},
		{name: "writable-dirs absolute", inputs: map[string]string{"writable-dirs": "/tmp"}, input: "writable-dirs", phrase: "not absolute"},
		{name: "writable-dirs escaping", inputs: map[string]string{"writable-dirs": "storage/../../shared"}, input: "writable-dirs", phrase: ".."},

		// numbers and durations
		{name: "keep-releases 0", inputs: map[string]string{"keep-releases": "0"}, input: "keep-releases", phrase: "at least 1"},
		{name: "keep-releases -1", inputs: map[string]string{"keep-releases": "-1"}, input: "keep-releases", phrase: "at least 1"},
		{name: "keep-releases abc", inputs: map[string]string{"keep-releases": "abc"}, input: "keep-releases", phrase: "whole number"},
		{name: "reuse symlink", inputs: map[string]string{"reuse": "symlink"}, input: "reuse", phrase: "not copy or hardlink"},
		{name: "force maybe", inputs: map[string]string{"force": "maybe"}, input: "force", phrase: "maybe"},
		{name: "keep-releases 1.5", inputs: map[string]string{"keep-releases": "1.5"}, input: "keep-releases", phrase: "whole number"},
		{name: "keep-releases empty", inputs: map[string]string{"keep-releases": ""}, input: "keep-releases", phrase: "whole number"},
		{name: "concurrency 0", inputs: map[string]string{"concurrency": "0"}, input: "concurrency", phrase: "at least 1"},
		{name: "concurrency x", inputs: map[string]string{"concurrency": "x"}, input: "concurrency", phrase: "whole number"},
		{name: "healthcheck-timeout abc", inputs: map[string]string{"healthcheck-timeout": "abc"}, input: "healthcheck-timeout", phrase: "not a duration"},
		{name: "healthcheck-timeout -5s", inputs: map[string]string{"healthcheck-timeout": "-5s"}, input: "healthcheck-timeout", phrase: "not a duration"},
		{name: "healthcheck-timeout -5", inputs: map[string]string{"healthcheck-timeout": "-5"}, input: "healthcheck-timeout", phrase: "not a duration"},
		{name: "healthcheck-timeout unit only", inputs: map[string]string{"healthcheck-timeout": "s"}, input: "healthcheck-timeout", phrase: "not a duration"},

		{name: "lock-timeout abc", inputs: map[string]string{"lock-timeout": "abc"}, input: "lock-timeout", phrase: "not a duration"},
		{name: "maintenance-mode without the preset", inputs: map[string]string{"maintenance-mode": "true"}, input: "maintenance-mode", phrase: "needs preset: laravel"},
		{name: "maintenance-mode without shared storage", inputs: map[string]string{"maintenance-mode": "true", "preset": "laravel", "shared-dirs": "storage/app"}, input: "maintenance-mode", phrase: "storage/framework"},
		{name: "maintenance-mode maybe", inputs: map[string]string{"maintenance-mode": "maybe", "preset": "laravel"}, input: "maintenance-mode", phrase: "not true or false"},
		{name: "connect-timeout abc", inputs: map[string]string{"connect-timeout": "abc"}, input: "connect-timeout", phrase: "duration above 0"},
		{name: "connect-timeout 0", inputs: map[string]string{"connect-timeout": "0s"}, input: "connect-timeout", phrase: "duration above 0"},
		{name: "connect-retries -1", inputs: map[string]string{"connect-retries": "-1"}, input: "connect-retries", phrase: "from 0 to 10"},
		{name: "connect-retries 11", inputs: map[string]string{"connect-retries": "11"}, input: "connect-retries", phrase: "from 0 to 10"},
		{name: "connect-retries x", inputs: map[string]string{"connect-retries": "three"}, input: "connect-retries", phrase: "whole number"},
		{name: "lock-timeout negative", inputs: map[string]string{"lock-timeout": "-1m"}, input: "lock-timeout", phrase: "not a duration"},
		{name: "command-timeout abc", inputs: map[string]string{"command-timeout": "abc"}, input: "command-timeout", phrase: "not a duration (e.g. 30s, 2m); empty or 0 means no limit"},
		{name: "command-timeout negative", inputs: map[string]string{"command-timeout": "-10m"}, input: "command-timeout", phrase: "not a duration"},
		{name: "command-timeout in words", inputs: map[string]string{"command-timeout": "10 minutes"}, input: "command-timeout", phrase: "not a duration"},
		{name: "healthcheck-expect without url", inputs: map[string]string{"healthcheck-expect": "OK"}, input: "healthcheck-expect", phrase: "needs healthcheck-url"},

		// healthcheck-url
		{name: "healthcheck-url ftp", inputs: map[string]string{"healthcheck-url": "ftp://x"}, input: "healthcheck-url", phrase: "http:// or https://"},
		{name: "healthcheck-url without scheme", inputs: map[string]string{"healthcheck-url": "localhost"}, input: "healthcheck-url", phrase: "http:// or https://"},
		{name: "healthcheck-url scheme only", inputs: map[string]string{"healthcheck-url": "http://"}, input: "healthcheck-url", phrase: "not a URL with a host"},
		{name: "healthcheck-url space in host", inputs: map[string]string{"healthcheck-url": "https://exa mple.com/up"}, input: "healthcheck-url", phrase: ""},

		// release-id
		{name: "release-id with slash", inputs: map[string]string{"release-id": "2026/1125231842"}, input: "release-id", phrase: "not a release id"},
		{name: "release-id dot-dot", inputs: map[string]string{"release-id": ".."}, input: "release-id", phrase: "not a release id"},
		{name: "release-id path traversal", inputs: map[string]string{"release-id": "../../etc"}, input: "release-id", phrase: "not a release id"},
		{name: "release-id with semicolon", inputs: map[string]string{"release-id": "20261125231842;id"}, input: "release-id", phrase: "not a release id"},
		{name: "release-id with spaces", inputs: map[string]string{"release-id": "2026 1125 2318"}, input: "release-id", phrase: "not a release id"},
		{name: "release-id 13 digits", inputs: map[string]string{"release-id": "2026112523184"}, input: "release-id", phrase: "YYYYMMDDHHMMSS"},
		{name: "release-id 15 digits", inputs: map[string]string{"release-id": "202611252318420"}, input: "release-id", phrase: "YYYYMMDDHHMMSS"},
		{name: "release-id invalid date", inputs: map[string]string{"release-id": "20261340000000"}, input: "release-id", phrase: "not a valid timestamp"},
		{name: "release-id unicode digits", inputs: map[string]string{"release-id": "２０２６１１２５２３１８４２"}, input: "release-id", phrase: "not a release id"},
		{name: "release-id rollback garbled", inputs: map[string]string{"mode": "rollback", "release-id": "latest"}, input: "release-id", phrase: "not a release id"},

		// preset, booleans
		{name: "preset unknown", inputs: map[string]string{"preset": "rails"}, input: "preset", phrase: "known: laravel"},
		{name: "auto-rollback maybe", inputs: map[string]string{"auto-rollback": "maybe"}, input: "auto-rollback", phrase: "not true or false"},

		// credentials and host key pinning
		{name: "remote without key or password", inputs: map[string]string{"private-key": unset, "password": unset}, input: "private-key", phrase: "required to deploy to web1.example.com"},
		{name: "remote with blank key and password", inputs: map[string]string{"private-key": " \n ", "password": ""}, input: "private-key", phrase: "private key"},
		{name: "remote without host key pin", inputs: map[string]string{"known-hosts": unset}, input: "known-hosts", phrase: "fingerprint"},
		{name: "remote with blank known-hosts", inputs: map[string]string{"known-hosts": "\n\n", "insecure-ignore-host-key": "false"}, input: "known-hosts", phrase: "insecure-ignore-host-key"},
		{name: "host without a user", inputs: map[string]string{"host": "web1.example.com"}, input: "username", phrase: "no SSH user for web1.example.com"},
		{name: "second host without a user", inputs: map[string]string{"host": "deploy@web1, web2"}, input: "username", phrase: "no SSH user for web2"},
	}
	if len(tests) < 45 {
		t.Fatalf("only %d hostile cases", len(tests))
	}
	t.Logf("%d hostile input cases", len(tests))
	seen := map[string]bool{}
	for _, tt := range tests {
		if seen[tt.name] {
			t.Fatalf("duplicate case name %q", tt.name)
		}
		seen[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			base := remoteBase
			if tt.base != nil {
				base = tt.base
			}
			cfg, err := config.Parse(lookupOf(merge(base(), tt.inputs)), config.Context{})
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("Parse returned a config with an error")
			}
			assertNoSecrets(t, err.Error())
			found := false
			for _, ie := range inputErrors(t, err) {
				if ie.Input != tt.input {
					t.Errorf("error names input %q, want only %q: %v", ie.Input, tt.input, ie)
					continue
				}
				if !strings.HasPrefix(ie.Error(), `input "`+tt.input+`": `) {
					t.Errorf("message does not start with the input name: %q", ie.Error())
				}
				if strings.Contains(ie.Reason, tt.phrase) {
					found = true
				}
			}
			if !found {
				t.Errorf("no error for %q says %q; got:\n%v", tt.input, tt.phrase, err)
			}
		})
	}
}

// TestParseReportsEveryError checks that one run reports all broken inputs
// together, so a user fixes them in one go.
func TestParseReportsEveryError(t *testing.T) {
	in := merge(remoteBase(), map[string]string{
		"mode": "explode", "port": "0", "path": "relative", "keep-releases": "0",
		"concurrency": "x", "release-id": "1", "preset": "rails", "auto-rollback": "maybe",
	})
	_, err := config.Parse(lookupOf(in), config.Context{})
	if err == nil {
		t.Fatal("Parse accepted it")
	}
	var got []string
	for _, ie := range inputErrors(t, err) {
		got = append(got, ie.Input)
	}
	slices.Sort(got)
	want := []string{"auto-rollback", "concurrency", "keep-releases", "mode", "path", "port", "preset", "release-id"}
	if !slices.Equal(got, want) {
		t.Errorf("inputs named = %q, want %q", got, want)
	}
	assertNoSecrets(t, err.Error())
}

// TestParseErrorsNeverCarrySecrets puts every secret next to each kind of
// broken input and checks the messages.
func TestParseErrorsNeverCarrySecrets(t *testing.T) {
	for _, in := range config.Inputs {
		if in.Secret {
			continue
		}
		t.Run(in.Name, func(t *testing.T) {
			m := merge(remoteBase(), map[string]string{in.Name: "$(bad value)\n/..\x00"})
			_, err := config.Parse(lookupOf(m), config.Context{})
			if err != nil {
				assertNoSecrets(t, err.Error())
			}
		})
	}
}

// TestParseHidesSecretsPastedIntoOtherInputs: a secret in the wrong input
// is still never part of a message, however the message spells the value.
func TestParseHidesSecretsPastedIntoOtherInputs(t *testing.T) {
	password := `pa"ss\word-SECRET-77`
	passphrase := "Passphrase-SECRET-99"
	tests := []struct {
		name   string
		inputs map[string]string
		input  string
	}{
		{"password as mode", map[string]string{"mode": password}, "mode"},
		{"passphrase as mode, lower-cased", map[string]string{"mode": passphrase}, "mode"},
		{"passphrase as preset", map[string]string{"preset": passphrase}, "preset"},
		{"password as fingerprint", map[string]string{"fingerprint": password}, "fingerprint"},
		{"passphrase as a host without user", map[string]string{"host": passphrase}, "username"},
		{"password as host", map[string]string{"host": "deploy@" + password}, "host"},
		{"password as path", map[string]string{"path": password}, "path"},
		{"key as path", map[string]string{"path": testKey}, "path"},
		{"key line as path", map[string]string{"path": strings.Split(testKey, "\n")[1]}, "path"},
		{"password as release-id", map[string]string{"release-id": password}, "release-id"},
		{"passphrase as keep-releases", map[string]string{"keep-releases": passphrase}, "keep-releases"},
		{"password as healthcheck-url", map[string]string{"healthcheck-url": "https://" + password}, "healthcheck-url"},
		{"password as shared-dirs", map[string]string{"shared-dirs": "/" + password}, "shared-dirs"},
		{"passphrase as auto-rollback", map[string]string{"auto-rollback": passphrase}, "auto-rollback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := merge(remoteBase(), tt.inputs)
			in["password"], in["passphrase"] = password, passphrase
			_, err := config.Parse(lookupOf(in), config.Context{})
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			named := false
			for _, ie := range inputErrors(t, err) {
				named = named || ie.Input == tt.input
			}
			if !named {
				t.Errorf("no error names %q: %v", tt.input, err)
			}
			assertNoSecrets(t, err.Error(), password, passphrase, testKey)
		})
	}
}

func TestParseValid(t *testing.T) {
	defaults := func(c *config.Config) {
		c.Mode = "deploy"
		c.Source = "."
		c.Exclude = []string{".github"}
		c.KeepReleases = 5
		c.HealthcheckTimeout = 30 * time.Second
		c.LockTimeout = 5 * time.Minute
		c.ConnectTimeout, c.ConnectRetries = 20*time.Second, 3
		c.AutoRollback, c.Reuse = true, "copy"
		c.Concurrency = 10
		c.Rollout, c.PreparedTTL = "all", 24*time.Hour
		c.Revision, c.Actor, c.RunURL = "abc123", "octocat", "https://github.com/o/r/actions/runs/1"
	}
	key := testKey + "\n"
	kh := remoteBase()["known-hosts"]
	tests := []struct {
		name   string
		inputs map[string]string
		want   func(c *config.Config)
	}{
		{
			name:   "local deploy with only a path",
			inputs: map[string]string{"path": "/srv/site/"},
			want:   func(c *config.Config) { c.Path = "/srv/site" },
		},
		{
			name:   "command-timeout as a duration, or 0 for none",
			inputs: map[string]string{"path": "/srv/site", "command-timeout": "1m30s"},
			want:   func(c *config.Config) { c.Path, c.CommandTimeout = "/srv/site", 90*time.Second },
		},
		{
			name:   "command-timeout 0",
			inputs: map[string]string{"path": "/srv/site", "command-timeout": "0"},
			want:   func(c *config.Config) { c.Path = "/srv/site" },
		},
		{
			name:   "path is cleaned",
			inputs: map[string]string{"path": "  /srv//site/./x/../  "},
			want:   func(c *config.Config) { c.Path = "/srv/site" },
		},
		{
			name: "IPv6 in brackets with port",
			inputs: map[string]string{"host": "deploy@[2001:db8::1]:2222", "path": "/var/www/app",
				"private-key": testKey, "known-hosts": kh},
			want: func(c *config.Config) {
				c.Hosts = []config.Host{{User: "deploy", Name: "2001:db8::1", Port: 2222}}
				c.Path, c.PrivateKey, c.KnownHosts = "/var/www/app", key, kh
			},
		},
		{
			name: "IPv6 in brackets without port and IPv4",
			inputs: map[string]string{"host": "[::1]\n127.0.0.1:2200", "username": "ci", "path": "/var/www/app",
				"password": testPassword, "fingerprint": "[::1]=SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8\n[127.0.0.1]:2200 SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
			want: func(c *config.Config) {
				c.Hosts = []config.Host{{User: "ci", Name: "::1", Port: 22}, {User: "ci", Name: "127.0.0.1", Port: 2200}}
				c.Path, c.Password = "/var/www/app", testPassword
				c.Fingerprints = []config.HostFingerprint{
					{Host: "::1", Fingerprint: "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"},
					{Host: "127.0.0.1", Port: 2200, Fingerprint: "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
				}
			},
		},
		{
			name: "per-host user and port override username and port",
			inputs: map[string]string{"host": "web1\nadmin@web2:2222\nweb3:2022\nops@web4", "username": "ubuntu", "port": "2200",
				"path": "/var/www/app", "private-key": testKey, "passphrase": testPassphrase, "insecure-ignore-host-key": "true"},
			want: func(c *config.Config) {
				c.Hosts = []config.Host{
					{User: "ubuntu", Name: "web1", Port: 2200},
					{User: "admin", Name: "web2", Port: 2222},
					{User: "ubuntu", Name: "web3", Port: 2022},
					{User: "ops", Name: "web4", Port: 2200},
				}
				c.Path, c.PrivateKey, c.Passphrase, c.InsecureIgnoreHostKey = "/var/www/app", key, testPassphrase, true
			},
		},
		{
			name: "comma and newline separated lists, comments and blanks ignored",
			inputs: map[string]string{"host": "# production\nweb1, web2,\r\n\n  web3 ,web4\n#web5\n", "username": "deploy",
				"path": "/var/www/app", "private-key": testKey, "known-hosts": kh,
				"fingerprint": "web1=SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8,\n# old key\nweb1 SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
				"shared-dirs": "# kept across releases\nstorage\n\n  public/uploads  \n", "shared-files": ".env\n# .env.local",
				"writable-dirs": "bootstrap/cache/", "exclude": "# none of these\n.git\n/docs\n**/*.log\n"},
			want: func(c *config.Config) {
				c.Hosts = []config.Host{{User: "deploy", Name: "web1", Port: 22}, {User: "deploy", Name: "web2", Port: 22}, {User: "deploy", Name: "web3", Port: 22}, {User: "deploy", Name: "web4", Port: 22}}
				c.Path, c.PrivateKey, c.KnownHosts = "/var/www/app", key, kh
				c.Fingerprints = []config.HostFingerprint{
					{Host: "web1", Fingerprint: "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"},
					{Host: "web1", Fingerprint: "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},
				}
				c.SharedDirs, c.SharedFiles, c.WritableDirs = []string{"storage", "public/uploads"}, []string{".env"}, []string{"bootstrap/cache"}
				c.Exclude = []string{".git", "/docs", "**/*.log"}
			},
		},
		{
			name:   "booleans in any case",
			inputs: map[string]string{"path": "/srv/a", "auto-rollback": "False", "insecure-ignore-host-key": "TRUE"},
			want:   func(c *config.Config) { c.Path, c.AutoRollback, c.InsecureIgnoreHostKey = "/srv/a", false, true },
		},
		{
			name:   "booleans yes/no/on/off",
			inputs: map[string]string{"path": "/srv/a", "auto-rollback": " Off ", "insecure-ignore-host-key": "YES"},
			want:   func(c *config.Config) { c.Path, c.AutoRollback, c.InsecureIgnoreHostKey = "/srv/a", false, true },
		},
		{
			name:   "duration 30s",
			inputs: map[string]string{"path": "/srv/a", "healthcheck-timeout": "30s", "healthcheck-url": "https://example.com/up"},
			want: func(c *config.Config) {
				c.Path, c.HealthcheckTimeout, c.HealthcheckURL = "/srv/a", 30*time.Second, "https://example.com/up"
			},
		},
		{
			name:   "duration 2m",
			inputs: map[string]string{"path": "/srv/a", "healthcheck-timeout": "2m"},
			want:   func(c *config.Config) { c.Path, c.HealthcheckTimeout = "/srv/a", 2*time.Minute },
		},
		{
			name:   "duration in bare seconds",
			inputs: map[string]string{"path": "/srv/a", "healthcheck-timeout": "45"},
			want:   func(c *config.Config) { c.Path, c.HealthcheckTimeout = "/srv/a", 45*time.Second },
		},
		{
			name:   "duration 1m30s",
			inputs: map[string]string{"path": "/srv/a", "healthcheck-timeout": "1m30s", "healthcheck-url": "http://127.0.0.1:8080/health?x=1"},
			want: func(c *config.Config) {
				c.Path, c.HealthcheckTimeout, c.HealthcheckURL = "/srv/a", 90*time.Second, "http://127.0.0.1:8080/health?x=1"
			},
		},
		{
			name:   "mode is case-insensitive and release-id accepted",
			inputs: map[string]string{"path": "/srv/a", "mode": "Rollback", "release-id": "20261125231842"},
			want:   func(c *config.Config) { c.Path, c.Mode, c.ReleaseID = "/srv/a", "rollback", "20261125231842" },
		},
		{
			name:   "numbers",
			inputs: map[string]string{"path": "/srv/a", "keep-releases": "1", "concurrency": " 64 ", "connect-retries": "0", "connect-timeout": "5"},
			want: func(c *config.Config) {
				c.Path, c.KeepReleases, c.Concurrency, c.ConnectRetries, c.ConnectTimeout = "/srv/a", 1, 64, 0, 5*time.Second
			},
		},
		{
			name:   "empty source means the workspace",
			inputs: map[string]string{"path": "/srv/a", "source": "", "exclude": ""},
			want:   func(c *config.Config) { c.Path, c.Exclude = "/srv/a", nil },
		},
		{
			name:   "laravel preset defaults",
			inputs: map[string]string{"path": "/srv/a", "preset": "Laravel"},
			want: func(c *config.Config) {
				c.Path, c.Preset = "/srv/a", "laravel"
				c.SharedDirs, c.SharedFiles, c.WritableDirs = []string{"storage"}, []string{".env"}, []string{"bootstrap/cache", "storage"}
				c.BeforeActivate = config.LaravelBeforeActivate
				c.BeforeActivateOnce = config.LaravelBeforeActivateOnce
				c.AfterActivate = config.LaravelAfterActivate
			},
		},
		{
			name: "explicit inputs override the laravel preset",
			inputs: map[string]string{"path": "/srv/a", "preset": "laravel", "shared-dirs": "storage/app\nstorage/logs",
				"shared-files": ".env.production", "writable-dirs": "storage", "before-activate": "php artisan migrate --force",
				"after-activate": "echo 'done'"},
			want: func(c *config.Config) {
				c.Path, c.Preset = "/srv/a", "laravel"
				c.SharedDirs, c.SharedFiles, c.WritableDirs = []string{"storage/app", "storage/logs"}, []string{".env.production"}, []string{"storage"}
				c.BeforeActivate, c.AfterActivate = "php artisan migrate --force", "echo 'done'"
			},
		},
		{
			name:   "laravel preset with only one override",
			inputs: map[string]string{"path": "/srv/a", "preset": "laravel", "shared-files": ".env\nauth.json", "before-activate": ""},
			want: func(c *config.Config) {
				c.Path, c.Preset = "/srv/a", "laravel"
				c.SharedDirs, c.SharedFiles, c.WritableDirs = []string{"storage"}, []string{".env", "auth.json"}, []string{"bootstrap/cache", "storage"}
				c.BeforeActivate = config.LaravelBeforeActivate
				c.BeforeActivateOnce = config.LaravelBeforeActivateOnce
				c.AfterActivate = config.LaravelAfterActivate
			},
		},
		{
			name:   "maintenance mode wraps the preset's hooks",
			inputs: map[string]string{"path": "/srv/a", "preset": "laravel", "maintenance-mode": "true"},
			want: func(c *config.Config) {
				c.Path, c.Preset, c.MaintenanceMode = "/srv/a", "laravel", true
				c.SharedDirs, c.SharedFiles, c.WritableDirs = []string{"storage"}, []string{".env"}, []string{"bootstrap/cache", "storage"}
				c.BeforeActivate = config.LaravelBeforeActivate + "\n" + config.LaravelMaintenanceDown
				c.BeforeActivateOnce = config.LaravelBeforeActivateOnce
				c.AfterActivate = config.LaravelMaintenanceUp + "\n" + config.LaravelAfterActivate
				c.OnFailure = config.LaravelMaintenanceUp
			},
		},
		{
			name: "maintenance mode wraps hooks given explicitly, with storage/framework shared",
			inputs: map[string]string{"path": "/srv/a", "preset": "laravel", "maintenance-mode": "yes", "shared-dirs": "storage/framework\nstorage/app",
				"before-activate": "php artisan migrate --force", "after-activate": ""},
			want: func(c *config.Config) {
				c.Path, c.Preset, c.MaintenanceMode = "/srv/a", "laravel", true
				c.SharedDirs, c.SharedFiles, c.WritableDirs = []string{"storage/framework", "storage/app"}, []string{".env"}, []string{"bootstrap/cache", "storage"}
				c.BeforeActivate = "php artisan migrate --force\n" + config.LaravelMaintenanceDown
				c.AfterActivate = config.LaravelMaintenanceUp + "\n" + config.LaravelAfterActivate
				c.OnFailure = config.LaravelMaintenanceUp
			},
		},
		{
			name: "jump host without a user takes the target's (no empty user@)",
			inputs: map[string]string{"host": "deploy@web1", "jump-host": "bastion.example.com", "path": "/srv/a",
				"private-key": testKey, "known-hosts": kh},
			want: func(c *config.Config) {
				c.Hosts = []config.Host{{User: "deploy", Name: "web1", Port: 22}}
				c.JumpHost = &config.Host{Name: "bastion.example.com", Port: 22}
				c.Path, c.PrivateKey, c.KnownHosts = "/srv/a", key, kh
			},
		},
		{
			name: "bare fingerprints pin the one host",
			inputs: map[string]string{"host": "deploy@web1:2222", "path": "/srv/a", "private-key": testKey,
				"fingerprint": "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8\nSHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
			want: func(c *config.Config) {
				c.Hosts = []config.Host{{User: "deploy", Name: "web1", Port: 2222}}
				c.Path, c.PrivateKey = "/srv/a", key
				c.Fingerprints = []config.HostFingerprint{
					{Host: "web1", Port: 2222, Fingerprint: "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"},
					{Host: "web1", Port: 2222, Fingerprint: "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
				}
			},
		},
		{
			name: "a fingerprint per host and for the jump host, in both forms",
			inputs: map[string]string{"host": "deploy@web1\ndeploy@Web2.example.com:2222", "jump-host": "bastion:2200", "path": "/srv/a", "private-key": testKey,
				"fingerprint": "web1=SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8\n[web2.example.com]:2222  SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\nbastion:2200=SHA256:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"},
			want: func(c *config.Config) {
				c.Hosts = []config.Host{{User: "deploy", Name: "web1", Port: 22}, {User: "deploy", Name: "Web2.example.com", Port: 2222}}
				c.JumpHost = &config.Host{Name: "bastion", Port: 2200}
				c.Path, c.PrivateKey = "/srv/a", key
				c.Fingerprints = []config.HostFingerprint{
					{Host: "web1", Fingerprint: "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"},
					{Host: "web2.example.com", Port: 2222, Fingerprint: "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
					{Host: "bastion", Port: 2200, Fingerprint: "SHA256:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"},
				}
			},
		},
		{
			name: "jump host with user and port",
			inputs: map[string]string{"host": "web1", "username": "deploy", "jump-host": "jump@[2001:db8::9]:2200", "path": "/srv/a",
				"private-key": testKey, "known-hosts": kh},
			want: func(c *config.Config) {
				c.Hosts = []config.Host{{User: "deploy", Name: "web1", Port: 22}}
				c.JumpHost = &config.Host{User: "jump", Name: "2001:db8::9", Port: 2200}
				c.Path, c.PrivateKey, c.KnownHosts = "/srv/a", key, kh
			},
		},
	}
	rc := config.Context{Revision: "abc123", Actor: "octocat", RunURL: "https://github.com/o/r/actions/runs/1"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.Parse(lookupOf(tt.inputs), rc)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := &config.Config{}
			defaults(want)
			tt.want(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", *got, *want)
			}
		})
	}
}

func TestParseSecrets(t *testing.T) {
	cfg, err := config.Parse(lookupOf(remoteBase()), config.Context{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PrivateKey != testKey+"\n" {
		t.Errorf("PrivateKey = %q, want the key with one final newline", cfg.PrivateKey)
	}
	want := []string{testKey + "\n", testPassphrase, testPassword}
	if got := cfg.Secrets(); !slices.Equal(got, want) {
		t.Errorf("Secrets() = %q, want %q", got, want)
	}
	if !cfg.Remote() {
		t.Error("Remote() = false with a host")
	}
	cfg, err = config.Parse(lookupOf(map[string]string{"path": "/srv/a", "private-key": "\n"}), config.Context{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PrivateKey != "" || len(cfg.Secrets()) != 0 || cfg.Remote() {
		t.Errorf("blank key: PrivateKey=%q Secrets=%q Remote=%v", cfg.PrivateKey, cfg.Secrets(), cfg.Remote())
	}
}

// TestFingerprintsFor: each server is checked against its own pins only.
func TestFingerprintsFor(t *testing.T) {
	cfg, err := config.Parse(lookupOf(map[string]string{
		"host": "deploy@web1, deploy@web2:2222, deploy@web3", "jump-host": "bastion", "path": "/srv/a", "private-key": testKey,
		"known-hosts": remoteBase()["known-hosts"],
		"fingerprint": "web1=SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8\nWEB1 SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n" +
			"[web2]:2222 SHA256:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\nbastion=SHA256:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC",
	}), config.Context{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		h    config.Host
		want []string
	}{
		{cfg.Hosts[0], []string{"SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8", "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}},
		{cfg.Hosts[1], []string{"SHA256:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"}},
		{cfg.Hosts[2], nil}, // known-hosts pins it
		{*cfg.JumpHost, []string{"SHA256:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"}},
	} {
		if got := cfg.FingerprintsFor(tt.h); !slices.Equal(got, tt.want) {
			t.Errorf("FingerprintsFor(%s) = %q, want %q", tt.h, got, tt.want)
		}
	}
}

// TestHealthcheckURLPassword: a password in healthcheck-url is a secret:
// Secrets has it (as written and decoded) and no error message shows it.
func TestHealthcheckURLPassword(t *testing.T) {
	cfg, err := config.Parse(lookupOf(map[string]string{"path": "/srv/a", "healthcheck-url": "https://monitor:p%40ss-W0rd@example.com/up"}), config.Context{})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Secrets(); !slices.Contains(got, "p@ss-W0rd") || !slices.Contains(got, "p%40ss-W0rd") {
		t.Errorf("Secrets() = %q, want the URL's password, decoded and as written", got)
	}
	for _, bad := range []string{"ftp://monitor:p%40ss-W0rd@example.com/up", "https://monitor:p%40ss-W0rd@/up", "http://monitor:p%40ss-W0rd@exa mple.com/%zz"} {
		_, err := config.Parse(lookupOf(map[string]string{"path": "/srv/a", "healthcheck-url": bad}), config.Context{})
		if err == nil || !strings.Contains(err.Error(), "healthcheck-url") {
			t.Fatalf("%s: err = %v", bad, err)
		}
		if strings.Contains(err.Error(), "p%40ss-W0rd") || strings.Contains(err.Error(), "p@ss-W0rd") || !strings.Contains(err.Error(), "monitor:xxxxx@") {
			t.Errorf("%s: the message shows the password or no redacted URL: %v", bad, err)
		}
	}
}

func TestHostStrings(t *testing.T) {
	tests := []struct {
		h          config.Host
		addr, text string
	}{
		{config.Host{User: "deploy", Name: "web1", Port: 22}, "web1:22", "deploy@web1:22"},
		{config.Host{User: "deploy", Name: "2001:db8::1", Port: 2222}, "[2001:db8::1]:2222", "deploy@[2001:db8::1]:2222"},
		{config.Host{Name: "bastion", Port: 22}, "bastion:22", "bastion:22"},
	}
	for _, tt := range tests {
		if got := tt.h.Addr(); got != tt.addr {
			t.Errorf("%#v.Addr() = %q, want %q", tt.h, got, tt.addr)
		}
		if got := tt.h.String(); got != tt.text {
			t.Errorf("%#v.String() = %q, want %q", tt.h, got, tt.text)
		}
	}
}

func TestValidReleaseID(t *testing.T) {
	for _, id := range []string{"20261125231842", "20000101000000", "20240229235959"} {
		if err := config.ValidReleaseID(id); err != nil {
			t.Errorf("ValidReleaseID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", "2026112523184", "20230229000000", "20261125246000", "2026112523184x", " 20261125231842"} {
		if err := config.ValidReleaseID(id); err == nil {
			t.Errorf("ValidReleaseID(%q) accepted it", id)
		}
	}
}

// FuzzParseHost checks that whatever ParseHost accepts is a host name or IP
// address that can go into a command line or a dial string unchanged.
func FuzzParseHost(f *testing.F) {
	for _, s := range []string{"web1", "deploy@web1:2222", "[::1]:22", "user@", "@h", "h:", "a b", "$(id)", "[::1", "h:65536"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		h, err := config.ParseHost(spec, "", 22)
		if err != nil {
			return
		}
		if h.Name == "" || h.Port < 1 || h.Port > 65535 {
			t.Fatalf("ParseHost(%q) = %#v", spec, h)
		}
		if strings.ContainsAny(h.Name+h.User, " \t\r\n\x00;|&$`'\"\\<>()*?[]{}~!#/=") || strings.HasPrefix(h.Name, "-") || strings.HasPrefix(h.User, "-") {
			t.Fatalf("ParseHost(%q) accepted unsafe %#v", spec, h)
		}
		again, err := config.ParseHost(h.String(), "", 22)
		if err != nil || again != h {
			t.Fatalf("ParseHost(%q) = %#v; its String %q parses to %#v, %v", spec, h, h.String(), again, err)
		}
	})
}
