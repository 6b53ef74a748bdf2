package transport_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/local"
)

func TestTraceReportsErrors(t *testing.T) {
	var log bytes.Buffer
	tr := transport.Trace(local.New(), &log)
	if _, err := tr.ReadFile(context.Background(), "/nonexistent/atomic-deploy-trace"); err == nil {
		t.Fatal("no error")
	}
	if _, err := tr.Lstat(context.Background(), "/"); err != nil {
		t.Fatal(err)
	}
	if err := tr.Copy(context.Background(), "/nonexistent/atomic-deploy-trace", "/nonexistent/copy"); err == nil {
		t.Fatal("no error")
	}
	out := log.String()
	if !strings.Contains(out, "readfile  /nonexistent/atomic-deploy-trace: open") || !strings.Contains(out, "lstat     /: ok") ||
		!strings.Contains(out, "copy      /nonexistent/copy: copy /nonexistent/atomic-deploy-trace /nonexistent/copy: no such file") {
		t.Errorf("trace:\n%s", out)
	}
}
