package report_test

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/report"
)

var t0 = time.Date(2026, 11, 25, 23, 18, 42, 0, time.UTC)

// phasesAt are a host's five phases, starting at t0+offset.
func phasesAt(offset time.Duration, switched bool) []deploy.Phase {
	at := func(ms int) time.Time { return t0.Add(offset + time.Duration(ms)*time.Millisecond) }
	ps := []deploy.Phase{
		{Name: deploy.PhaseConnect, Start: at(0), End: at(120)},
		{Name: deploy.PhaseUpload, Start: at(120), End: at(900)},
		{Name: deploy.PhaseHooks, Start: at(900), End: at(1500)},
	}
	if switched {
		ps = append(ps, deploy.Phase{Name: deploy.PhaseSwitch, Start: at(2000), End: at(2000)},
			deploy.Phase{Name: deploy.PhaseCheck, Start: at(2000), End: at(2600)})
	}
	return ps
}

// rolloutResult is a canary rollout over four hosts: web1 first, then two
// more, and one that failed to prepare... of an activation that went well
// on the switched ones.
func rolloutResult() *deploy.Result {
	return &deploy.Result{Mode: "activate", ReleaseID: "20261125231842", PreviousID: "20261124100000", Duration: 9 * time.Second, Hosts: []deploy.HostResult{
		{Name: "deploy@web1:22", ReleaseID: "20261125231842", Outcome: deploy.OutcomeDeployed, Batch: 1, SwitchedAt: t0.Add(2 * time.Second), Phases: phasesAt(0, true)},
		{Name: "deploy@web2:22", ReleaseID: "20261125231842", Outcome: deploy.OutcomeDeployed, Batch: 2, SwitchedAt: t0.Add(3204 * time.Millisecond), Phases: phasesAt(1204*time.Millisecond, true)},
		{Name: "deploy@web3:22", ReleaseID: "20261125231842", Outcome: deploy.OutcomeDeployed, Batch: 2, SwitchedAt: t0.Add(3207 * time.Millisecond), Phases: phasesAt(1207*time.Millisecond, true)},
		{Name: "deploy@web4:22", Outcome: deploy.OutcomeNotRun},
	}}
}

// TestSummaryRolloutColumns: with a rollout the table has the step each
// host switched in and when, in ms after the first switch; a host that did
// not switch has dashes.
func TestSummaryRolloutColumns(t *testing.T) {
	md := report.Summary(rolloutResult(), nil, "0123abc")
	if !strings.HasPrefix(md, "### ✅ Activated release `20261125231842` (4 hosts)\n") {
		t.Errorf("heading:\n%s", md)
	}
	if !strings.Contains(md, "| Host | Release | Previous | Batch | Files uploaded | Files reused | Bytes uploaded | Duration | Switched | Result |\n|---|---|---|--:|--:|--:|--:|--:|--:|---|\n") {
		t.Errorf("no Batch and Switched columns:\n%s", md)
	}
	want := [][2]string{{"1", "+0 ms"}, {"2", "+1,204 ms"}, {"2", "+1,207 ms"}, {"—", "—"}}
	for i, r := range tableRows(t, md) {
		c := cells(r)
		if len(c) != 10 || c[3] != want[i][0] || c[8] != want[i][1] {
			t.Errorf("row %d = %q, want batch %s, switched %s", i, c, want[i][0], want[i][1])
		}
	}
}

// TestSummaryNoBatchColumnWithoutRollout: every host in step 1 (all at
// once) is no rollout: no Batch column; the switch times stay.
func TestSummaryNoBatchColumnWithoutRollout(t *testing.T) {
	res := rolloutResult()
	for i := range res.Hosts {
		res.Hosts[i].Batch = min(res.Hosts[i].Batch, 1)
	}
	md := report.Summary(res, nil, "")
	if strings.Contains(md, "Batch") || !strings.Contains(md, "| Duration | Switched | Result |") {
		t.Errorf("columns:\n%s", md)
	}
	res.Mode = "prepare"
	for i := range res.Hosts {
		res.Hosts[i].SwitchedAt, res.Hosts[i].Batch, res.Hosts[i].Outcome = time.Time{}, 0, deploy.OutcomeNotRun
	}
	md = report.Summary(res, nil, "")
	if !strings.HasPrefix(md, "### ✅ Prepared release `20261125231842` (4 hosts)\n") || strings.Contains(md, "Switched") || strings.Contains(md, "Batch") {
		t.Errorf("a prepare has neither column:\n%s", md)
	}
	if c := cells(tableRows(t, md)[0]); c[len(c)-1] != "✅ not switched" {
		t.Errorf("a prepared host reads %q", c[len(c)-1])
	}
}

