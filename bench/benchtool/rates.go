package main

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// Initial uploads are also measured on the unshaped link held to a rate
// (tbf, no delay): their method keys end in @RATE ("tar_init@10mbit"),
// with rtt -1. The unshaped link itself is the methods without a suffix.
var rateMethods = []struct{ key, label string }{
	{"tar_init", "tar -c \\| ssh tar -x"},
	{"tarz_init", "tar -c \\| gzip -1 \\| ssh tar -xz"},
	{"ad_init", "**atomic-deploy**"},
	{"ad_init_hooks", "**atomic-deploy, before-activate: true**"},
}

// rates lists the rates measured, in the order first seen.
func (r *results) rates() []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range r.samples {
		if _, rate, ok := strings.Cut(s.method, "@"); ok && !seen[rate] {
			seen[rate] = true
			out = append(out, rate)
		}
	}
	return out
}

// rateKey is the method key of method at rate ("" is the unshaped link).
func rateKey(method, rate string) string {
	if rate == "" {
		return method
	}
	return method + "@" + rate
}

func rateLabel(rate string) string {
	if rate == "" {
		return "unshaped"
	}
	return rate
}

// writeRates prints the initial uploads by link rate and returns their
// checks: atomic-deploy, with and without a hook, no slower than the better
// of tar|ssh and tar -cz|ssh on each link (it chooses compression from
// what the link shows, so it should never lose to either).
func (r *results) writeRates(w io.Writer) []check {
	rates := r.rates()
	if len(rates) == 0 {
		return nil
	}
	cols := append([]string{""}, rates...)
	var checks []check
	for _, fs := range r.fss {
		fmt.Fprintf(w, "#### Initial upload by link rate (tbf on the unshaped link, no delay), %s destination\n\n| method |", fs)
		for _, c := range cols {
			fmt.Fprintf(w, " %s |", rateLabel(c))
		}
		fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---:|", len(cols)))
		for _, me := range rateMethods {
			fmt.Fprintf(w, "| %s |", me.label)
			for _, c := range cols {
				v, failed, ok := r.get(fs, -1, rateKey(me.key, c), wall)
				switch {
				case !ok && failed > 0:
					fmt.Fprintf(w, " error |")
				case !ok:
					fmt.Fprintf(w, " – |")
				default:
					fmt.Fprintf(w, " %s |", secs(v))
				}
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
		for _, c := range cols {
			tar, tf, tok := r.get(fs, -1, rateKey("tar_init", c), wall)
			tarz, zf, zok := r.get(fs, -1, rateKey("tarz_init", c), wall)
			best, base := math.Min(tar, tarz), "tar\\|ssh"
			if tarz < tar {
				base = "tar -cz\\|ssh"
			}
			for _, ad := range []struct{ key, what string }{{"ad_init", "initial"}, {"ad_init_hooks", "initial with a hook"}} {
				v, af, aok := r.get(fs, -1, rateKey(ad.key, c), wall)
				checks = append(checks, check{fs: fs, rtt: rateLabel(c) + ", no delay", what: ad.what + " ≤ 1.0× the better of tar\\|ssh and tar -cz\\|ssh",
					got: v, limit: best, format: secs, ratioNote: ratioText(v, best, base),
					missing: !aok || !tok || !zok, hadFailed: af+tf+zf > 0})
			}
		}
	}
	return checks
}
