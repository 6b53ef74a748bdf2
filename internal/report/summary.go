package report

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
)

// maxSummary is below the runner's 1 MiB cap per step summary.
const maxSummary = 1000 * 1024

// Summary renders the job summary: one heading that says what happened,
// then a row per host.
func Summary(res *deploy.Result, err error, revision string) string {
	var b strings.Builder
	icon, verb := "✅", "Deployed"
	switch {
	case res.Mode == "rollback":
		verb = "Rolled back to"
	case res.Mode == "unlock":
		verb = "Unlocked"
	}
	if err != nil {
		icon = "❌"
		verb = "Failed: " + strings.ToLower(verb[:1]) + verb[1:]
		if res.RolledBack {
			icon, verb = "↩️", "Rolled back after a failed deploy; live again:"
		}
	}
	id := res.ReleaseID
	if id == "" {
		id = "—"
	}
	if res.Mode == "unlock" {
		fmt.Fprintf(&b, "### %s %s %d host%s\n\n", icon, verb, len(res.Hosts), plural(len(res.Hosts)))
	} else {
		fmt.Fprintf(&b, "### %s %s release `%s` (%d host%s)\n\n", icon, verb, id, len(res.Hosts), plural(len(res.Hosts)))
	}
	if revision != "" {
		fmt.Fprintf(&b, "Revision `%s` · %s\n\n", cell(revision), res.Duration.Round(100*time.Millisecond))
	}
	b.WriteString("| Host | Release | Previous | Files uploaded | Files reused | Bytes uploaded | Duration | Result |\n")
	b.WriteString("|---|---|---|--:|--:|--:|--:|---|\n")
	for _, h := range res.Hosts {
		outcome := hostOutcome(res.Mode, h.Outcome)
		if h.Err != nil {
			outcome = "❌ " + outcome + ": " + h.Err.Error()
		} else if h.Outcome == deploy.OutcomeDeployed || h.Outcome == deploy.OutcomeUnlocked {
			outcome = "✅ " + outcome
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %s | %s | %s |\n", cell(h.Name), code(h.ReleaseID), code(h.PreviousID),
			h.FilesUploaded, h.FilesReused, deploy.FormatBytes(h.BytesUploaded), h.Duration.Round(100*time.Millisecond), cell(outcome))
	}
	if err != nil {
		fmt.Fprintf(&b, "\n<details><summary>Error</summary>\n\n```\n%s\n```\n</details>\n", strings.ReplaceAll(err.Error(), "```", "'''"))
	}
	s := b.String()
	if len(s) > maxSummary {
		// Cut after a whole line: never inside a table row or a character.
		s = s[:strings.LastIndex(s[:maxSummary], "\n")+1] + "\n(summary truncated)\n"
	}
	return s
}

// hostOutcome names what happened on a host in words that fit the mode.
// deploy.Rollback reports a host it switched to the target as "deployed",
// and one it had to put back on its release after another host failed as
// "rolled back".
func hostOutcome(mode, outcome string) string {
	if mode != "rollback" {
		return outcome
	}
	switch outcome {
	case deploy.OutcomeDeployed:
		return "rolled back"
	case deploy.OutcomeRolledBack:
		return "put back"
	}
	return outcome
}

// AppendSummary adds markdown to the GITHUB_STEP_SUMMARY file.
func AppendSummary(path, markdown string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("write job summary to %s: %w", path, err)
	}
	if _, err := f.WriteString(markdown); err != nil {
		f.Close()
		return fmt.Errorf("write job summary to %s: %w", path, err)
	}
	return f.Close()
}

// cell keeps a value inside one Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	s = strings.ReplaceAll(s, "\r", "")
	return strings.ReplaceAll(s, "\n", "<br>")
}

func code(s string) string {
	if s == "" {
		return "—"
	}
	return "`" + cell(s) + "`"
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