func TestSummaryActivateRolledBack(t *testing.T) {
	res := rolloutResult()
	res.RolledBack, res.ReleaseID = true, "20261124100000"
	md := report.Summary(res, errors.New("health check failed"), "")
	if !strings.HasPrefix(md, "### ↩️ Rolled back after a failed activation; live again: release `20261124100000` (4 hosts)\n") {
		t.Errorf("heading:\n%s", md)
	}
}

// mermaidBlock returns the lines of the one mermaid block in md.
func mermaidBlock(t *testing.T, md string) []string {
	t.Helper()
	if n := strings.Count(md, "```mermaid\n"); n != 1 {
		t.Fatalf("%d mermaid blocks in\n%s", n, md)
	}
	body := md[strings.Index(md, "```mermaid\n")+len("```mermaid\n"):]
	end := strings.Index(body, "\n```\n")
	if end < 0 {
		t.Fatalf("the mermaid block is not closed:\n%s", md)
	}
	return strings.Split(body[:end], "\n")
}

// The shapes Mermaid's gantt lexer reads (its gantt.jison): a section or
// task name ends at ':', '#' or ';', and "%%" starts a comment anywhere.
var (
	ganttStatement = regexp.MustCompile(`^(title [^#\n;]+|accTitle: [^\n]+|accDescr: [^\n]+|dateFormat x|axisFormat %H:%M:%S(\.%L)?|todayMarker off)$`)
	ganttSection   = regexp.MustCompile(`^section ([^#:;%\x60<>&]+)$`)
	ganttTask      = regexp.MustCompile(`^([a-z]+) :((?:crit|done|active|milestone), )*(r\d+p\d+), (\d{13}), (\d{13})$`)
)

// checkGantt checks that lines are a gantt chart Mermaid reads as meant:
// only known statements, every section and task name free of what ends or
// comments it, unique task ids, no task ending before it starts. It
// returns the sections and the task lines under each.
func checkGantt(t *testing.T, lines []string) (sections []string, tasks map[string][]string) {
	t.Helper()
	if len(lines) < 5 || strings.Join(lines[:4], "\n") != "---\ndisplayMode: compact\n---\ngantt" {
		t.Fatalf("no front matter and gantt header:\n%s", strings.Join(lines, "\n"))
	}
	tasks = map[string][]string{}
	ids := map[string]bool{}
	for _, l := range lines[4:] {
		s := strings.TrimPrefix(l, "  ")
		switch {
		case strings.Contains(l, "`"), strings.Contains(l, "%%"):
			t.Errorf("line %q could close the fence or start a comment", l)
		case ganttStatement.MatchString(s):
		case ganttSection.MatchString(s):
			sections = append(sections, ganttSection.FindStringSubmatch(s)[1])
		case ganttTask.MatchString(s):
			m := ganttTask.FindStringSubmatch(s)
			if len(sections) == 0 {
				t.Errorf("task before any section: %q", l)
				continue
			}
			if ids[m[3]] {
				t.Errorf("task id %s twice", m[3])
			}
			ids[m[3]] = true
			if start, _ := strconv.ParseInt(m[4], 10, 64); m[5] < m[4] || start == 0 {
				t.Errorf("task %q ends before it starts", l)
			}
			sec := sections[len(sections)-1]
			tasks[sec] = append(tasks[sec], s)
		default:
			t.Errorf("Mermaid would not read %q as meant", l)
		}
	}
	return sections, tasks
}

