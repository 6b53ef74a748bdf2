// Command benchtool holds the helpers of bench/run.sh and bench/rss.sh:
//
//	benchtool gen    -out DIR [-files 5000 -min 2048 -max 20480 -seed 1]  deterministic vendor/-like tree
//	benchtool change -dir DIR [-n 50 -seed 2 -list FILE]                  rewrite n files of it in place
//	benchtool report -in results.tsv -meta meta.env                        Markdown table of medians and targets
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtool gen|change|report [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = cmdGen(os.Args[2:])
	case "change":
		err = cmdChange(os.Args[2:])
	case "report":
		err = cmdReport(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}
