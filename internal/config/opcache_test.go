package config_test

import (
	"slices"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
)

func TestOpcacheReset(t *testing.T) {
	cfg, err := config.Parse(lookupOf(merge(localBase(), map[string]string{"opcache-reset": "fpm-reload", "opcache-reset-command": "sudo systemctl reload php8.2-fpm"})), config.Context{})
	if err != nil || cfg.OpcacheReset != config.OpcacheFPMReload || cfg.OpcacheResetCommand != "sudo systemctl reload php8.2-fpm" {
		t.Errorf("fpm-reload: %v %+v", err, cfg)
	}
	cfg, err = config.Parse(lookupOf(merge(localBase(), map[string]string{"opcache-reset": "URL", "opcache-reset-url": "https://web1/reset.php\n\nhttps://ops:pa%24s-99@web2/reset.php?t=1"})), config.Context{})
	if err != nil || cfg.OpcacheReset != config.OpcacheURL || len(cfg.OpcacheResetURLs) != 2 {
		t.Fatalf("url: %v %+v", err, cfg)
	}
	if s := cfg.Secrets(); !slices.Contains(s, "pa$s-99") || !slices.Contains(s, "pa%24s-99") {
		t.Errorf("Secrets() = %q, want the password of opcache-reset-url", s)
	}

	refused := []struct {
		name   string
		inputs map[string]string
		input  string
		phrase string
	}{
		{"unknown kind", map[string]string{"opcache-reset": "restart"}, "opcache-reset", `"restart" is not one of fpm-reload, url`},
		{"fpm-reload without a command", map[string]string{"opcache-reset": "fpm-reload"}, "opcache-reset-command", "needs the command that resets OPcache on each server"},
		{"fpm-reload with a URL", map[string]string{"opcache-reset": "fpm-reload", "opcache-reset-command": "x", "opcache-reset-url": "https://a/r"}, "opcache-reset-url", "is for opcache-reset: url, not fpm-reload"},
		{"url without a URL", map[string]string{"opcache-reset": "url"}, "opcache-reset-url", "needs the URL"},
		{"url with a command", map[string]string{"opcache-reset": "url", "opcache-reset-url": "https://a/r", "opcache-reset-command": "x"}, "opcache-reset-command", "is for opcache-reset: fpm-reload, not url"},
		{"command without opcache-reset", map[string]string{"opcache-reset-command": "x"}, "opcache-reset-command", "is run by opcache-reset: fpm-reload only"},
		{"URL without opcache-reset", map[string]string{"opcache-reset-url": "https://a/r"}, "opcache-reset-url", "is requested by opcache-reset: url only"},
		{"URL not http", map[string]string{"opcache-reset": "url", "opcache-reset-url": "ftp://ops:hunter2-PASSWORD-5e77@a/r"}, "opcache-reset-url", `"ftp://ops:xxxxx@a/r" must start with http://`},
		{"URL without a host", map[string]string{"opcache-reset": "url", "opcache-reset-url": "https://a/r\nhttp:///reset.php"}, "opcache-reset-url", "not a URL with a host"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) { assertRefused(t, tt.inputs, config.Context{}, tt.input, tt.phrase) })
	}
}
