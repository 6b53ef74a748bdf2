// Command delayproxy is a TCP forwarder for benchmarks that delays each
// direction of every connection by a fixed time, so a link with ~0 ms round
// trips behaves like one with 2×delay, and counts the bytes it forwards.
//
// It buffers what it reads (bounded per direction) and writes each chunk
// once its delay has passed, so the delay does not limit throughput the way
// a small TCP window would: bandwidth is left to whatever shapes the link
// behind it (tc tbf in bench/run.sh).
//
//	delayproxy -listen 127.0.0.1:2220 -target 169.254.77.2:22 -delay 10ms -stats 127.0.0.1:2320
//	delayproxy -query 127.0.0.1:2320    # prints "up=<bytes> down=<bytes> conns=<n>"
//
// Several links with the same delay can share one process: each -forward
// LISTEN=TARGET (repeatable, instead of or besides -listen/-target) adds a
// listener. Port 0 picks a free port; once every listener is up, the proxy
// prints one line per -forward on stdout, "forward <listening addr> <target>",
// in the order given:
//
//	delayproxy -delay 10ms -forward 127.0.0.1:0=127.0.0.1:40001 -forward 127.0.0.1:0=127.0.0.1:40002
//
// It is meant for network namespaces and loopback only, and exits by itself
// after -lifetime.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type counters struct {
	up, down, conns atomic.Int64
}

// forward is one -forward LISTEN=TARGET.
type forward struct{ listen, target string }

func main() {
	listen := flag.String("listen", "127.0.0.1:2220", "address to accept connections on")
	target := flag.String("target", "", "address to forward to")
	delay := flag.Duration("delay", 0, "added to each direction (round trip grows by twice this)")
	stats := flag.String("stats", "", "address answering each connection with the byte counters")
	query := flag.String("query", "", "print the counters of the proxy whose -stats is this address, and exit")
	maxBuf := flag.Int("max-buffer", 8<<20, "bytes held per direction before reading pauses")
	maxConns := flag.Int("max-conns", 256, "connections served at once")
	lifetime := flag.Duration("lifetime", time.Hour, "exit after this long, whatever happens")
	var forwards []forward
	flag.Func("forward", "LISTEN=TARGET: one more listener forwarding to its own target (repeatable; port 0 picks one, printed on stdout)", func(v string) error {
		l, t, ok := strings.Cut(v, "=")
		if !ok || l == "" || t == "" {
			return errors.New("want LISTEN=TARGET")
		}
		forwards = append(forwards, forward{l, t})
		return nil
	})
	flag.Parse()

	if *query != "" {
		if err := queryStats(*query); err != nil {
			fmt.Fprintln(os.Stderr, "delayproxy:", err)
			os.Exit(1)
		}
		return
	}
	if *target == "" && len(forwards) == 0 {
		fmt.Fprintln(os.Stderr, "delayproxy: -target (or -forward) is required")
		os.Exit(2)
	}
	log.SetPrefix("delayproxy: ")
	log.SetFlags(0)

	var single net.Listener
	if *target != "" {
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			log.Fatal(err)
		}
		single = ln
	}
	extra := make([]net.Listener, len(forwards))
	for i, fw := range forwards {
		ln, err := net.Listen("tcp", fw.listen)
		if err != nil {
			log.Fatal(err)
		}
		extra[i] = ln
	}
	var c counters
	if *stats != "" {
		sl, err := net.Listen("tcp", *stats)
		if err != nil {
			log.Fatal(err)
		}
		go serveStats(sl, &c)
	}
	time.AfterFunc(*lifetime, func() {
		log.Printf("lifetime %v over, exiting", *lifetime)
		os.Exit(0)
	})

	slots := make(chan struct{}, *maxConns)
	for i, ln := range extra {
		fmt.Printf("forward %s %s\n", ln.Addr(), forwards[i].target)
		go accept(ln, forwards[i].target, *delay, *maxBuf, slots, &c)
	}
	if single != nil {
		accept(single, *target, *delay, *maxBuf, slots, &c)
	}
	select {} // the -forward listeners run until -lifetime or a signal
}

// accept serves ln until it fails (then the proxy exits), at most
// cap(slots) connections at once over all listeners.
func accept(ln net.Listener, target string, delay time.Duration, maxBuf int, slots chan struct{}, c *counters) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		select {
		case slots <- struct{}{}:
		default:
			conn.Close()
			continue
		}
		c.conns.Add(1)
		go func() {
			defer func() { <-slots }()
			serve(conn, target, delay, maxBuf, c)
		}()
	}
}

func serveStats(ln net.Listener, c *counters) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintf(conn, "up=%d down=%d conns=%d\n", c.up.Load(), c.down.Load(), c.conns.Load())
		conn.Close()
	}
}

func queryStats(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = io.Copy(os.Stdout, conn)
	return err
}

func serve(client net.Conn, target string, delay time.Duration, maxBuf int, c *counters) {
	defer client.Close()
	server, err := net.DialTimeout("tcp", target, 10*time.Second)
	if err != nil {
		log.Printf("dial %s: %v", target, err)
		return
	}
	defer server.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pump(client, server, delay, maxBuf, &c.up) }()
	go func() { defer wg.Done(); pump(server, client, delay, maxBuf, &c.down) }()
	wg.Wait()
}

type chunk struct {
	data []byte
	due  time.Time
}

// pump copies src to dst, each chunk leaving `delay` after it arrived. At
// EOF it half-closes dst; on any error it closes both ends.
func pump(src, dst net.Conn, delay time.Duration, maxBuf int, n *atomic.Int64) {
	q := newQueue(maxBuf)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ch, ok := q.pop()
			if !ok {
				return
			}
			if d := time.Until(ch.due); d > 0 {
				time.Sleep(d)
			}
			if _, err := dst.Write(ch.data); err != nil {
				q.abort()
				src.Close()
				return
			}
			n.Add(int64(len(ch.data)))
			q.release(len(ch.data))
		}
	}()
	// One read buffer; each chunk keeps a copy of just what was read (a
	// fresh 64 KiB buffer per small read cost the proxy more CPU than the
	// network it stands in for).
	buf := make([]byte, 64<<10)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if !q.push(chunk{data: append([]byte(nil), buf[:k]...), due: time.Now().Add(delay)}) {
				break
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				dst.Close()
			}
			break
		}
	}
	q.close()
	<-done
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// queue is a FIFO of chunks bounded in bytes.
type queue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	items   []chunk
	bytes   int
	max     int
	closed  bool
	aborted bool
}

func newQueue(max int) *queue {
	q := &queue{max: max}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// push waits for room, then appends; false once the writer gave up.
func (q *queue) push(c chunk) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.bytes > 0 && q.bytes+len(c.data) > q.max && !q.aborted {
		q.cond.Wait()
	}
	if q.aborted {
		return false
	}
	q.items = append(q.items, c)
	q.bytes += len(c.data)
	q.cond.Broadcast()
	return true
}

// pop waits for a chunk; false when the queue is closed and drained.
func (q *queue) pop() (chunk, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed && !q.aborted {
		q.cond.Wait()
	}
	if q.aborted || len(q.items) == 0 {
		return chunk{}, false
	}
	c := q.items[0]
	q.items[0] = chunk{}
	q.items = q.items[1:]
	return c, true
}

// release returns n bytes of budget once a chunk has been written.
func (q *queue) release(n int) {
	q.mu.Lock()
	q.bytes -= n
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *queue) abort() {
	q.mu.Lock()
	q.aborted = true
	q.cond.Broadcast()
	q.mu.Unlock()
}
