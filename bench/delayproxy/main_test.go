package main

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// TestDelayAndCount checks that a round trip through the proxy takes at
// least twice the delay, that bulk data arrives intact and in order, and
// that the bytes are counted per direction.
func TestDelayAndCount(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()

	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	var c counters
	const delay = 15 * time.Millisecond
	go func() {
		conn, err := front.Accept()
		if err != nil {
			return
		}
		serve(conn, echo.Addr().String(), delay, 64<<10, &c)
	}()

	conn, err := net.Dial("tcp", front.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))

	start := time.Now()
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatal(err)
	}
	if rtt := time.Since(start); rtt < 2*delay {
		t.Fatalf("round trip %v, want at least %v", rtt, 2*delay)
	}

	// 1 MiB through a 64 KiB buffer: reading must pause and resume.
	payload := make([]byte, 1<<20)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	go conn.Write(payload)
	back := make([]byte, len(payload))
	if _, err := io.ReadFull(conn, back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, payload) {
		t.Fatal("payload came back altered")
	}
	want := int64(4 + len(payload))
	deadline := time.Now().Add(2 * time.Second)
	for (c.up.Load() != want || c.down.Load() != want) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if c.up.Load() != want || c.down.Load() != want {
		t.Fatalf("counted up=%d down=%d, want %d each", c.up.Load(), c.down.Load(), want)
	}
}
