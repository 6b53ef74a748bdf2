package report

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/sethvargo/go-githubactions"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/words"
)

// maxSummary is below the runner's 1 MiB cap per step summary.
const maxSummary = 1000 * 1024

// Summary renders the job summary: one heading that says what happened,
// a row per host (with the rollout's steps and switch times when there
// were any), and a chart of the run's phases per host for those who would
// rather look than read (the table has the same facts, for screen readers).
func Summary(res *deploy.Result, err error, revision string) string {
	var b strings.Builder
	icon, verb := "✅", "Deployed"
	switch res.Mode {
	case "prepare":
		verb = "Prepared"
	case "activate":
		verb = "Activated"
	case "rollback":
		verb = "Rolled back to"
	case "unlock":
		verb = "Unlocked"
	}
	if err == nil && res.Unchanged() && (res.Mode == "activate" || res.Mode == "rollback") {
		verb = "Live already, nothing switched:"
	}
	if err != nil {
		icon = "❌"
		verb = "Failed: " + strings.ToLower(verb[:1]) + verb[1:]
		switch {
		case res.RolledBack && res.Mode == "activate":
			icon, verb = "↩️", "Rolled back after a failed activation; live again:"
		case res.RolledBack:
			icon, verb = "↩️", "Rolled back after a failed deploy; live again:"
		}
	}
	id := res.ReleaseID
	if id == "" {
		id = "—"
	}
	if res.Mode == "unlock" {
		fmt.Fprintf(&b, "### %s %s %s\n\n", icon, verb, words.Count(int64(len(res.Hosts)), "host"))
	} else {
		fmt.Fprintf(&b, "### %s %s release `%s` (%s)\n\n", icon, verb, id, words.Count(int64(len(res.Hosts)), "host"))
	}
	if revision != "" {
		fmt.Fprintf(&b, "Revision `%s` · %s\n\n", cell(revision), res.Duration.Round(100*time.Millisecond))
	}
	writeHostTable(&b, res)
	var details string
	if err != nil {
		details = fmt.Sprintf("\n<details><summary>Error</summary>\n\n```\n%s\n```\n</details>\n", strings.ReplaceAll(err.Error(), "```", "'''"))
	}
	// The chart only where it fits whole: a cut would leave its fence open.
	if chart := PhaseChart(res); chart != "" && b.Len()+len(chart)+len(details) < maxSummary {
		b.WriteString("\n" + chart)
	}
	b.WriteString(details)
	s := b.String()
	if len(s) > maxSummary {
		// Cut after a whole line: never inside a table row or a character.
		s = s[:strings.LastIndex(s[:maxSummary], "\n")+1] + "\n(summary truncated)\n"
	}
	return s
}

// writeHostTable writes a row per host. A Batch column appears when the
// switch went in steps (a rollout), a Switched column (milliseconds after
// the first host switched) when any host switched.
func writeHostTable(b *strings.Builder, res *deploy.Result) {
	var rollout bool
	var firstSwitch time.Time
	for _, h := range res.Hosts {
		rollout = rollout || h.Batch > 1
		if !h.SwitchedAt.IsZero() && (firstSwitch.IsZero() || h.SwitchedAt.Before(firstSwitch)) {
			firstSwitch = h.SwitchedAt
		}
	}
	switched := !firstSwitch.IsZero()
	head, align := "| Host | Release | Previous |", "|---|---|---|"
	if rollout {
		head, align = head+" Batch |", align+"--:|"
	}
	head, align = head+" Files uploaded | Files reused | Bytes uploaded | Duration |", align+"--:|--:|--:|--:|"
	if switched {
		head, align = head+" Switched |", align+"--:|"
	}
	b.WriteString(head + " Result |\n" + align + "---|\n")
	for _, h := range res.Hosts {
		outcome := hostOutcome(res.Mode, h.Outcome)
		switch {
		case h.Err != nil:
			outcome = "❌ " + outcome + ": " + h.Err.Error()
		case h.Outcome == deploy.OutcomeDeployed || h.Outcome == deploy.OutcomeUnlocked,
			res.Mode == "prepare" && h.Outcome != deploy.OutcomeFailed:
			outcome = "✅ " + outcome
		}
		fmt.Fprintf(b, "| %s | %s | %s |", cell(h.Name), code(h.ReleaseID), code(h.PreviousID))
		if rollout {
			fmt.Fprintf(b, " %s |", orDash(h.Batch))
		}
		fmt.Fprintf(b, " %s | %s | %s | %s |", humanize.Comma(int64(h.FilesUploaded)), humanize.Comma(int64(h.FilesReused)), words.Bytes(h.BytesUploaded), h.Duration.Round(100*time.Millisecond))
		if switched {
			fmt.Fprintf(b, " %s |", sinceFirst(h.SwitchedAt, firstSwitch))
		}
		fmt.Fprintf(b, " %s |\n", cell(outcome))
	}
}

// orDash is a host's rollout step, or a dash for a host that did not switch.
func orDash(batch int) string {
	if batch == 0 {
		return "—"
	}
	return strconv.Itoa(batch)
}

// sinceFirst is when a host switched, in milliseconds after the first.
func sinceFirst(at, first time.Time) string {
	if at.IsZero() {
		return "—"
	}
	return "+" + humanize.Comma(at.Sub(first).Milliseconds()) + " ms"
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

// SummaryFooter names the build that wrote the summary.
func SummaryFooter(version string) string {
	return "\n<sub>atomic-deploy " + cell(version) + "</sub>\n"
}

// AddStepSummary appends markdown to the job summary (GITHUB_STEP_SUMMARY
// from getenv; nothing when it is unset) through go-githubactions. Its
// AddStepSummary has two traps handled here: it panics when the file
// cannot be written (turned into an error: a summary is not worth a crash
// or a stack trace), and it opens whatever path the variable holds, ""
// included. It appends the markdown raw: masking and the runner's 1 MiB
// cap are the caller's (Log.Redact, Summary's truncation).
func AddStepSummary(getenv func(string) string, markdown string) (err error) {
	path := getenv("GITHUB_STEP_SUMMARY")
	if path == "" {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("write job summary to %s: %v", path, r)
		}
	}()
	githubactions.New(githubactions.WithGetenv(getenv), githubactions.WithWriter(io.Discard)).AddStepSummary(markdown)
	return nil
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
