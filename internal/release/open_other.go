//go:build !unix

package release

import (
	"io"
	"os"
)

// openFile opens a source file (open_unix.go has why it is not os.Open
// there); size is not needed here.
func openFile(p string, _ int64) (io.ReadCloser, error) { return os.Open(p) }
