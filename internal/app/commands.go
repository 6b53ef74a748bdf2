package app

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/report"
)

// releases prints the releases on every host.
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
		fmt.Fprintf(w, "%s:\n", n)
		fmt.Fprintf(w, "  %-2s %-14s  %-12s  %-20s  %s\n", "", "RELEASE", "STATUS", "AGE", "REVISION")
		list := lists[n]
		for i := len(list) - 1; i >= 0; i-- {
			r := list[i]
			mark := ""
			if r.Current {
				mark = "*"
			}
			age := "-"
			if t, err := time.Parse(config.ReleaseIDLayout, r.ID); err == nil {
				age = time.Since(t).Round(time.Minute).String()
			}
			// What the server's releases log says is shown, never obeyed by the terminal.
			fmt.Fprintf(w, "  %-2s %-14s  %-12s  %-20s  %s\n", mark, report.Displayable(r.ID), report.Displayable(r.Status), age, report.Displayable(r.Revision))
		}
	}
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
		fmt.Fprintf(w, "%s (live: %s): upload %d files (%s), reuse %d files (%s), %d directories, %d symlinks\n",
			p.Host, report.Displayable(orDash(p.CurrentID)), len(p.Plan.Upload), deploy.FormatBytes(p.Plan.UploadBytes), len(p.Plan.Reuse), deploy.FormatBytes(p.Plan.ReuseBytes), len(p.Plan.Dirs), len(p.Plan.Symlinks))
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

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
