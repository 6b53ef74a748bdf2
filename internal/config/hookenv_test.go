package config_test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
)

// runnerEnv is the runner's environment for a name alone in env/secret-env.
func runnerEnv(vars map[string]string) config.Context {
	return config.Context{Getenv: func(name string) (string, bool) { v, ok := vars[name]; return v, ok }}
}

func TestHookEnvParsed(t *testing.T) {
	runner := runnerEnv(map[string]string{"FROM_STEP": "step value", "EMPTY_IN_STEP": "", "DB_PASSWORD": "from-the-step-secret"})
	tests := []struct {
		name              string
		env, secret       string
		wantEnv, wantSecr map[string]string
	}{
		{
			name:    "NAME=value keeps the rest of the line verbatim",
			env:     "APP_ENV=production\nURL=https://x.test/?a=1&b=2\n  INDENTED=yes\nTRAILING=two spaces  \nEMPTY=\n_x1=ok",
			wantEnv: map[string]string{"APP_ENV": "production", "URL": "https://x.test/?a=1&b=2", "INDENTED": "yes", "TRAILING": "two spaces  ", "EMPTY": "", "_x1": "ok"},
		},
		{
			name:    "blank lines, comments and CRLF",
			env:     "# a comment\r\n\r\nA=1\r\n   \r\n  # indented comment\r\nB=2\r\n",
			wantEnv: map[string]string{"A": "1", "B": "2"},
		},
		{
			name:     "a name alone passes the step's variable",
			env:      "FROM_STEP\nEMPTY_IN_STEP",
			secret:   "DB_PASSWORD",
			wantEnv:  map[string]string{"FROM_STEP": "step value", "EMPTY_IN_STEP": ""},
			wantSecr: map[string]string{"DB_PASSWORD": "from-the-step-secret"},
		},
		{
			name:     "multi-line values as in $GITHUB_ENV",
			env:      "CERT<<EOF\n-----BEGIN-----\n\n# not a comment here\nA=not a variable\n-----END-----\nEOF\nAFTER=1",
			secret:   "KEY<<END_OF_KEY\r\nline 1\r\nline 2\r\n  END_OF_KEY  \r\nONE_LINE<<X\nX\nTWO<<X\n\n\nX",
			wantEnv:  map[string]string{"CERT": "-----BEGIN-----\n\n# not a comment here\nA=not a variable\n-----END-----", "AFTER": "1"},
			wantSecr: map[string]string{"KEY": "line 1\nline 2", "ONE_LINE": "", "TWO": "\n"},
		},
		{
			name:     "= before << is a value, << before = a multi-line value",
			env:      "A=x<<y\nB<<C=D\nline\nC=D",
			wantEnv:  map[string]string{"A": "x<<y", "B": "line"},
			wantSecr: nil,
		},
		{
			name:     "names that only look reserved",
			env:      "MY_PATH=1\nHOMEPAGE=2\nPS5=3\nLDAP_URL=4\nRELEASE=5\nDEPLOYER=6\npath=7",
			wantEnv:  map[string]string{"MY_PATH": "1", "HOMEPAGE": "2", "PS5": "3", "LDAP_URL": "4", "RELEASE": "5", "DEPLOYER": "6", "path": "7"},
			wantSecr: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse(lookupOf(merge(localBase(), map[string]string{"env": tt.env, "secret-env": tt.secret})), runner)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(cfg.Env, tt.wantEnv) || !maps.Equal(cfg.SecretEnv, tt.wantSecr) {
				t.Errorf("env %q secret-env %q, want %q and %q", cfg.Env, cfg.SecretEnv, tt.wantEnv, tt.wantSecr)
			}
			all := cfg.HookEnv()
			if len(all) != len(tt.wantEnv)+len(tt.wantSecr) {
				t.Errorf("HookEnv() = %q", all)
			}
			for _, v := range tt.wantSecr {
				if v != "" && !slices.Contains(cfg.Secrets(), v) {
					t.Errorf("Secrets() lacks a secret-env value: %q", cfg.Secrets())
				}
			}
			for _, v := range tt.wantEnv {
				if v != "" && slices.Contains(cfg.Secrets(), v) {
					t.Errorf("Secrets() holds an env value %q", v)
				}
			}
		})
	}
	cfg, err := config.Parse(lookupOf(localBase()), runner)
	if err != nil || cfg.Env != nil || cfg.SecretEnv != nil || cfg.HookEnv() != nil {
		t.Errorf("no env: %v %q %q", err, cfg.Env, cfg.SecretEnv)
	}
}

