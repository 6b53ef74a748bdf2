package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// A sample is one timed command, one line of results.tsv:
//
//	fs  rtt_ms  method  run  wall_s  user_s  sys_s  maxrss_kb  up_bytes  down_bytes  extra
//
// extra is key=value pairs separated by commas ("-" for none).
type sample struct {
	fs, method       string
	rtt, run         int
	wall, user, sys  float64
	maxRSS, up, down int64
	extra            map[string]string
	ok               bool
}

// Methods in table order, with their labels.
var methods = []struct{ key, label string }{
	{"ssh_true", "ssh true (connection set-up)"},
	{"tar_init", "tar -c \\| ssh tar -x (initial)"},
	{"tarz_init", "tar -c \\| gzip -1 \\| ssh tar -xz (initial; context only)"},
	{"rsync_init", "rsync -a (initial)"},
	{"ad_init", "**atomic-deploy (initial)**"},
	{"rsync_ld_kept", "rsync -a --link-dest, 50 changed, mtimes kept"},
	{"rsync_ld_fresh", "rsync -a --link-dest, 50 changed, fresh build (all mtimes new)"},
	{"floor", "ssh 'cp -al base new' + tar of the 50 changed (floor)"},
	{"ad_kept", "**atomic-deploy, 50 changed, mtimes kept**"},
	{"ad_fresh", "**atomic-deploy, 50 changed, fresh build**"},
	{"ad_noop", "**atomic-deploy, no-op (nothing changed)**"},
	{"ad_rollback", "**atomic-deploy rollback (to the release before the 50 changed)**"},
	{"rsync_cd_kept", "rsync -a --copy-dest (private copies), 50 changed, mtimes kept"},
	{"rsync_cd_fresh", "rsync -a --copy-dest (private copies), 50 changed, fresh build"},
	{"ad_init_hooks", "**atomic-deploy (initial), before-activate: true**"},
	{"ad_kept_hooks", "**atomic-deploy, 50 changed, mtimes kept, before-activate: true**"},
	{"ad_fresh_hooks", "**atomic-deploy, 50 changed, fresh build, before-activate: true**"},
	{"ad_init_laravel", "**atomic-deploy (initial), the Laravel preset's shape**"},
	{"ad_kept_laravel", "**atomic-deploy, 50 changed, mtimes kept, the Laravel preset's shape**"},
	{"ad_fresh_laravel", "**atomic-deploy, 50 changed, fresh build, the Laravel preset's shape**"},
}

type results struct {
	samples []sample
	meta    map[string]string
	fss     []string
	rtts    []int
}