// TestPhaseChart: a row per host, each phase a bar at its unix-ms times,
// the switch a milestone, the failing phase of a failed host in red;
// hosts without phases have no row. Golden-ish on one host's lines.
func TestPhaseChart(t *testing.T) {
	res := rolloutResult()
	res.Hosts[2].Err = errors.New("health check failed")
	md := report.Summary(res, errors.New("x"), "")
	sections, tasks := checkGantt(t, mermaidBlock(t, md))
	if want := []string{"deploy@web1∶22", "deploy@web2∶22", "deploy@web3∶22"}; fmt.Sprint(sections) != fmt.Sprint(want) {
		t.Errorf("sections %q, want %q", sections, want)
	}
	ms := t0.UnixMilli()
	want := []string{
		fmt.Sprintf("connect :done, r1p1, %d, %d", ms, ms+120),
		fmt.Sprintf("upload :r1p2, %d, %d", ms+120, ms+900),
		fmt.Sprintf("hooks :active, r1p3, %d, %d", ms+900, ms+1500),
		fmt.Sprintf("switch :milestone, r1p4, %d, %d", ms+2000, ms+2000),
		fmt.Sprintf("check :active, r1p5, %d, %d", ms+2000, ms+2600),
	}
	if got := tasks["deploy@web1∶22"]; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("web1's tasks:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if last := tasks["deploy@web3∶22"][4]; !strings.HasPrefix(last, "check :crit, active, r3p5,") {
		t.Errorf("the failed host's last phase is not red: %q", last)
	}
	if !strings.Contains(md, "  title Release 20261125231842: phases per host\n") || !strings.Contains(md, "axisFormat %H:%M:%S.%L\n") {
		t.Errorf("title or axis:\n%s", md)
	}
	// Below the table, above the error.
	if strings.Index(md, "| deploy@web4:22 |") > strings.Index(md, "```mermaid") || strings.Index(md, "```mermaid") > strings.Index(md, "<details>") {
		t.Errorf("order of table, chart and error:\n%s", md)
	}

	none := rolloutResult()
	for i := range none.Hosts {
		none.Hosts[i].Phases = nil
	}
	if md := report.Summary(none, nil, ""); strings.Contains(md, "mermaid") {
		t.Errorf("a chart with no phases:\n%s", md)
	}
}

// TestPhaseChartOddHostNames: names with what Mermaid, Markdown or HTML
// read specially still give a well-formed chart, one section each.
func TestPhaseChartOddHostNames(t *testing.T) {
	names := []string{
		"deploy@[2001:db8::1]:2222", "a#b;c", "50%%done", "fence```x`y", "<script>alert(1)</script>", "a&amp;b",
		"line\nbreak\r\nagain", "section x", "click r1p1 href \"https://example.com\"", "", "   ", "ünïcödé 🚀",
		strings.Repeat("long-name.", 20), "deploy@web-01.a-long-datacenter-name.example.com:22", "deploy@web-02.a-long-datacenter-name.example.com:22", "title x", "%%{init: {}}%%", "dateFormat YYYY", "x : done, r9p9, 1, 2",
	}
	res := &deploy.Result{Mode: "deploy", ReleaseID: "20261125231842"}
	for i, n := range names {
		res.Hosts = append(res.Hosts, deploy.HostResult{Name: n, Outcome: deploy.OutcomeDeployed, Batch: 1, Phases: phasesAt(time.Duration(i)*time.Second, true)})
	}
	md := report.Summary(res, nil, "")
	sections, tasks := checkGantt(t, mermaidBlock(t, md))
	if len(sections) != len(names) {
		t.Fatalf("%d sections for %d hosts: %q", len(sections), len(names), sections)
	}
	seen := map[string]bool{}
	for _, s := range sections {
		if seen[s] {
			t.Errorf("two hosts share the section %q (Mermaid would draw them in one row)", s)
		}
		seen[s] = true
		if len(tasks[s]) != 5 {
			t.Errorf("section %q has %d tasks, want 5", s, len(tasks[s]))
		}
		if r := []rune(s); len(r) > 54 {
			t.Errorf("section %q is %d characters long", s, len(r))
		}
	}
	if !seen["deploy@web-01.a-long-da…nter-name.example.com∶22"] {
		t.Errorf("a long name is not cut in the middle: %q", sections)
	}
	if sections[0] != "deploy@[2001∶db8∶∶1]∶2222" {
		t.Errorf("an IPv6 host reads %q", sections[0])
	}
	fences := 0
	for _, l := range strings.Split(md, "\n") {
		if strings.HasPrefix(l, "```") {
			fences++
		}
	}
	if fences != 2 {
		t.Errorf("%d fence lines: a host name opened or closed a block", fences)
	}
}