// TestHookEnvRefused: every refusal names its input and line and never
// quotes a line of secret-env.
func TestHookEnvRefused(t *testing.T) {
	const secretValue = "s3cret-VALUE-e41b"
	runner := runnerEnv(map[string]string{"FROM_STEP": "x", "PATH": "/usr/bin"})
	tests := []struct {
		name, input, text string
		other             string // the other input's text
		phrase            string
	}{
		{"name starts with a digit", "env", "1A=x", "", `line 1: "1A" is not NAME=value, NAME or NAME<<EOF`},
		{"name with a hyphen", "env", "OK=1\nMY-VAR=x", "", `line 2: "MY-VAR" is not NAME=value`},
		{"name with a space before =", "env", "A =x", "", `line 1: "A " is not`},
		{"name with a dollar", "env", "$(id)=x", "", `"$(id)" is not`},
		{"empty name", "env", "=x", "", `line 1: "" is not`},
		{"bad name in secret-env is not quoted", "secret-env", "A=1\n" + secretValue + " x", "", "line 2: not NAME=value, NAME or NAME<<EOF"},
		{"bad name before = in secret-env", "secret-env", "MY-" + secretValue + "=x", "", "line 1: not NAME=value"},
		{"unset name", "env", "NOT_IN_THE_STEP", "", "line 1: NOT_IN_THE_STEP is not set in the runner's environment"},
		{"unset name in secret-env is not quoted", "secret-env", "\n\nSECRET_LOOKING_" + strings.ReplaceAll(secretValue, "-", "_"), "", "line 3: the variable this line names is not set"},
		{"heredoc without an end", "env", "A<<EOF\nline\nEOF2", "", "line 1: A<<EOF has no closing line EOF"},
		{"heredoc without a delimiter", "env", "A<<\nx", "", "line 1: A<< needs a delimiter"},
		{"heredoc without an end in secret-env", "secret-env", "K<<END\n" + secretValue, "", "line 1: K<<END has no closing line END"},
		{"NUL in a value", "env", "A=x\x00y", "", "line 1: the value of A holds a NUL byte"},
		{"duplicate in env", "env", "A=1\nB=2\nA=3", "", "line 3: A is already set by env line 1"},
		{"duplicate in secret-env", "secret-env", "A=1\nA<<X\n" + secretValue + "\nX", "", "line 2: A is already set by secret-env line 1"},
		{"duplicate across the inputs", "secret-env", "\nTOKEN=" + secretValue, "TOKEN=public", "line 2: TOKEN is already set by env line 1"},
		{"duplicate of a step variable", "secret-env", "FROM_STEP", "FROM_STEP", "line 1: FROM_STEP is already set by env line 1"},
	}
	for _, name := range []string{"PATH", "HOME", "SHELL", "USER", "LOGNAME", "IFS", "PS1", "PS2", "PS3", "PS4", "ENV", "BASH_ENV",
		"LD_PRELOAD", "LD_LIBRARY_PATH", "RELEASE_ID", "RELEASE_PATH", "RELEASE_ANYTHING", "DEPLOY_PATH", "DEPLOY_X",
		"PREVIOUS_RELEASE_ID", "REVISION", "REVISION_NOTE"} {
		tests = append(tests,
			struct{ name, input, text, other, phrase string }{"reserved " + name, "env", "A=1\n" + name + "=x", "", "line 2: " + name + " cannot be set: "},
			struct{ name, input, text, other, phrase string }{"reserved " + name + " in secret-env", "secret-env", name + "<<EOF\n" + secretValue + "\nEOF", "", "line 1: " + name + " cannot be set: "},
		)
	}
	tests = append(tests, struct{ name, input, text, other, phrase string }{"reserved name alone, set in the step", "env", "PATH", "", "line 1: PATH cannot be set: the server's login sets it"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			other := map[string]string{"env": "secret-env", "secret-env": "env"}[tt.input]
			assertRefused(t, map[string]string{tt.input: tt.text, other: tt.other}, runner, tt.input, tt.phrase,
				testPassphrase, testPassword, testKey, secretValue, strings.ReplaceAll(secretValue, "-", "_"))
		})
	}
}

// assertRefused checks that Parse refuses remoteBase with inputs, every
// error naming input and one saying phrase, and that no message holds a
// secret (the base's when none are given).
func assertRefused(t *testing.T, inputs map[string]string, rc config.Context, input, phrase string, secrets ...string) {
	t.Helper()
	_, err := config.Parse(lookupOf(merge(remoteBase(), inputs)), rc)
	if err == nil {
		t.Fatal("Parse accepted it")
	}
	found := false
	for _, ie := range inputErrors(t, err) {
		if ie.Input != input {
			t.Errorf("error names input %q, want %q: %v", ie.Input, input, ie)
		}
		found = found || strings.Contains(ie.Reason, phrase)
	}
	if !found {
		t.Errorf("no error says %q; got:\n%v", phrase, err)
	}
	assertNoSecrets(t, err.Error(), secrets...)
}
