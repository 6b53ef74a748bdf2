package faults_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestDiskFullDuringUpload deploys a release bigger than the server's disk
// (a 2 MiB tmpfs as the deploy root, in the sshd's own mount namespace).
// The deploy must say the disk is full, remove its partial release so the
// space comes back, keep `current`, and the next (smaller) deploy works.
func TestDiskFullDuringUpload(t *testing.T) {
	t.Parallel()
	for _, k := range serverKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			knownBug(t, "disk-full-msg")
			inject(t, "disk full during upload ("+k.name+")")
			e := newEnv(t, envOptions{sftpOnly: k.sftp, tmpfs: "2m"})
			first := e.mustGoDeploy()
			e.src.WriteBig("assets", 48, 64*1024) // 3 MiB
			_, err := e.goDeploy(context.Background(), nil)
			if err == nil {
				t.Fatalf("a 3 MiB release fit on a 2 MiB disk?\n%s", e.log)
			}
			t.Logf("deploy said: %v", err)
			mentionsAny(t, "the error", err.Error(), "no space left", "disk full", "disk is full")
			live := assertCompleteRelease(t, e.Root())
			if live != first {
				t.Errorf("current = %s, want %s", live, first)
			}
			if got := e.Releases(); len(got) != 1 {
				t.Errorf("releases = %v: the partial release was not removed", got)
			}
			// The next deploy, without the big files, goes through.
			if err := os.RemoveAll(filepath.Join(e.src.Dir, "assets")); err != nil {
				t.Fatal(err)
			}
			e.src.Write(map[string]string{"index.html": "v3"})
			e.afterFault("")
		})
	}
}