func cmdReport(args []string) error {
	fl := flag.NewFlagSet("report", flag.ContinueOnError)
	in := fl.String("in", "", "results.tsv")
	metaPath := fl.String("meta", "", "meta.env (key=value lines)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	r, err := load(*in, *metaPath)
	if err != nil {
		return err
	}
	fails := r.write(os.Stdout)
	if fails > 0 {
		fmt.Fprintf(os.Stderr, "benchtool report: %d target(s) FAIL\n", fails)
	}
	return nil
}

func load(in, metaPath string) (*results, error) {
	r := &results{meta: map[string]string{}}
	if metaPath != "" {
		data, err := os.ReadFile(metaPath)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				r.meta[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
	}
	f, err := os.Open(in)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	seenFS, seenRTT := map[string]bool{}, map[int]bool{}
	for line := 1; sc.Scan(); line++ {
		t := sc.Text()
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		c := strings.Split(t, "\t")
		if len(c) != 11 {
			return nil, fmt.Errorf("%s:%d: %d fields, want 11", in, line, len(c))
		}
		s := sample{fs: c[0], method: c[2], extra: map[string]string{}, ok: true}
		s.rtt, _ = strconv.Atoi(c[1])
		s.run, _ = strconv.Atoi(c[3])
		var perr error
		parseF := func(v string) float64 {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil && perr == nil {
				perr = err
			}
			return x
		}
		parseI := func(v string) int64 {
			x, err := strconv.ParseInt(v, 10, 64)
			if err != nil && perr == nil {
				perr = err
			}
			return x
		}
		s.wall, s.user, s.sys = parseF(c[4]), parseF(c[5]), parseF(c[6])
		s.maxRSS, s.up, s.down = parseI(c[7]), parseI(c[8]), parseI(c[9])
		if perr != nil {
			return nil, fmt.Errorf("%s:%d: %v", in, line, perr)
		}
		if c[10] != "-" {
			for _, kv := range strings.Split(c[10], ",") {
				k, v, _ := strings.Cut(kv, "=")
				s.extra[k] = v
			}
		}
		if s.extra["status"] != "" && s.extra["status"] != "0" {
			s.ok = false
		}
		r.samples = append(r.samples, s)
		if !seenFS[s.fs] {
			seenFS[s.fs] = true
			r.fss = append(r.fss, s.fs)
		}
		if !seenRTT[s.rtt] {
			seenRTT[s.rtt] = true
			r.rtts = append(r.rtts, s.rtt)
		}
	}
	sort.Ints(r.rtts)
	return r, sc.Err()
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return -1
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// get returns the median of f over the successful samples of one cell, and
// how many samples failed.
func (r *results) get(fs string, rtt int, method string, f func(sample) float64) (float64, int, bool) {
	var xs []float64
	failed := 0
	for _, s := range r.samples {
		if s.fs == fs && s.rtt == rtt && s.method == method {
			if !s.ok {
				failed++
				continue
			}
			xs = append(xs, f(s))
		}
	}
	return median(xs), failed, len(xs) > 0
}

func wall(s sample) float64  { return s.wall }
func cpu(s sample) float64   { return s.user + s.sys }
func total(s sample) float64 { return float64(s.up + s.down) }
func upB(s sample) float64   { return float64(s.up) }
func downB(s sample) float64 { return float64(s.down) }
func rss(s sample) float64   { return float64(s.maxRSS) }
func extraF(key string) func(sample) float64 {
	return func(s sample) float64 { x, _ := strconv.ParseFloat(s.extra[key], 64); return x }
}

func rttLabel(ms int) string {
	switch {
	case ms < 0:
		return "no tbf, ~0 ms"
	case ms == 0:
		return "~0 ms"
	}
	return fmt.Sprintf("~%d ms", ms)
}

func secs(x float64) string { return fmt.Sprintf("%.2f s", x) }

func mb(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.2f MB", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.0f kB", x/1e3)
	}
	return fmt.Sprintf("%.0f B", x)
}

type check struct {
	fs, rtt, what      string
	got, limit         float64
	format             func(float64) string
	ratioNote          string
	missing, hadFailed bool
}

// write prints the Markdown report and returns the number of failed targets.
func (r *results) write(w io.Writer) int {
	m := r.meta
	runs := m["runs"]
	fmt.Fprintf(w, "### Benchmark: %s files (%s), %s changed (%s); %s, medians of %s run(s)\n\n",
		m["files"], mb(atof(m["bytes"])), m["changed_files"], mb(atof(m["changed_bytes"])), m["link"], runs)
	fmt.Fprintf(w, "atomic-deploy %s, %s, %s, %s (load average %s at the start, %s at the end). RTT is twice the proxy's per-direction delay.\n\n",
		m["ad_rev"], m["ssh"], m["cpu"], m["date"], m["load_start"], m["load_end"])
	if e := m["ext4"]; e != "" {
		fmt.Fprintf(w, "The ext4 destination is %s.\n\n", e)
	}

	for _, fs := range r.fss {
		fmt.Fprintf(w, "#### Wall time, %s destination\n\n", fs)
		fmt.Fprintf(w, "| method |")
		for _, rtt := range r.rtts {
			fmt.Fprintf(w, " %s |", rttLabel(rtt))
		}
		fmt.Fprintf(w, "\n|---|")
		for range r.rtts {
			fmt.Fprintf(w, "---:|")
		}
		fmt.Fprintln(w)
		for _, me := range methods {
			fmt.Fprintf(w, "| %s |", me.label)
			for _, rtt := range r.rtts {
				v, failed, ok := r.get(fs, rtt, me.key, wall)
				switch {
				case !ok && failed > 0:
					fmt.Fprintf(w, " error |")
				case !ok:
					fmt.Fprintf(w, " – |")
				case failed > 0:
					fmt.Fprintf(w, " %s (%d failed) |", secs(v), failed)
				default:
					fmt.Fprintf(w, " %s |", secs(v))
				}
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
	}

	// Bytes: the same on every link, so from one RTT and the first filesystem.
	shaped := r.shapedRTTs()
	if len(r.fss) > 0 && len(shaped) > 0 {
		fs, rtt := r.fss[0], shaped[len(shaped)/2]
		fmt.Fprintf(w, "#### Bytes through the proxy (SSH stream, both directions), %s, %s\n\n", fs, rttLabel(rtt))
		fmt.Fprintf(w, "| method | client→server | server→client | total | client CPU (user+sys) | client peak RSS |\n|---|---:|---:|---:|---:|---:|\n")
		for _, me := range methods {
			up, _, ok := r.get(fs, rtt, me.key, upB)
			if !ok {
				continue
			}
			down, _, _ := r.get(fs, rtt, me.key, downB)
			tot, _, _ := r.get(fs, rtt, me.key, total)
			c, _, _ := r.get(fs, rtt, me.key, cpu)
			rs, _, _ := r.get(fs, rtt, me.key, rss)
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", me.label, mb(up), mb(down), mb(tot), secs(c), mb(rs*1024))
		}
		fmt.Fprintln(w)
	}

	var checks []check
	add := func(c check) { checks = append(checks, c) }
	for _, fs := range r.fss {
		for _, rtt := range r.rtts {
			cell := func(method string, f func(sample) float64) (float64, bool, bool) {
				v, failed, ok := r.get(fs, rtt, method, f)
				return v, ok, failed > 0
			}
			ratio := func(what, a, b string, k float64) {
				av, aok, af := cell(a, wall)
				bv, bok, bf := cell(b, wall)
				add(check{fs: fs, rtt: rttLabel(rtt), what: what, got: av, limit: k * bv, format: secs,
					ratioNote: ratioText(av, bv, b), missing: !aok || !bok, hadFailed: af || bf})
			}
			switch rtt {
			case -1:
				ratio("CPU guard: initial ≤ 1.5× tar\\|ssh", "ad_init", "tar_init", 1.5)
				continue // only initial uploads run on the unshaped link (and the rates: rateChecks)
			case 0:
				if r.rtts[0] >= 0 { // no unshaped run: guard on the shaped link
					ratio("CPU guard: initial ≤ 1.5× tar\\|ssh", "ad_init", "tar_init", 1.5)
				}
			case 20:
				ratio("initial ≤ 1.15× tar\\|ssh", "ad_init", "tar_init", 1.15)
			case 50:
				ratio("initial ≤ 1.25× tar\\|ssh", "ad_init", "tar_init", 1.25)
			}
			ratio("incremental (mtimes kept) ≤ 0.6× rsync --link-dest", "ad_kept", "rsync_ld_kept", 0.6)
			ratio("incremental (fresh build) ≤ 0.6× rsync --link-dest", "ad_fresh", "rsync_ld_fresh", 0.6)
			ratio("incremental with a hook (mtimes kept) ≤ 0.6× rsync --link-dest", "ad_kept_hooks", "rsync_ld_kept", 0.6)
			ratio("incremental with a hook (fresh build) ≤ 0.6× rsync --link-dest", "ad_fresh_hooks", "rsync_ld_fresh", 0.6)
			hv, hok, hf := cell("ad_kept_hooks", wall)
			kv, kok, kf := cell("ad_kept", wall)
			tv, tok, tf := cell("ssh_true", wall)
			add(check{fs: fs, rtt: rttLabel(rtt), what: "a hook (before-activate: true) costs ≤ one ssh true", got: hv - kv, limit: tv, format: secs,
				ratioNote: fmt.Sprintf("%s with, %s without; ssh true %s", secs(hv), secs(kv), secs(tv)), missing: !hok || !kok || !tok, hadFailed: hf || kf || tf})
			ratio("incremental (mtimes kept) ≤ 1.5× cp -al+tar floor", "ad_kept", "floor", 1.5)
			ratio("incremental (fresh build) ≤ 1.5× cp -al+tar floor", "ad_fresh", "floor", 1.5)
			nv, nok, nf := cell("ad_noop", wall)
			sv, sok, sf := cell("ssh_true", wall)
			add(check{fs: fs, rtt: rttLabel(rtt), what: "no-op ≤ ssh true + 1 s", got: nv, limit: sv + 1, format: secs,
				ratioNote: fmt.Sprintf("ssh true %s + %.2f s", secs(sv), nv-sv), missing: !nok || !sok, hadFailed: nf || sf})
		}
		// Bytes do not depend on the RTT: one check per variant, middle RTT.
		if len(shaped) == 0 {
			continue
		}
		rtt := shaped[len(shaped)/2]
		changed := atof(r.meta["changed_bytes"])
		for _, v := range []struct{ key, name string }{{"ad_kept", "mtimes kept"}, {"ad_fresh", "fresh build"}} {
			tot, failed, ok := r.get(fs, rtt, v.key, total)
			man, _, _ := r.get(fs, rtt, v.key, extraF("manifest"))
			add(check{fs: fs, rtt: rttLabel(rtt), what: "bytes on the wire (" + v.name + ") ≤ 1.2× (changed + manifest)",
				got: tot, limit: 1.2 * (changed + man), format: mb,
				ratioNote: fmt.Sprintf("%.2f× of %s changed + %s manifest", tot/(changed+man), mb(changed), mb(man)),
				missing:   !ok, hadFailed: failed > 0})
		}
	}

	checks = append(checks, r.writeRates(w)...)

	fails := 0
	fmt.Fprintf(w, "#### Targets\n\n| dest | RTT | target | atomic-deploy | limit | vs. | result |\n|---|---|---|---:|---:|---|---|\n")
	for _, c := range checks {
		res := "PASS"
		switch {
		case c.missing:
			res = "n/a"
		case c.got > c.limit || c.hadFailed:
			res = "**FAIL**"
			fails++
		}
		got, limit := c.format(c.got), c.format(c.limit)
		if c.missing {
			got, limit = "–", "–"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", c.fs, c.rtt, c.what, got, limit, c.ratioNote, res)
	}
	fmt.Fprintln(w)
	noisy, busy := 0, []float64{}
	for _, s := range r.samples {
		b, err := strconv.ParseFloat(s.extra["busy"], 64)
		if err != nil {
			continue
		}
		busy = append(busy, b)
		if b > 25 {
			noisy++
		}
	}
	if len(busy) > 0 {
		var niced []float64
		for _, s := range r.samples {
			if n, err := strconv.ParseFloat(s.extra["niced"], 64); err == nil {
				niced = append(niced, n)
			}
		}
		fmt.Fprintf(w, "Other work on the machine just before each sample: CPUs busy at normal priority median %.0f%% (%d of %d samples above 25%%), with niced work median %.0f%%; the benchmark runs at nice %s.\n\n",
			median(busy), noisy, len(busy), median(niced), m["nice"])
	}
	if p := m["rss_md"]; p != "" {
		if data, err := os.ReadFile(p); err == nil {
			w.Write(data)
			fmt.Fprintln(w)
		}
	}
	return fails
}

// shapedRTTs are the RTTs measured on the 100 Mbit link.
func (r *results) shapedRTTs() []int {
	var out []int
	for _, x := range r.rtts {
		if x >= 0 {
			out = append(out, x)
		}
	}
	return out
}

func ratioText(a, b float64, base string) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f× %s", a/b, base)
}

func atof(s string) float64 {
	x, _ := strconv.ParseFloat(s, 64)
	return x
}
