package report

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/words"
)

// maxChartHosts: past this many hosts the chart has a row per step of the
// rollout instead of a row per host, which nobody could read.
const maxChartHosts = 30

// chartRow is one row of the chart: a host, or a step of the rollout.
type chartRow struct {
	label  string
	phases []deploy.Phase
	failed bool
}

// PhaseChart draws the phases of the run (HostResult.Phases) as a Mermaid
// gantt chart, which GitHub renders in a job summary: a row per host (per
// step of the rollout past maxChartHosts), each phase a bar, the switch a
// diamond, the phase a host failed in red. "" when no phase was recorded.
func PhaseChart(res *deploy.Result) string {
	rows := chartRows(res)
	if len(rows) == 0 {
		return ""
	}
	var first, last time.Time
	for _, r := range rows {
		for _, p := range r.phases {
			if first.IsZero() || p.Start.Before(first) {
				first = p.Start
			}
			if p.End.After(last) {
				last = p.End
			}
		}
	}
	axis := "%H:%M:%S"
	if last.Sub(first) < 10*time.Second {
		axis = "%H:%M:%S.%L"
	}
	what := "per host"
	if len(res.Hosts) > maxChartHosts {
		what = "per step of the rollout"
	}
	var b strings.Builder
	// Compact: a row's phases do not overlap, so each row is one line.
	b.WriteString("```mermaid\n---\ndisplayMode: compact\n---\ngantt\n")
	fmt.Fprintf(&b, "  title %s: phases %s\n", mermaidText(chartTitle(res)), what)
	fmt.Fprintf(&b, "  accTitle: %s phases %s\n", mermaidText(chartTitle(res)), what)
	b.WriteString("  accDescr: The table above has the same facts.\n")
	fmt.Fprintf(&b, "  dateFormat x\n  axisFormat %s\n  todayMarker off\n", axis)
	for i, r := range rows {
		fmt.Fprintf(&b, "  section %s\n", r.label)
		for j, p := range r.phases {
			var fields []string
			if r.failed && j == len(r.phases)-1 {
				fields = append(fields, "crit")
			}
			fields = append(fields, phaseTags[p.Name]...)
			start, end := p.Start.UnixMilli(), p.End.UnixMilli()
			if end <= start && p.Name != deploy.PhaseSwitch {
				end = start + 1 // drawn, however short
			}
			fields = append(fields, fmt.Sprintf("r%dp%d", i+1, j+1), fmt.Sprint(start), fmt.Sprint(max(end, start)))
			fmt.Fprintf(&b, "  %s :%s\n", mermaidText(p.Name), strings.Join(fields, ", "))
		}
	}
	b.WriteString("```\n\n<sub>Grey: connect and lock · blue: upload · light: hooks, then after-activate and the health check · ◆ switch · red: where a host failed. Times are in your browser's time zone.</sub>\n")
	return b.String()
}

// phaseTags are the Mermaid task tags that tell the phases apart.
var phaseTags = map[string][]string{
	deploy.PhaseConnect: {"done"},
	deploy.PhaseHooks:   {"active"},
	deploy.PhaseSwitch:  {"milestone"},
	deploy.PhaseCheck:   {"active"},
}

func chartTitle(res *deploy.Result) string {
	if res.ReleaseID == "" {
		return strings.ToUpper(res.Mode[:1]) + res.Mode[1:]
	}
	return "Release " + res.ReleaseID
}

// chartRows are the hosts that recorded phases, or past maxChartHosts one
// row per step of the rollout (the hosts that switched together), each
// phase spanning from the first host's start to the last host's end.
func chartRows(res *deploy.Result) []chartRow {
	var rows []chartRow
	if len(res.Hosts) <= maxChartHosts {
		seen := map[string]bool{}
		for _, h := range res.Hosts {
			if len(h.Phases) == 0 {
				continue
			}
			// Mermaid puts sections of one name in one row: two hosts
			// whose labels came out alike get their row number.
			label := mermaidText(h.Name)
			if seen[label] {
				label = fmt.Sprintf("%s (%d)", label, len(rows)+1)
			}
			seen[label] = true
			rows = append(rows, chartRow{label: label, phases: h.Phases, failed: h.Err != nil})
		}
		return rows
	}
	steps := map[int][]deploy.HostResult{}
	for _, h := range res.Hosts {
		if len(h.Phases) > 0 {
			steps[h.Batch] = append(steps[h.Batch], h)
		}
	}
	order := slices.Sorted(maps.Keys(steps))
	if len(order) > 0 && order[0] == 0 {
		order = append(order[1:], 0) // the hosts that did not switch, last
	}
	for _, n := range order {
		hosts := steps[n]
		count := words.Count(int64(len(hosts)), "host")
		var label string
		switch {
		case len(order) == 1: // one step, or none (prepare)
			label = count
		case n == 0:
			label = "not switched, " + count
		case len(order) == 2 && order[1] == 0: // one step, and hosts that never got to it
			label = count
		default:
			label = fmt.Sprintf("step %d, %s", n, count)
		}
		row := chartRow{label: label}
		for _, h := range hosts {
			row.failed = row.failed || h.Err != nil
			for _, p := range h.Phases {
				i := slices.IndexFunc(row.phases, func(q deploy.Phase) bool { return q.Name == p.Name })
				if i < 0 {
					row.phases = append(row.phases, p)
					continue
				}
				if p.Start.Before(row.phases[i].Start) {
					row.phases[i].Start = p.Start
				}
				if p.End.After(row.phases[i].End) {
					row.phases[i].End = p.End
				}
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// maxLabel keeps a row's label on one line beside the chart; a longer
// one keeps its start and end (user, the host's first label, the port).
const maxLabel = 48

// mermaidText makes s safe as a section or task name of a gantt chart:
// Mermaid ends a name at ':', '#' and ';', starts a comment at '%%', and
// renders '<' and '&' as markup; a backtick could close the code fence.
// A ':' (user@host:port) becomes the look-alike '∶' (ratio), anything else
// outside a plain set an underscore; a long name is cut in the middle.
func mermaidText(s string) string {
	if r := []rune(s); len(r) > maxLabel {
		s = string(r[:maxLabel/2-1]) + "…" + string(r[len(r)-maxLabel/2:])
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '…':
			b.WriteRune(r)
		case r == ':':
			b.WriteRune('∶')
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune(" .,_-@[]()/+=", r):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if out := strings.TrimSpace(b.String()); out != "" {
		return out
	}
	return "_"
}
