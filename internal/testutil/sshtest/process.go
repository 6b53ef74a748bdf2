package sshtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Kill ends sshd and every process it started (connection handlers call
// setsid, so they are found through /proc, not a process group) with
// SIGKILL: to clients the server has died.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil && !s.killed {
		s.killed = true
		killTree(s.cmd.Process.Pid)
	}
}

// Down kills sshd as Kill does and returns once it has exited: its port
// refuses connections until Restart.
func (s *Server) Down() {
	s.Kill()
	<-s.exitedChan()
}

func (s *Server) exitedChan() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exited
}

// Restart kills sshd and every process it started, as Kill does, and
// starts it again on the same port with the same keys and options: to
// clients the server went down and came back. Connections open before are
// gone; new ones are accepted when Restart returns.
func (s *Server) Restart() error {
	s.Kill()
	<-s.exitedChan()
	// The kernel may hold the port briefly; sshd sets SO_REUSEADDR, so
	// this is short.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.log.Write([]byte("sshtest: restarting sshd\n"))
		err := s.launch(s.opts, s.Port)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("restart sshd: %v\n%s", err, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Pid is the process id of the listening sshd.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}

// Freeze stops sshd and all its processes without closing anything: to
// clients the server hangs (a dead host, a dropped NAT entry). Cleanup or
// Kill still ends it.
func (s *Server) Freeze() {
	stopTree(s.Pid())
}

// stopTree stops pid and its descendants with SIGSTOP, so none can fork or
// be reparented away meanwhile, and returns them all.
func stopTree(pid int) map[int]bool {
	stopped := map[int]bool{pid: true}
	syscall.Kill(pid, syscall.SIGSTOP)
	for {
		added := false
		for _, p := range descendants(pid) {
			if !stopped[p] {
				stopped[p] = true
				syscall.Kill(p, syscall.SIGSTOP)
				added = true
			}
		}
		if !added {
			return stopped
		}
	}
}

func killTree(pid int) {
	for p := range stopTree(pid) {
		syscall.Kill(p, syscall.SIGKILL)
	}
}

func descendants(root int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may contain spaces and ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}
