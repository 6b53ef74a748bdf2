package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/local"
)

func holdLock(t *testing.T, root string) *sessionLock {
	t.Helper()
	sl, err := acquireSessionLock(context.Background(), local.New(), Layout{Root: root}, Owner{Actor: "test"},
		LockOptions{TTL: 10 * time.Second, Wait: 5 * time.Second}, snapshotWant{plan: true})
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
		os.WriteFile(l.Manifest(id), []byte("x"), 0o644)
		os.WriteFile(filepath.Join(l.Manifests(), id+".delta"), []byte("x"), 0o644)
	}
	said, err := sl.releaseWithLog(context.Background(), []byte(`{"id":"20260103000000","status":"success"}`), []string{"20260101000000", "20260199999999"})
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
	for _, p := range []string{l.Release("20260101000000"), l.Manifest("20260101000000"), filepath.Join(l.Manifests(), "20260101000000.delta"), l.flockOwner()} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is still there", p)
		}
	}
	if _, err := os.Lstat(l.Release("20260102000000")); err != nil {
		t.Errorf("a release not named was deleted: %v", err)
	}
}

// A tail cut short (the connection dropped while it was sent) is not acted
// on, and the holder says so with its status.
func TestHolderIgnoresACutTail(t *testing.T) {
	root := filepath.Join(t.TempDir(), "site")
	l := Layout{Root: root}
	sl := holdLock(t, root)
	os.MkdirAll(l.Release("20260101000000"), 0o755)
	close(sl.stop)
	sl.wg.Wait()
	sl.stdin.Write([]byte(`{"id":"20260103000000","status":"success"}` + "\n" + logTailPrune + "\n20260101000000\n"))
	sl.stdin.Close()
	err := <-sl.done
	var exit *transport.ExitError
	if !errors.As(err, &exit) || exit.Status != 4 {
		t.Errorf("holder ended with %v, want status 4", err)
	}
	if data, _ := os.ReadFile(l.Log()); strings.Contains(string(data), "20260103000000") {
		t.Errorf("log got the record of a cut tail: %q", data)
	}
	if _, err := os.Lstat(l.Release("20260101000000")); err != nil {
		t.Errorf("release deleted on a cut tail: %v", err)
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

// The guard of a switch made on the server holds while the holder lives
// and its identity file is ours, and fails once either is not so.
func TestStillHeld(t *testing.T) {
	root := filepath.Join(t.TempDir(), "site")
	l := Layout{Root: root}
	sl := holdLock(t, root)
	check := func() error {
		return local.New().Exec(context.Background(), transport.Command{Name: "test", Script: sl.stillHeld()}, nil, nil, nil)
	}
	if err := check(); err != nil {
		t.Fatalf("held lock: %v", err)
	}
	data, _ := os.ReadFile(l.flockOwner())
	os.WriteFile(l.flockOwner(), []byte(`{"token":"someone else"}`), 0o644)
	if check() == nil {
		t.Error("guard passed with another deploy's identity file")
	}
	os.WriteFile(l.flockOwner(), data, 0o644)
	if err := check(); err != nil {
		t.Fatalf("identity restored: %v", err)
	}
	sl.Release(context.Background())
	if check() == nil {
		t.Error("guard passed after the holder ended")
	}
}
