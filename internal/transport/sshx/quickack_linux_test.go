package sshx

import (
	"bufio"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// quickACKState is TCP_QUICKACK as the kernel reports it: 0 while the
// socket delays its acknowledgements (an interactive exchange put it in
// that mode), 1 while it sends them at once.
func quickACKState(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var opErr error
	raw.Control(func(fd uintptr) { v, opErr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK) })
	if opErr != nil {
		t.Fatal(opErr)
	}
	return v
}

// echoPair is a TCP connection to a server that answers each line it
// reads with the same line.
func echoPair(t *testing.T) *net.TCPConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		s, err := ln.Accept()
		if err != nil {
			return
		}
		defer s.Close()
		r := bufio.NewReader(s)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			s.Write(line)
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// exchange writes lines and reads their echoes through conn, as a
// client's requests and answers go: the pattern after which Linux delays
// acknowledgements.
func exchange(t *testing.T, conn net.Conn, n int) {
	t.Helper()
	buf := make([]byte, 64)
	for range n {
		if _, err := conn.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
}

func TestQuickACKKeepsAcknowledgingAtOnce(t *testing.T) {
	plain := echoPair(t)
	exchange(t, plain, 20)
	if quickACKState(t, plain) != 0 {
		t.Skip("this kernel does not delay acknowledgements after an exchange: nothing to compare with")
	}

	tcp := echoPair(t)
	conn := quickACK(tcp)
	if _, ok := conn.(*quickACKConn); !ok {
		t.Fatalf("quickACK(%T) = %T, want the wrapper", tcp, conn)
	}
	exchange(t, conn, 20)
	if got := quickACKState(t, tcp); got != 1 {
		t.Errorf("TCP_QUICKACK after a read through quickACK = %d, want 1", got)
	}
}

func TestQuickACKLeavesOtherConnsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := quickACK(a); got != a {
		t.Errorf("quickACK(net.Pipe end) = %T, want it unchanged", got)
	}
}

// The link's busy time counts while bytes wait for a receiver that does
// not read, and hardly at all while a receiver takes each write at once:
// what the upload tells a slow link from a slow far end by.
func TestLinkBusy(t *testing.T) {
	for _, c := range []struct {
		name       string
		reads      bool
		minS, maxS float64 // the busy share of 300 ms allowed
	}{
		{"the receiver takes every byte at once: idle", true, 0, 0.2},
		{"the receiver stops reading: busy", false, 0.8, 1.1},
	} {
		t.Run(c.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				s, err := ln.Accept()
				if err != nil {
					return
				}
				defer s.Close()
				if c.reads {
					io.Copy(io.Discard, s)
					return
				}
				time.Sleep(2 * time.Second)
			}()
			nc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			conn := quickACK(nc).(*quickACKConn)
			before, ok := conn.linkBusy()
			if !ok {
				t.Fatal("no busy time on a Linux TCP socket")
			}
			start := time.Now()
			chunk := make([]byte, 64<<10)
			conn.SetWriteDeadline(start.Add(300 * time.Millisecond))
			for time.Since(start) < 300*time.Millisecond {
				if _, err := conn.Write(chunk); err != nil {
					break // the deadline, with the buffers full
				}
				if c.reads {
					time.Sleep(5 * time.Millisecond)
				}
			}
			elapsed := time.Since(start)
			after, _ := conn.linkBusy()
			if share := float64(after-before) / float64(elapsed); share < c.minS || share > c.maxS {
				t.Errorf("busy %v of %v (%.2f), want a share in [%.1f, %.1f]", after-before, elapsed, share, c.minS, c.maxS)
			}
		})
	}
}
