// Package words writes numbers for people, the same way in the log, the
// job summary and the CLI's listings.
package words

import (
	"github.com/dustin/go-humanize"
	"github.com/dustin/go-humanize/english"
)

// Count is a number of things: 1 file, 2 files, 12,345 files.
func Count(n int64, noun string) string {
	word := english.PluralWord(2, noun, "")
	if n == 1 {
		word = noun
	}
	return humanize.Comma(n) + " " + word
}

// Bytes is a size: 512 B, 2.0 KiB, 79 MiB.
func Bytes(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }
