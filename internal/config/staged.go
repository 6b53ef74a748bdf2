package config

import (
	"strconv"
	"strings"

	"github.com/atomic-deploy/atomic-deploy/internal/words"
)

// Rollouts: how the switch moves across the hosts (the rollout input).
const (
	RolloutAll     = "all"     // every host at once, all or none
	RolloutCanary  = "canary"  // Canary hosts first, then the others together
	RolloutBatches = "batches" // BatchSize (or BatchPercent) hosts at a time
)

// parseStaged checks what staged releases and rollouts add: release-id
// for activate, rollout with canary or batch-size, and modes or inputs
// that cannot go with them. canary and batch-size have no default in the
// table, so that giving one without its rollout can be told from not
// giving it.
func parseStaged(c *Config, get func(string) string, fail func(string, string, ...any)) {
	hosts := max(len(c.Hosts), 1) // no host: this machine, one target
	if c.Mode == ModeActivate && c.ReleaseID == "" {
		fail("release-id", "mode: activate needs the id of the prepared release to switch to (the deployed-release-id output of the mode: prepare run, or the release-id it was given)")
	}
	if c.MaintenanceMode && (c.Mode == ModePrepare || c.Mode == ModeActivate) {
		fail("maintenance-mode", "does not go with mode: %s: php artisan down runs at the end of before-activate, so a prepared release would hold the live site in maintenance until mode: activate; use mode: deploy, or migrations the live release can run against", c.Mode)
	}

	c.Rollout = strings.ToLower(get("rollout"))
	canaryText, batchText := get("canary"), get("batch-size")
	switch c.Rollout {
	case RolloutAll, RolloutCanary, RolloutBatches:
	default:
		fail("rollout", "%q is not one of all, canary, batches", get("rollout"))
		return
	}
	if c.Rollout != RolloutAll {
		switch c.Mode {
		case ModePrepare:
			fail("rollout", "mode: prepare switches nothing: give rollout: %s to the mode: activate run", c.Rollout)
		case ModeRollback:
			fail("rollout", "mode: rollback switches every host at once (all or none); rollout: %s is for mode: deploy or activate", c.Rollout)
		case ModeUnlock:
			fail("rollout", "mode: unlock switches nothing; rollout: %s is for mode: deploy or activate", c.Rollout)
		}
	}
	if canaryText != "" && batchText != "" {
		fail("canary", "canary and batch-size do not go together: rollout: canary switches the canaries, then every other host at once; rollout: batches switches batch-size hosts at a time")
		return
	}

	if canaryText != "" && c.Rollout != RolloutCanary {
		fail("canary", "needs rollout: canary (rollout is %s)", c.Rollout)
	}
	if c.Rollout == RolloutCanary {
		c.Canary = 1
		if canaryText != "" {
			n, err := strconv.Atoi(canaryText)
			if err != nil || n < 1 {
				fail("canary", "%q must be a whole number of at least 1", canaryText)
				return
			}
			c.Canary = n
		}
		switch {
		case hosts < 2:
			fail("rollout", "rollout: canary needs at least 2 hosts (canaries first, then the others), and %s", hostsGiven(c))
		case c.Canary >= hosts:
			fail("canary", "%d canaries of %s leave no host to follow them; give fewer than %d", c.Canary, words.Count(int64(hosts), "host"), hosts)
		}
	}

	if batchText != "" && c.Rollout != RolloutBatches {
		fail("batch-size", "needs rollout: batches (rollout is %s)", c.Rollout)
	}
	if c.Rollout == RolloutBatches {
		if batchText == "" {
			fail("batch-size", "rollout: batches needs batch-size: a number of hosts (2) or a percentage of them (25%%)")
			return
		}
		c.BatchSize, c.BatchPercent = parseBatchSize(batchText, hosts, fail)
	}
}

// parseBatchSize reads "N" or "N%". A size that puts every host in one
// batch is refused: that is rollout: all, and likely a typo for a
// percentage. A percentage is not: it scales with the fleet, and 25% of
// one host in a staging workflow is that host.
func parseBatchSize(text string, hosts int, fail func(string, string, ...any)) (size, percent int) {
	if p, ok := strings.CutSuffix(text, "%"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		switch {
		case err != nil || n < 1:
			fail("batch-size", "%q is not a percentage of the hosts from 1%% to 99%%", text)
		case n >= 100:
			fail("batch-size", "%s puts every host in one batch, which is rollout: all; give less than 100%%", text)
		}
		return 0, n
	}
	n, err := strconv.Atoi(text)
	switch {
	case err != nil || n < 1:
		fail("batch-size", "%q is not a number of hosts (2) or a percentage of them (25%%)", text)
	case n >= hosts:
		fail("batch-size", "%d puts every host (%s) in one batch, which is rollout: all; give fewer, or a percentage such as 25%%", n, words.Count(int64(hosts), "host"))
	}
	return n, 0
}

// hostsGiven says how many hosts the run has, for messages.
func hostsGiven(c *Config) string {
	if len(c.Hosts) == 0 {
		return "no host is given (a deploy on this machine is one target)"
	}
	return "host lists " + words.Count(int64(len(c.Hosts)), "host")
}

// BatchHosts is the number of hosts a batch of rollout: batches switches:
// batch-size, or its percentage of the hosts rounded up (at least 1).
// 0 for the other rollouts.
func (c *Config) BatchHosts() int {
	if c.Rollout != RolloutBatches {
		return 0
	}
	if c.BatchSize > 0 {
		return c.BatchSize
	}
	hosts := max(len(c.Hosts), 1)
	return max((hosts*c.BatchPercent+99)/100, 1)
}
