package sshx

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// quickACK returns conn acknowledging at once what it receives. sshd runs
// Nagle's algorithm on its socket until a session starts (and older
// servers for good): it holds a small packet, such as the confirmation of
// the first channel, while an earlier one is unacknowledged, and that one
// (its host key notice or extension info, sent right after
// authentication) needs no reply. A client with nothing to send then
// acknowledges only when its delayed-ACK timer fires, 40 ms later on
// Linux, which is most of the time from "connected" to the first command
// running on a fast link. TCP_QUICKACK does not stay set, so it is set
// again before each read.
func quickACK(conn net.Conn) net.Conn {
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		return conn
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return conn
	}
	return &quickACKConn{TCPConn: tcp, raw: raw}
}

type quickACKConn struct {
	*net.TCPConn
	raw syscall.RawConn
}

func (c *quickACKConn) Read(p []byte) (int, error) {
	c.raw.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1) // best effort
	})
	return c.TCPConn.Read(p)
}

// linkBusy is how long the socket has had bytes unacknowledged or
// waiting to be sent since it opened: TCP_INFO's tcpi_busy_time, counted
// in jiffies, so in steps of 1 to 10 ms. A kernel before 4.10 leaves it
// 0 however busy the link, so a reader must not take 0 after megabytes
// for an idle link (the upload takes it for "not known").
func (c *quickACKConn) linkBusy() (busy time.Duration, ok bool) {
	c.raw.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil {
			busy, ok = time.Duration(info.Busy_time)*time.Microsecond, true
		}
	})
	return busy, ok
}
