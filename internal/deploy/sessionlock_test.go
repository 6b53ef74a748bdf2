package deploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/transport/local"
)

func holdLock(t *testing.T, root string) *sessionLock {
	t.Helper()
	sl, err := acquireSessionLock(context.Background(), local.New(), Layout{Root: root}, Owner{Actor: "test"},
		LockOptions{TTL: 10 * time.Second, Wait: 5 * time.Second}, rootWant{plan: true})
	if err != nil {
		t.Fatal(err)
	}
	if res := <-sl.snap; res.err != nil {
		t.Fatalf("snapshot: %v", res.err)
	}
	return sl
}

// The holder appends the record, keeps the log to its last maxLogRecords
// lines and deletes the old releases it was given, with their manifests.
func TestHolderFinishes(t *testing.T) {
	root := filepath.Join(t.TempDir(), "site")
	l := Layout{Root: root}
	sl := holdLock(t, root)
	var old strings.Builder
	for i := range maxLogRecords + 5 {
		fmt.Fprintf(&old, `{"id":"%014d","status":"success"}`+"\n", i)
	}
	os.WriteFile(l.Log(), []byte(old.String()), 0o644)
	for _, id := range []string{"20260101000000", "20260102000000"} {
		os.MkdirAll(filepath.Join(l.Release(id), "app"), 0o755)
		for _, p := range l.ReleaseFiles(id) {
			os.WriteFile(p, []byte("x"), 0o644)
		}
	}
	said, err := sl.releaseWithLog(context.Background(), []Record{{ID: "20260103000000", Status: StatusSuccess}}, []string{"20260101000000", "20260199999999"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(said, "could not remove old release 20260199999999") || strings.Contains(said, "20260101000000") {
		t.Errorf("holder said %q", said)
	}
	data, _ := os.ReadFile(l.Log())
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != maxLogRecords || !strings.Contains(lines[len(lines)-1], "20260103000000") {
		t.Errorf("log has %d lines, last %q", len(lines), lines[len(lines)-1])
	}
	for _, p := range append(l.ReleaseFiles("20260101000000"), l.Release("20260101000000"), l.flockOwner()) {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is still there", p)
		}
	}
	if _, err := os.Lstat(l.Release("20260102000000")); err != nil {
		t.Errorf("a release not named was deleted: %v", err)
	}
}

// With the record already in the log (the upload's command wrote it), the
// tail holds only releases to delete; the log gets nothing, not even an
// empty line.
func TestHolderPrunesWithoutARecord(t *testing.T) {
	root := filepath.Join(t.TempDir(), "site")
	l := Layout{Root: root}
	sl := holdLock(t, root)
	const before = `{"id":"20260103000000","status":"success"}` + "\n"
	os.WriteFile(l.Log(), []byte(before), 0o644)
	os.MkdirAll(l.Release("20260101000000"), 0o755)
	if _, err := sl.releaseWithLog(context.Background(), nil, []string{"20260101000000"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(l.Release("20260101000000")); err == nil {
		t.Error("the old release is still there")
	}
	if data, _ := os.ReadFile(l.Log()); string(data) != before {
		t.Errorf("log changed: %q", data)
	}
}
