package deploy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/shell"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/local"
)

func TestSpareShell(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	s := startSpareShell(local.New())
	// The rest of stdin, after the command line, is the command's input.
	stderr, err := s.run(context.Background(), "echo started >&2; cat > "+shell.Quote(out), strings.NewReader("line one\nline two\n"))
	if err != nil || strings.TrimSpace(stderr) != "started" {
		t.Fatalf("run: %v, stderr %q", err, stderr)
	}
	if data, _ := os.ReadFile(out); string(data) != "line one\nline two\n" {
		t.Errorf("input %q", data)
	}

	// A failing command reports its status.
	s = startSpareShell(local.New())
	if _, err := s.run(context.Background(), "exit 7", strings.NewReader("")); err == nil || !strings.Contains(err.Error(), "7") {
		t.Errorf("exit 7: %v", err)
	}

	// An unused shell ends when closed.
	s = startSpareShell(local.New())
	s.close()
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("unused shell ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("unused shell did not end")
	}

	// Cancelling the context ends a command that waits.
	s = startSpareShell(local.New())
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := s.run(ctx, "sleep 30", strings.NewReader("")); err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("cancelled run: %v after %v", err, time.Since(start))
	}
}