// TestPhaseChartManyHosts: past 30 hosts a row per step of the rollout,
// each phase from the first host's start to the last host's end.
func TestPhaseChartManyHosts(t *testing.T) {
	res := &deploy.Result{Mode: "deploy", ReleaseID: "20261125231842"}
	for i := range 100 {
		batch := i/25 + 1
		h := deploy.HostResult{Name: fmt.Sprintf("deploy@web%03d:22", i), Outcome: deploy.OutcomeDeployed, Batch: batch,
			Phases: phasesAt(time.Duration(batch*3000+i)*time.Millisecond, true)}
		if i >= 95 { // the last five never switched: a failure in step 4
			h.Batch, h.Phases, h.Outcome = 0, phasesAt(time.Duration(i)*time.Millisecond, false), deploy.OutcomeNotRun
		}
		if i == 80 {
			h.Err = errors.New("health check failed")
		}
		res.Hosts = append(res.Hosts, h)
	}
	md := report.Summary(res, errors.New("x"), "")
	sections, tasks := checkGantt(t, mermaidBlock(t, md))
	if want := []string{"step 1, 25 hosts", "step 2, 25 hosts", "step 3, 25 hosts", "step 4, 20 hosts", "not switched, 5 hosts"}; fmt.Sprint(sections) != fmt.Sprint(want) {
		t.Fatalf("sections %q, want %q", sections, want)
	}
	ms := t0.UnixMilli()
	if got, want := tasks["step 2, 25 hosts"][1], fmt.Sprintf("upload :r2p2, %d, %d", ms+6000+25+120, ms+6000+49+900); got != want {
		t.Errorf("step 2's upload %q, want %q (first start to last end)", got, want)
	}
	if got := tasks["step 4, 20 hosts"][4]; !strings.HasPrefix(got, "check :crit, active,") {
		t.Errorf("step 4 had a failed host, its last phase is %q", got)
	}
	if !strings.Contains(md, "phases per step of the rollout") {
		t.Errorf("the title does not say what a row is:\n%s", md)
	}
}

// TestSummaryChartNeverCut: when the table leaves no room for the whole
// chart, there is no chart (never half of one).
func TestSummaryChartNeverCut(t *testing.T) {
	res := &deploy.Result{Mode: "deploy", ReleaseID: "20261125231842"}
	for i := range 20 {
		res.Hosts = append(res.Hosts, deploy.HostResult{Name: fmt.Sprintf("deploy@web%02d:22", i), Outcome: deploy.OutcomeDeployed, Batch: 1, Phases: phasesAt(0, true),
			Err: errors.New(strings.Repeat("a long error line ", 2900))})
	}
	md := report.Summary(res, nil, "")
	if strings.Contains(md, "```mermaid") {
		t.Errorf("a %d-byte summary still has the chart", len(md))
	}
	if len(md) > 1024*1024 {
		t.Errorf("summary is %d bytes", len(md))
	}
}

// TestPhaseChartManyHostsOneStep: a prepare (nothing switched) or a
// switch of every host at once is one row of all the hosts.
func TestPhaseChartManyHostsOneStep(t *testing.T) {
	for _, switched := range []bool{false, true} {
		res := &deploy.Result{Mode: "prepare", ReleaseID: "20261125231842"}
		for i := range 40 {
			h := deploy.HostResult{Name: fmt.Sprintf("web%02d", i), Outcome: deploy.OutcomeNotRun, Phases: phasesAt(time.Duration(i)*time.Millisecond, switched)}
			if switched {
				h.Batch = 1
			}
			res.Hosts = append(res.Hosts, h)
		}
		sections, tasks := checkGantt(t, mermaidBlock(t, report.Summary(res, nil, "")))
		if len(sections) != 1 || sections[0] != "40 hosts" || len(tasks["40 hosts"]) != len(res.Hosts[0].Phases) {
			t.Errorf("switched %v: sections %q, tasks %q", switched, sections, tasks)
		}
	}
}
