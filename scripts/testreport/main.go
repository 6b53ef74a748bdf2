// Command testreport reads `go test -json` on stdin and prints what plain
// `go test` would (a line per package, the output of failing tests and of
// broken builds), then one closing line:
//
//	test: N passed, N failed, N skipped
//
// It exits 1 when anything failed. scripts/test.sh pipes go test into it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	ImportPath  string // build-output / build-fail events
	FailedBuild string
}

type key struct{ pkg, test string }

func main() {
	passed, failed, skipped, err := report(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		failed++
	}
	fmt.Printf("test: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 {
		os.Exit(1)
	}
}

func report(r io.Reader, w io.Writer) (passed, failed, skipped int, err error) {
	out := map[key]*strings.Builder{} // output held until we know the result
	failedTests := map[string]int{}   // per package
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if json.Unmarshal(line, &e) != nil || e.Action == "" {
			fmt.Fprintf(w, "%s\n", line) // not JSON (e.g. a go vet or link message): show as is
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "build-output":
			fmt.Fprint(w, e.Output)
		case "output":
			if e.Test == "" {
				// Package-level lines: keep "ok", "FAIL", "?" and anything
				// printed outside tests; drop -json's implied -v chatter.
				if !strings.HasPrefix(e.Output, "=== ") && !strings.HasPrefix(e.Output, "PASS\n") {
					fmt.Fprint(w, e.Output)
				}
				continue
			}
			b := out[k]
			if b == nil {
				b = &strings.Builder{}
				out[k] = b
			}
			b.WriteString(e.Output)
		case "pass", "skip", "fail":
			if e.Test == "" {
				if e.Action == "fail" {
					if failedTests[e.Package] == 0 {
						failed++ // build failure, panic outside a test, timeout...
					}
					// Tests that never finished (a timeout, a crash): show what they said.
					for k, b := range out {
						if k.pkg == e.Package {
							fmt.Fprint(w, b.String())
							delete(out, k)
						}
					}
				}
				continue
			}
			switch e.Action {
			case "pass":
				passed++
			case "skip":
				skipped++
			case "fail":
				failed++
				failedTests[e.Package]++
				if b := out[k]; b != nil {
					fmt.Fprint(w, b.String())
				}
			}
			delete(out, k)
		}
	}
	return passed, failed, skipped, sc.Err()
}
