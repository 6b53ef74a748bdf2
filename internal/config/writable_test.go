package config_test

import (
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
)

func TestWritableMode(t *testing.T) {
	valid := []struct {
		inputs         map[string]string
		mode, username string
	}{
		{map[string]string{"writable-dirs": "cache"}, "", ""},
		{map[string]string{"writable-dirs": "cache", "writable-mode": "chmod"}, "", ""},
		{map[string]string{"writable-dirs": "cache", "writable-mode": "ACL", "writable-user": "www-data"}, "acl", "www-data"},
		{map[string]string{"writable-dirs": "cache", "writable-mode": "chgrp", "writable-user": "nginx"}, "chgrp", "nginx"},
		{map[string]string{"preset": "laravel", "writable-mode": "acl", "writable-user": "_www"}, "acl", "_www"},
	}
	for _, tt := range valid {
		cfg, err := config.Parse(lookupOf(merge(localBase(), tt.inputs)), config.Context{})
		if err != nil {
			t.Errorf("%v: %v", tt.inputs, err)
			continue
		}
		if cfg.WritableMode != tt.mode || cfg.WritableUser != tt.username {
			t.Errorf("%v: mode %q user %q, want %q %q", tt.inputs, cfg.WritableMode, cfg.WritableUser, tt.mode, tt.username)
		}
	}

	refused := []struct {
		name   string
		inputs map[string]string
		input  string
		phrase string
	}{
		{"unknown mode", map[string]string{"writable-dirs": "cache", "writable-mode": "chown"}, "writable-mode", `"chown" is not one of chmod, acl, chgrp`},
		{"acl without user", map[string]string{"writable-dirs": "cache", "writable-mode": "acl"}, "writable-user", "writable-mode acl needs writable-user: the web server's user"},
		{"chgrp without group", map[string]string{"writable-dirs": "cache", "writable-mode": "chgrp"}, "writable-user", "writable-mode chgrp needs writable-user: the web server's group"},
		{"user with chmod", map[string]string{"writable-dirs": "cache", "writable-mode": "chmod", "writable-user": "www-data"}, "writable-user", "acl or chgrp only (writable-mode is chmod)"},
		{"user without a mode", map[string]string{"writable-dirs": "cache", "writable-user": "www-data"}, "writable-user", "writable-mode is chmod, the default"},
		{"user with a shell command", map[string]string{"writable-dirs": "cache", "writable-mode": "acl", "writable-user": "www-data;id"}, "writable-user", "not a valid user or group name"},
		{"user like an option", map[string]string{"writable-dirs": "cache", "writable-mode": "acl", "writable-user": "-R"}, "writable-user", "not a valid user or group name"},
		{"user with a colon (an ACL entry)", map[string]string{"writable-dirs": "cache", "writable-mode": "acl", "writable-user": "www-data:rwx,u:evil"}, "writable-user", "not a valid"},
		{"acl without writable-dirs", map[string]string{"writable-mode": "acl", "writable-user": "www-data"}, "writable-mode", "nothing to do without writable-dirs"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) { assertRefused(t, tt.inputs, config.Context{}, tt.input, tt.phrase) })
	}
}
