package report_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/report"
)

// tableRows returns the Markdown table rows after the header and separator.
func tableRows(t *testing.T, md string) []string {
	t.Helper()
	var rows []string
	lines := strings.Split(md, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "| Host |") {
			if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "|---") {
				t.Fatalf("no separator after the header:\n%s", md)
			}
			for _, r := range lines[i+2:] {
				if !strings.HasPrefix(r, "|") {
					break
				}
				rows = append(rows, r)
			}
			return rows
		}
	}
	t.Fatalf("no table in\n%s", md)
	return nil
}

// cells splits a row on the pipes that are not escaped.
func cells(row string) []string {
	row = strings.TrimSuffix(strings.TrimPrefix(row, "|"), "|")
	var out []string
	var cur strings.Builder
	for i := 0; i < len(row); i++ {
		switch {
		case row[i] == '\\' && i+1 < len(row) && row[i+1] == '|':
			cur.WriteString(`\|`)
			i++
		case row[i] == '|':
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(row[i])
		}
	}
	return append(out, strings.TrimSpace(cur.String()))
}

func TestSummaryRowPerHost(t *testing.T) {
	res := &deploy.Result{
		Mode: "deploy", ReleaseID: "20261125231842", PreviousID: "20261124100000", Duration: 12340 * time.Millisecond,
		Hosts: []deploy.HostResult{
			{Name: "deploy@web1:22", ReleaseID: "20261125231842", PreviousID: "20261124100000", Outcome: deploy.OutcomeDeployed,
				Stats: deploy.Stats{FilesUploaded: 3, FilesReused: 120, BytesUploaded: 2048}, Duration: 5 * time.Second},
			{Name: "deploy@web2:22", ReleaseID: "20261125231842", Outcome: deploy.OutcomeDeployed,
				Stats: deploy.Stats{FilesUploaded: 123, BytesUploaded: 10}, Duration: 7 * time.Second},
			{Name: "pipe|host", Outcome: deploy.OutcomeDeployed},
		},
	}
	md := report.Summary(res, nil, "0123abc")
	if !strings.HasPrefix(md, "### ✅ Deployed release `20261125231842` (3 hosts)\n") {
		t.Errorf("heading:\n%s", md)
	}
	if !strings.Contains(md, "Revision `0123abc`") {
		t.Errorf("no revision:\n%s", md)
	}
	rows := tableRows(t, md)
	if len(rows) != len(res.Hosts) {
		t.Fatalf("%d rows for %d hosts:\n%s", len(rows), len(res.Hosts), md)
	}
	want := [][]string{
		{"deploy@web1:22", "`20261125231842`", "`20261124100000`", "3", "120", "2.0 KiB", "5s", "✅ deployed"},
		{"deploy@web2:22", "`20261125231842`", "—", "123", "0", "10 B", "7s", "✅ deployed"},
		{`pipe\|host`, "—", "—", "0", "0", "0 B", "0s", "✅ deployed"},
	}
	for i, r := range rows {
		if got := cells(r); fmt.Sprint(got) != fmt.Sprint(want[i]) {
			t.Errorf("row %d = %q, want %q", i, got, want[i])
		}
	}
}

func TestSummaryEscapesCells(t *testing.T) {
	res := &deploy.Result{
		Mode: "deploy", ReleaseID: "20261125231842", RolledBack: true,
		Hosts: []deploy.HostResult{
			{Name: "web1", Outcome: deploy.OutcomeRolledBack, Err: errors.New("after-activate failed | exit 1\nline two\r\nline three")},
			{Name: "web2", Outcome: deploy.OutcomeFailed, Err: errors.New("a | b | c")},
		},
	}
	runErr := errors.New("health check failed\n```\ninjected markdown\n```")
	md := report.Summary(res, runErr, "rev|with\npipe")
	if !strings.HasPrefix(md, "### ↩️ Rolled back after a failed deploy") {
		t.Errorf("heading:\n%s", md)
	}
	rows := tableRows(t, md)
	if len(rows) != 2 {
		t.Fatalf("%d rows for 2 hosts (a newline or pipe broke the table):\n%s", len(rows), md)
	}
	for i, r := range rows {
		if c := cells(r); len(c) != 8 {
			t.Errorf("row %d has %d cells: %q", i, len(c), c)
		}
	}
	if c := cells(rows[0]); c[7] != `❌ rolled back: after-activate failed \| exit 1<br>line two<br>line three` {
		t.Errorf("outcome cell %q", c[7])
	}
	if !strings.Contains(md, "Revision `rev\\|with<br>pipe`") {
		t.Errorf("revision not escaped:\n%s", md)
	}
	// The error block cannot be closed early by the error text.
	if n := strings.Count(md, "```"); n != 2 {
		t.Errorf("%d code fences:\n%s", n, md)
	}
	if !strings.Contains(md, "health check failed") {
		t.Errorf("no error details:\n%s", md)
	}
}

