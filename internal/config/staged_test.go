package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
)

// fleetBase is a valid remote deploy to three hosts.
func fleetBase() map[string]string {
	return merge(remoteBase(), map[string]string{"host": "deploy@web1, deploy@web2, deploy@web3"})
}

func TestStagedAccepted(t *testing.T) {
	type staged struct {
		mode, releaseID, rollout string
		canary, batch            int // batch: BatchHosts()
		ttl                      time.Duration
	}
	tests := []struct {
		name   string
		inputs map[string]string
		want   staged
	}{
		{"defaults", nil, staged{mode: "deploy", rollout: "all", ttl: 24 * time.Hour}},
		{"prepare without an id: the run picks one", map[string]string{"mode": "prepare"}, staged{mode: "prepare", rollout: "all", ttl: 24 * time.Hour}},
		{"prepare as the id a first job computed", map[string]string{"mode": "Prepare", "release-id": "20261125231842"}, staged{mode: "prepare", releaseID: "20261125231842", rollout: "all", ttl: 24 * time.Hour}},
		{"activate", map[string]string{"mode": "activate", "release-id": "20261125231842", "force": "true"}, staged{mode: "activate", releaseID: "20261125231842", rollout: "all", ttl: 24 * time.Hour}},
		{"prepared-ttl", map[string]string{"mode": "prepare", "prepared-ttl": "90m"}, staged{mode: "prepare", rollout: "all", ttl: 90 * time.Minute}},
		{"prepared-ttl in bare seconds", map[string]string{"prepared-ttl": "3600"}, staged{mode: "deploy", rollout: "all", ttl: time.Hour}},
		{"canary: one host first by default", map[string]string{"rollout": "canary"}, staged{mode: "deploy", rollout: "canary", canary: 1, ttl: 24 * time.Hour}},
		{"canary: two of three, activate", map[string]string{"mode": "activate", "release-id": "20261125231842", "rollout": "Canary", "canary": "2"},
			staged{mode: "activate", releaseID: "20261125231842", rollout: "canary", canary: 2, ttl: 24 * time.Hour}},
		{"batches of a number", map[string]string{"rollout": "batches", "batch-size": "2"}, staged{mode: "deploy", rollout: "batches", batch: 2, ttl: 24 * time.Hour}},
		{"batches of a percentage, rounded up", map[string]string{"rollout": "batches", "batch-size": "50%"}, staged{mode: "deploy", rollout: "batches", batch: 2, ttl: 24 * time.Hour}},
		{"batches of a small percentage: at least one host", map[string]string{"rollout": "batches", "batch-size": "1 %"}, staged{mode: "deploy", rollout: "batches", batch: 1, ttl: 24 * time.Hour}},
		{"a percentage of one host is that host", map[string]string{"host": "deploy@web1", "rollout": "batches", "batch-size": "25%"}, staged{mode: "deploy", rollout: "batches", batch: 1, ttl: 24 * time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse(lookupOf(merge(fleetBase(), tt.inputs)), config.Context{})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := staged{mode: c.Mode, releaseID: c.ReleaseID, rollout: c.Rollout, canary: c.Canary, batch: c.BatchHosts(), ttl: c.PreparedTTL}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestBatchHostsRoundsUp(t *testing.T) {
	for _, tt := range []struct {
		hosts   int
		size    string
		batches int
	}{
		{10, "25%", 3}, {10, "10%", 1}, {10, "99%", 10}, {4, "50%", 2}, {3, "34%", 2}, {7, "3", 3}, {20, "5%", 1},
	} {
		var hosts []string
		for i := range tt.hosts {
			hosts = append(hosts, "deploy@web"+string(rune('a'+i)))
		}
		c, err := config.Parse(lookupOf(merge(remoteBase(), map[string]string{"host": strings.Join(hosts, ","), "rollout": "batches", "batch-size": tt.size})), config.Context{})
		if err != nil {
			t.Fatalf("%d hosts, batch-size %s: %v", tt.hosts, tt.size, err)
		}
		if got := c.BatchHosts(); got != tt.batches {
			t.Errorf("%d hosts, batch-size %s: %d a batch, want %d", tt.hosts, tt.size, got, tt.batches)
		}
	}
}

// TestStagedRefused: each combination that makes no sense is refused,
// naming the input, with what to do instead.
func TestStagedRefused(t *testing.T) {
	const id = "20261125231842"
	tests := []struct {
		name   string
		inputs map[string]string
		input  string
		phrase string
	}{
		{"activate without release-id", map[string]string{"mode": "activate"}, "release-id", "mode: activate needs the id of the prepared release"},
		{"activate with a blank release-id", map[string]string{"mode": "activate", "release-id": "  "}, "release-id", "deployed-release-id output of the mode: prepare run"},
		{"rollout unknown", map[string]string{"rollout": "blue-green"}, "rollout", `"blue-green" is not one of all, canary, batches`},
		{"rollout with prepare", map[string]string{"mode": "prepare", "rollout": "canary"}, "rollout", "mode: prepare switches nothing: give rollout: canary to the mode: activate run"},
		{"rollout with rollback", map[string]string{"mode": "rollback", "rollout": "batches", "batch-size": "1"}, "rollout", "mode: rollback switches every host at once"},
		{"rollout with unlock", map[string]string{"mode": "unlock", "rollout": "canary"}, "rollout", "mode: unlock switches nothing"},
		{"canary with batches", map[string]string{"rollout": "batches", "canary": "1", "batch-size": "1"}, "canary", "canary and batch-size do not go together"},
		{"canary and batch-size with canary", map[string]string{"rollout": "canary", "canary": "1", "batch-size": "1"}, "canary", "do not go together"},
		{"canary without rollout", map[string]string{"canary": "1"}, "canary", "needs rollout: canary (rollout is all)"},
		{"canary 0", map[string]string{"rollout": "canary", "canary": "0"}, "canary", `"0" must be a whole number of at least 1`},
		{"canary a word", map[string]string{"rollout": "canary", "canary": "one"}, "canary", "whole number"},
		{"canary as many as the hosts", map[string]string{"rollout": "canary", "canary": "3"}, "canary", "3 canaries of 3 hosts leave no host to follow them; give fewer than 3"},
		{"canary more than the hosts", map[string]string{"rollout": "canary", "canary": "5"}, "canary", "leave no host to follow"},
		{"canary with one host", map[string]string{"host": "deploy@web1", "rollout": "canary"}, "rollout", "needs at least 2 hosts (canaries first, then the others), and host lists 1 host"},
		{"canary on this machine", map[string]string{"host": "", "known-hosts": "", "rollout": "canary"}, "rollout", "no host is given"},
		{"batches without batch-size", map[string]string{"rollout": "batches"}, "batch-size", "rollout: batches needs batch-size"},
		{"batch-size without rollout", map[string]string{"batch-size": "2"}, "batch-size", "needs rollout: batches (rollout is all)"},
		{"batch-size 0", map[string]string{"rollout": "batches", "batch-size": "0"}, "batch-size", "not a number of hosts"},
		{"batch-size a word", map[string]string{"rollout": "batches", "batch-size": "half"}, "batch-size", "not a number of hosts (2) or a percentage of them (25%)"},
		{"batch-size every host", map[string]string{"rollout": "batches", "batch-size": "3"}, "batch-size", "3 puts every host (3 hosts) in one batch, which is rollout: all"},
		{"batch-size a typo for a percentage", map[string]string{"rollout": "batches", "batch-size": "50"}, "batch-size", "a percentage such as 25%"},
		{"batch-size 0%", map[string]string{"rollout": "batches", "batch-size": "0%"}, "batch-size", "not a percentage of the hosts from 1% to 99%"},
		{"batch-size 100%", map[string]string{"rollout": "batches", "batch-size": "100%"}, "batch-size", "100% puts every host in one batch"},
		{"batch-size 150%", map[string]string{"rollout": "batches", "batch-size": "150%"}, "batch-size", "less than 100%"},
		{"batch-size x%", map[string]string{"rollout": "batches", "batch-size": "x%"}, "batch-size", "not a percentage"},
		{"batch-size 2.5", map[string]string{"rollout": "batches", "batch-size": "2.5"}, "batch-size", "not a number of hosts"},
		{"prepared-ttl 0", map[string]string{"prepared-ttl": "0"}, "prepared-ttl", `"0" must be a duration above 0`},
		{"prepared-ttl a word", map[string]string{"prepared-ttl": "a day"}, "prepared-ttl", "duration above 0 (e.g. 24h, 90m)"},
		{"prepared-ttl negative", map[string]string{"prepared-ttl": "-1h"}, "prepared-ttl", "duration above 0"},
		{"prepared-ttl in days", map[string]string{"prepared-ttl": "2d"}, "prepared-ttl", "duration above 0"},
		{"maintenance-mode with prepare", map[string]string{"mode": "prepare", "preset": "laravel", "maintenance-mode": "true"}, "maintenance-mode", "hold the live site in maintenance until mode: activate"},
		{"maintenance-mode with activate", map[string]string{"mode": "activate", "release-id": id, "preset": "laravel", "maintenance-mode": "true"}, "maintenance-mode", "does not go with mode: activate"},
		{"healthcheck-url {host} on this machine", map[string]string{"host": "", "known-hosts": "", "healthcheck-url": "https://{host}/up"}, "healthcheck-url", "{host} stands for each host's name, but no host is given"},
		{"healthcheck-url {host} in a bad place", map[string]string{"healthcheck-url": "https://x:{host}/up"}, "healthcheck-url", "not a URL with a host"},
		{"healthcheck-url {host} without a scheme", map[string]string{"healthcheck-url": "{host}/up"}, "healthcheck-url", "must start with http:// or https://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse(lookupOf(merge(fleetBase(), tt.inputs)), config.Context{})
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", c)
			}
			assertNoSecrets(t, err.Error())
			found := false
			for _, ie := range inputErrors(t, err) {
				if ie.Input != tt.input {
					t.Errorf("error names input %q, want only %q: %v", ie.Input, tt.input, ie)
				}
				found = found || strings.Contains(ie.Reason, tt.phrase)
			}
			if !found {
				t.Errorf("no error for %q says %q; got:\n%v", tt.input, tt.phrase, err)
			}
		})
	}
}

func TestHealthcheckURLFor(t *testing.T) {
	c, err := config.Parse(lookupOf(merge(remoteBase(), map[string]string{
		"host":            "deploy@web1.example.com, ops@[2001:db8::1]:2222, deploy@10.0.0.7:2200",
		"healthcheck-url": "https://monitor:pw@{host}:8443/up?from={host}",
	})), config.Context{})
	if err != nil {
		t.Fatal(err)
	}
	if !c.HealthcheckPerHost() {
		t.Error("HealthcheckPerHost is false with {host} in the URL")
	}
	want := []string{
		"https://monitor:pw@web1.example.com:8443/up?from=web1.example.com",
		"https://monitor:pw@[2001:db8::1]:8443/up?from=[2001:db8::1]",
		"https://monitor:pw@10.0.0.7:8443/up?from=10.0.0.7",
	}
	for i, h := range c.Hosts {
		if got := c.HealthcheckURLFor(h); got != want[i] {
			t.Errorf("%s: %s, want %s", h, got, want[i])
		}
	}
	c.HealthcheckURL = "https://lb.example.com/up"
	if c.HealthcheckPerHost() || c.HealthcheckURLFor(c.Hosts[0]) != c.HealthcheckURL {
		t.Errorf("without {host}: per host %v, URL %s", c.HealthcheckPerHost(), c.HealthcheckURLFor(c.Hosts[0]))
	}
}
