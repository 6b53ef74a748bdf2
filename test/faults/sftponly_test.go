package faults_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
)

// TestSFTPOnlyKilledDeployLeaseExpires SIGKILLs a deploy process on an
// SFTP-only server mid-upload. There the lock is a lease directory that
// nothing removes when its holder dies; the lease stops being renewed and
// the next deploy breaks it once it is older than its TTL (2 s here, set
// through deploy.Settings by a helper process that stands in for the CLI),
// without an unlock.
func TestSFTPOnlyKilledDeployLeaseExpires(t *testing.T) {
	t.Parallel()
	inject(t, "SIGKILL mid-upload, sftp-only: the lease expires")
	e := newEnv(t, envOptions{sftpOnly: true, proxy: true})
	first := e.mustGoDeploy()
	e.src.WriteBig("assets", 400, 64*1024)
	e.px.limit(8 << 20)
	cfg, err := json.Marshal(helperConfig{Name: e.Name, SSH: e.sshConfig(), Root: e.Path, Source: e.src.Dir, TTL: 2 * time.Second, Parallel: 4})
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(cfg))
	out := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	before := e.Releases()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	e.newRelease(before, 30*time.Second)
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
	e.px.limit(0)
	if !exists(e.Root(".atomic-deploy", "lock", "owner.json")) {
		t.Fatalf("no lease left by the killed deploy (did it finish?):\n%s", out)
	}
	start := time.Now()
	e.afterFault(first)
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("the next deploy took %s to get past a dead lease with a 2s TTL", d)
	}
}
