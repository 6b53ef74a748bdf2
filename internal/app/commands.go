package app

import (
	"context"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/report"
	"github.com/atomic-deploy/atomic-deploy/internal/version"
	"github.com/atomic-deploy/atomic-deploy/internal/words"
	"github.com/dustin/go-humanize"
)

// releases prints the releases on every host, newest first, and which
// build listed them.
func (a *run) releases(ctx context.Context, w io.Writer) int {
	targets, err := a.targets()
	if err != nil {
		a.log.Errorf("Invalid input", "%v", err)
		return 2
	}
	lists, err := deploy.ListReleases(ctx, a.options(targets))
	names := make([]string, 0, len(lists))
	for n := range lists {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		list := lists[n]
		fmt.Fprintf(w, "%s: %s\n", n, words.Count(int64(len(list)), "release"))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  \tRELEASE\tSTATUS\tAGE\tREVISION")
		for i := len(list) - 1; i >= 0; i-- {
			r := list[i]
			mark := ""
			if r.Current {
				mark = "*"
			}
			age := "-"
			if t, err := time.Parse(release.IDLayout, r.ID); err == nil {
				age = humanize.Time(t)
			}
			// What the server's releases log says is shown, never obeyed by the terminal.
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", mark, report.Displayable(r.ID), report.Displayable(r.Status), age, report.Displayable(orDash(r.Revision)))
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "(atomic-deploy %s)\n", version.String())
	if err != nil {
		a.log.Errorf("Releases", "%v", err)
		return 1
	}
	return 0
}

// plan is a dry run: what a deploy would upload and reuse, changing nothing.
func (a *run) plan(ctx context.Context, w io.Writer) int {
	cfg := a.cfg
	targets, err := a.targets()
	if err != nil {
		a.log.Errorf("Invalid input", "%v", err)
		return 2
	}
	m, err := release.Build(ctx, release.Options{Source: cfg.Source, Exclude: cfg.Exclude, Revision: cfg.Revision,
		SharedDirs: cfg.SharedDirs, SharedFiles: cfg.SharedFiles})
	if err != nil {
		a.log.Errorf("Release not prepared", "%v", err)
		return 1
	}
	plans, err := deploy.PlanAll(ctx, a.options(targets), m)
	for _, p := range plans {
		if p.Plan == nil {
			continue // not reached: err says why
		}
		fmt.Fprintf(w, "%s (live: %s): upload %s (%s), reuse %s (%s), %s, %s\n",
			p.Host, report.Displayable(orDash(p.CurrentID)), count(p.Plan.Upload, "file"), words.Bytes(p.Plan.UploadBytes), count(p.Plan.Reuse, "file"), words.Bytes(p.Plan.ReuseBytes),
			count(p.Plan.Dirs, "directory"), count(p.Plan.Symlinks, "symlink"))
		for _, e := range p.Plan.Upload {
			fmt.Fprintf(w, "  + %q\n", e.Path)
		}
		for _, r := range p.Removed {
			fmt.Fprintf(w, "  - %q\n", r)
		}
	}
	if err != nil {
		a.log.Errorf("Plan", "%v", err)
		return 1
	}
	return 0
}

// count is len(items) things for people: 1 file, 2 files.
func count[T any](items []T, noun string) string { return words.Count(int64(len(items)), noun) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
