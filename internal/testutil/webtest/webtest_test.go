package webtest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/webtest"
)

// site makes a deploy root with two releases whose index.php prints the
// directory it runs from, and points current at the first.
func site(t *testing.T) string {
	t.Helper()
	// Not t.TempDir: its parent is private, and the workers run as another user.
	root, err := os.MkdirTemp("", "webtest-site-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"20260101000001", "20260101000002"} {
		pub := filepath.Join(root, "releases", id, "public")
		if err := os.MkdirAll(pub, 0o755); err != nil {
			t.Fatal(err)
		}
		php := "<?php echo basename(dirname(__DIR__)), \"\\n\";\n"
		if err := os.WriteFile(filepath.Join(pub, "index.php"), []byte(php), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	switchTo(t, root, "20260101000001")
	return root
}

// switchTo points current at releases/id with rename(2), as atomic-deploy does.
func switchTo(t *testing.T, root, id string) {
	t.Helper()
	tmp := filepath.Join(root, ".current.tmp")
	if err := os.Symlink("releases/"+id, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(root, "current")); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, s *webtest.Server, path string) string {
	t.Helper()
	code, body, err := s.Get(path)
	if err != nil || code != 200 {
		t.Fatalf("GET %s: %d %q %v\n%s", path, code, body, err, s.Logs())
	}
	return strings.TrimSpace(body)
}

func TestRealpathRootFollowsSwitch(t *testing.T) {
	root := site(t)
	s := webtest.Start(t, webtest.Options{DeployPath: root, Workers: 1})
	if got := get(t, s, "/"); got != "20260101000001" {
		t.Fatalf("before the switch: served %q", got)
	}
	switchTo(t, root, "20260101000002")
	if got := get(t, s, "/"); got != "20260101000002" {
		t.Fatalf("right after the switch: served %q, want the new release", got)
	}
	if got := get(t, s, "/missing/route"); got != "20260101000002" {
		t.Fatalf("front controller fallback: served %q", got)
	}
}

// With $document_root, PHP keeps running the old release after the switch:
// the trap the harness must be able to reproduce.
func TestDocumentRootServesStaleRelease(t *testing.T) {
	root := site(t)
	s := webtest.Start(t, webtest.Options{DeployPath: root, Workers: 1, DocumentRoot: true})
	if got := get(t, s, "/"); got != "20260101000001" {
		t.Fatalf("before the switch: served %q", got)
	}
	switchTo(t, root, "20260101000002")
	time.Sleep(100 * time.Millisecond)
	if got := get(t, s, "/"); got != "20260101000001" {
		t.Fatalf("after the switch with $document_root: served %q, expected the stale release (realpath cache)", got)
	}
}
