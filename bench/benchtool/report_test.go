package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReportRatesAndHooks: the rate rows get their own table, and each rate
// a check of atomic-deploy (with and without a hook) against the better of
// tar|ssh and tar -cz|ssh; the hook variants are checked against rsync.
func TestReportRatesAndHooks(t *testing.T) {
	var rows []string
	add := func(rtt int, method string, wall float64) {
		rows = append(rows, fmt.Sprintf("tmpfs\t%d\t%s\t1\t%.3f\t0.1\t0.1\t1000\t100\t100\tstatus=0", rtt, method, wall))
	}
	// Unshaped: tar wins; 10mbit: tar -cz wins and atomic-deploy beats it,
	// but not with the hook.
	add(-1, "tar_init", 1.0)
	add(-1, "tarz_init", 1.5)
	add(-1, "ad_init", 0.9)
	add(-1, "ad_init_hooks", 0.95)
	add(-1, "tar_init@10mbit", 45)
	add(-1, "tarz_init@10mbit", 15)
	add(-1, "ad_init@10mbit", 14)
	add(-1, "ad_init_hooks@10mbit", 15.5)
	add(20, "ssh_true", 0.3)
	add(20, "rsync_ld_kept", 2.0)
	add(20, "ad_kept", 0.7)
	add(20, "ad_kept_hooks", 0.8)
	add(20, "rsync_ld_fresh", 2.0)
	add(20, "ad_fresh_hooks", 1.3)
	dir := t.TempDir()
	in := filepath.Join(dir, "results.tsv")
	if err := os.WriteFile(in, []byte(strings.Join(rows, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	meta := filepath.Join(dir, "meta.env")
	if err := os.WriteFile(meta, []byte("changed_bytes=1000\next4=a file system of its own\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := load(in, meta)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	fails := r.write(&out)
	text := out.String()
	for _, want := range []string{
		"The ext4 destination is a file system of its own.",
		"#### Initial upload by link rate (tbf on the unshaped link, no delay), tmpfs destination",
		"| method | unshaped | 10mbit |",
		"| **atomic-deploy** | 0.90 s | 14.00 s |",
		"| tmpfs | unshaped, no delay | initial ≤ 1.0× the better of tar\\|ssh and tar -cz\\|ssh | 0.90 s | 1.00 s | 0.90× tar\\|ssh | PASS |",
		"| tmpfs | 10mbit, no delay | initial ≤ 1.0× the better of tar\\|ssh and tar -cz\\|ssh | 14.00 s | 15.00 s | 0.93× tar -cz\\|ssh | PASS |",
		"| tmpfs | 10mbit, no delay | initial with a hook ≤ 1.0× the better of tar\\|ssh and tar -cz\\|ssh | 15.50 s | 15.00 s | 1.03× tar -cz\\|ssh | **FAIL** |",
		"| tmpfs | ~20 ms | incremental with a hook (mtimes kept) ≤ 0.6× rsync --link-dest | 0.80 s | 1.20 s | 0.40× rsync_ld_kept | PASS |",
		"| tmpfs | ~20 ms | incremental with a hook (fresh build) ≤ 0.6× rsync --link-dest | 1.30 s | 1.20 s | 0.65× rsync_ld_fresh | **FAIL** |",
		"| tmpfs | ~20 ms | a hook (before-activate: true) costs ≤ one ssh true | 0.10 s | 0.30 s |",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// The rate rows stay out of the wall-time table's RTT columns.
	if strings.Contains(text, "@10mbit") {
		t.Errorf("a rate method key leaked into the report:\n%s", text)
	}
	if fails != 2 {
		t.Errorf("%d failed targets, want 2\n%s", fails, text)
	}
}