func TestSummaryModes(t *testing.T) {
	tests := []struct {
		res     *deploy.Result
		err     error
		heading string
	}{
		{&deploy.Result{Mode: "rollback", ReleaseID: "20261124100000", Hosts: make([]deploy.HostResult, 1)}, nil, "### ✅ Rolled back to release `20261124100000` (1 host)"},
		{&deploy.Result{Mode: "unlock", Hosts: make([]deploy.HostResult, 2)}, nil, "### ✅ Unlocked 2 hosts"},
		{&deploy.Result{Mode: "deploy", Hosts: make([]deploy.HostResult, 2)}, errors.New("x"), "### ❌ Failed: deployed release `—` (2 hosts)"},
		{&deploy.Result{Mode: "rollback", ReleaseID: "20261124100000"}, errors.New("x"), "### ❌ Failed: rolled back to release `20261124100000` (0 hosts)"},
	}
	for _, tt := range tests {
		if md := report.Summary(tt.res, tt.err, ""); !strings.HasPrefix(md, tt.heading+"\n") {
			t.Errorf("heading of %+v, %v:\n%s\nwant %s", tt.res, tt.err, md, tt.heading)
		}
	}
}

func TestSummaryTruncated(t *testing.T) {
	res := &deploy.Result{Mode: "deploy", ReleaseID: "20261125231842"}
	for i := range 20000 {
		res.Hosts = append(res.Hosts, deploy.HostResult{Name: fmt.Sprintf("deploy@web%05d.example.com:22", i), Outcome: deploy.OutcomeDeployed})
	}
	md := report.Summary(res, nil, "r")
	if len(md) > 1024*1024 {
		t.Errorf("summary is %d bytes, over the runner's 1 MiB", len(md))
	}
	if !strings.HasSuffix(md, "(summary truncated)\n") {
		t.Errorf("no truncation note at the end: %q", md[len(md)-100:])
	}
	if !utf8.ValidString(md) {
		t.Error("truncation cut a character in half")
	}
	body := strings.TrimSuffix(md, "\n\n(summary truncated)\n")
	if last := body[strings.LastIndex(body, "\n")+1:]; last != "" && !strings.HasSuffix(last, "|") {
		t.Errorf("truncation cut a table row in half: %q", last)
	}
}

// The job summary goes through go-githubactions' AddStepSummary, which
// appends (with a newline) and panics when it cannot write: that must come
// back as an error.
func TestAddStepSummary(t *testing.T) {
	p := filepath.Join(t.TempDir(), "summary.md")
	env := func(path string) func(string) string {
		return func(k string) string {
			if k == "GITHUB_STEP_SUMMARY" {
				return path
			}
			return ""
		}
	}
	for _, md := range []string{"one\n", "two\n"} {
		if err := report.AddStepSummary(env(p), md); err != nil {
			t.Fatal(err)
		}
	}
	if data, _ := os.ReadFile(p); string(data) != "one\n\ntwo\n\n" {
		t.Errorf("summary file %q", data)
	}
	if err := report.AddStepSummary(env(""), "nowhere"); err != nil {
		t.Errorf("no GITHUB_STEP_SUMMARY: %v, want nothing written and no error", err)
	}
	err := report.AddStepSummary(env(filepath.Join(p, "x")), "y")
	if err == nil || !strings.Contains(err.Error(), "write job summary to "+filepath.Join(p, "x")) {
		t.Errorf("a summary under a file: %v, want an error naming the path", err)
	}
}

func TestSummaryFooterAndNumbers(t *testing.T) {
	res := &deploy.Result{Mode: "deploy", ReleaseID: "20261125231842", Hosts: []deploy.HostResult{
		{Name: "web1", ReleaseID: "20261125231842", Outcome: deploy.OutcomeDeployed, Stats: deploy.Stats{FilesUploaded: 12345, FilesReused: 1, BytesUploaded: 83 << 20}},
	}}
	md := report.Summary(res, nil, "") + report.SummaryFooter("v1.2.3")
	if !strings.Contains(md, "(1 host)") {
		t.Errorf("heading does not say 1 host:\n%s", md)
	}
	if row := cells(tableRows(t, md)[0]); row[3] != "12,345" || row[4] != "1" || row[5] != "83 MiB" {
		t.Errorf("numbers %q, want 12,345 / 1 / 83 MiB", row[3:6])
	}
	if !strings.HasSuffix(md, "\n<sub>atomic-deploy v1.2.3</sub>\n") {
		t.Errorf("no version footer:\n%s", md)
	}
}

// deploy.Rollback reports the hosts it switched as "deployed"; the summary
// of a rollback must not.
func TestSummaryRollbackOutcomes(t *testing.T) {
	tests := []struct {
		mode, outcome string
		err           error
		want          string
	}{
		{"rollback", deploy.OutcomeDeployed, nil, "✅ rolled back"},
		{"rollback", deploy.OutcomeRolledBack, nil, "put back"},
		{"rollback", deploy.OutcomeFailed, errors.New("boom"), "❌ failed: boom"},
		{"rollback", deploy.OutcomeNotRun, nil, "not switched"},
		{"deploy", deploy.OutcomeDeployed, nil, "✅ deployed"},
		{"deploy", deploy.OutcomeRolledBack, nil, "rolled back"},
	}
	for _, tt := range tests {
		t.Run(tt.mode+" "+tt.outcome, func(t *testing.T) {
			res := &deploy.Result{Mode: tt.mode, ReleaseID: "20261125231842",
				Hosts: []deploy.HostResult{{Name: "web1", ReleaseID: "20261125231842", Outcome: tt.outcome, Err: tt.err}}}
			row := cells(tableRows(t, report.Summary(res, nil, ""))[0])
			if got := row[len(row)-1]; got != tt.want {
				t.Errorf("result cell %q, want %q", got, tt.want)
			}
		})
	}
}
