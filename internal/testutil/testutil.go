// Package testutil holds what the server harnesses (sshtest, webtest,
// deploytest) and the benchmarks share: a free loopback port, a buffer for a
// process's output, a listener that never speaks, a file's inode number, and
// a tree of small source files.
package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// SyncBuffer collects a process's output from its writer goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Reset empties the buffer.
func (s *SyncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

// SilentListener listens on 127.0.0.1, accepts every connection and never
// says a word (a server that hangs in its handshake). It returns the
// address and how many connections it accepted; t.Cleanup closes it all.
func SilentListener(t testing.TB) (addr string, accepted *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = &atomic.Int32{}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return l.Addr().String(), accepted
}

// Inode is the inode number of p (following links): two paths with the
// same one are the same file.
func Inode(t testing.TB, p string) uint64 {
	t.Helper()
	info, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return info.Sys().(*syscall.Stat_t).Ino
}

// SmallPHPFiles writes n files of 2–20 KB of PHP-like text into dir, the
// same every time: what the benchmarks of reading a release stream.
func SmallPHPFiles(tb testing.TB, dir string, n int) {
	tb.Helper()
	for i := range n {
		data := bytes.Repeat(fmt.Appendf(nil, "<?php // file %d\n", i), 100+i%1000)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d.php", i)), data, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}
