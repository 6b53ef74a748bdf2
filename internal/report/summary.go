package report

import (
	"fmt"
	"io"
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
		fmt.Fprintf(&b, "### %s %s %s\n\n", icon, verb, words.Count(int64(len(res.Hosts)), "host"))
	} else {
		fmt.Fprintf(&b, "### %s %s release `%s` (%s)\n\n", icon, verb, id, words.Count(int64(len(res.Hosts)), "host"))
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
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", cell(h.Name), code(h.ReleaseID), code(h.PreviousID),
			humanize.Comma(int64(h.FilesUploaded)), humanize.Comma(int64(h.FilesReused)), words.Bytes(h.BytesUploaded), h.Duration.Round(100*time.Millisecond), cell(outcome))
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
