package sshx_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/sshtest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/sshx"
)

// BenchmarkCopy copies 1,000 files of 10 KB with each way sshx copies,
// and hard-links them as a reused file was before, all in flight at once
// as an upload issues them; into a directory on this machine's disk and
// on a tmpfs. COPY_BENCH_RTT_MS (with COPY_BENCH_PROXY, a built
// bench/delayproxy) puts a link with that round trip between client and
// server. Run with -benchtime=3x: every iteration copies into a new
// directory.
func BenchmarkCopy(b *testing.B) {
	const files, size = 1000, 10 << 10
	rtt, _ := strconv.Atoi(os.Getenv("COPY_BENCH_RTT_MS"))
	for _, fs := range []string{"disk", "tmpfs"} {
		for _, m := range append(copyMethods, struct {
			method   string
			sftpOnly bool
			noExt    bool
		}{"hard link (hardlink@openssh.com)", true, false}) {
			b.Run(fs+"/"+m.method, func(b *testing.B) {
				dir, err := os.MkdirTemp("", "copy-bench-")
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { os.RemoveAll(dir) })
				os.Chmod(dir, 0o777)
				opts := sshtest.Options{SFTPOnly: m.sftpOnly}
				if fs == "tmpfs" {
					opts.TmpfsMounts = map[string]string{dir: "512m"}
				}
				s := sshtest.Start(b, opts)
				// The login user's, so that fs.protected_hardlinks lets it link them.
				owner, err := user.Lookup(s.User)
				if err != nil {
					b.Fatal(err)
				}
				uid, _ := strconv.Atoi(owner.Uid)
				gid, _ := strconv.Atoi(owner.Gid)
				for i := range files {
					p := s.Path(fmt.Sprintf("%s/f%04d", dir, i))
					if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
						b.Fatal(err)
					}
					os.Chown(p, uid, gid)
				}
				tr := dial(b, benchConfig(b, s, rtt))
				if m.noExt {
					sshx.DisableExtensions(tr)
				}
				op := tr.Copy
				if strings.HasPrefix(m.method, "hard link") {
					op = tr.Link
				}
				ctx := context.Background()
				run := 0
				for b.Loop() {
					run++
					to := fmt.Sprintf("%s/run%d", dir, run)
					if err := tr.Mkdir(ctx, to, 0o755); err != nil {
						b.Fatal(err)
					}
					var wg sync.WaitGroup
					errs := make(chan error, files)
					for i := range files {
						wg.Go(func() {
							if err := op(ctx, fmt.Sprintf("%s/f%04d", dir, i), fmt.Sprintf("%s/f%04d", to, i)); err != nil {
								errs <- err
							}
						})
					}
					wg.Wait()
					close(errs)
					if err := <-errs; err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(files*b.N)/b.Elapsed().Seconds(), "files/s")
			})
		}
	}
}

// benchConfig is s's config, through a delay proxy when rtt > 0.
func benchConfig(b *testing.B, s *sshtest.Server, rtt int) sshx.Config {
	cfg := s.Config()
	if rtt == 0 {
		return cfg
	}
	bin := os.Getenv("COPY_BENCH_PROXY")
	if bin == "" {
		b.Fatal("COPY_BENCH_RTT_MS needs COPY_BENCH_PROXY: go build -o /tmp/delayproxy ./bench/delayproxy")
	}
	cmd := exec.Command(bin, "-delay", (time.Duration(rtt) * time.Millisecond / 2).String(), "-lifetime", "30m",
		"-forward", "127.0.0.1:0="+s.Addr)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		b.Fatalf("delay proxy printed nothing: %v", sc.Err())
	}
	f := strings.Fields(sc.Text()) // forward <listening addr> <target>
	port := 0
	if len(f) == 3 {
		_, p, _ := strings.Cut(f[1], ":")
		port, _ = strconv.Atoi(p)
	}
	if port == 0 {
		b.Fatalf("delay proxy printed %q", sc.Text())
	}
	cfg.Port, cfg.KnownHosts, cfg.Fingerprints = port, "", []string{s.HostFingerprint}
	return cfg
}
