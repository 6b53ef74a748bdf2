package faults_test

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// proxy forwards TCP connections from a port on 127.0.0.1 to sshd, so a
// test can cut them like a network failure would: both ends see the
// connection close, and sshd itself keeps running.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup

	upBytes   atomic.Int64 // client-to-server bytes since arm
	dropAt    atomic.Int64 // drop when upBytes reaches this; 0: never
	dropCount atomic.Int64 // times connections were cut
	rate      atomic.Int64 // client-to-server bytes per second per connection; 0: unlimited
}

// limit slows uploads to bytesPerSec on each connection, so a test can
// count on catching a deploy mid-upload however fast the machine is.
func (p *proxy) limit(bytesPerSec int64) { p.rate.Store(bytesPerSec) }

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.drop()
		p.wg.Wait()
	})
	return p
}

// addr is where the proxy listens.
func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = true, true
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			p.pipe(s, c, true)
		}()
		go func() {
			defer p.wg.Done()
			p.pipe(c, s, false)
		}()
	}
}

func (p *proxy) pipe(dst, src net.Conn, up bool) {
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if up {
				if at := p.dropAt.Load(); at > 0 && p.upBytes.Add(int64(n)) >= at {
					p.dropAt.Store(0)
					p.drop()
					return
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
			if r := p.rate.Load(); up && r > 0 {
				time.Sleep(time.Duration(int64(n) * int64(time.Second) / r))
			}
		}
		if err != nil {
			break
		}
	}
	// One side closed: close both, as a middlebox would.
	src.Close()
	dst.Close()
	p.mu.Lock()
	delete(p.conns, src)
	delete(p.conns, dst)
	p.mu.Unlock()
}

// drop cuts every connection now.
func (p *proxy) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.conns) > 0 {
		// Counted before the cut: the client may see it at once.
		p.dropCount.Add(1)
	}
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // RST, like a dead NAT entry
		}
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

// dropAfterUpload cuts every connection once n more bytes went from the
// clients to sshd (mid-upload, for a large release).
func (p *proxy) dropAfterUpload(n int64) {
	p.upBytes.Store(0)
	p.dropAt.Store(n)
}
