//go:build !linux

package sshx

import "net"

// quickACK returns conn as it is: TCP_QUICKACK is Linux's (see
// quickack_linux.go for why it is set there).
func quickACK(conn net.Conn) net.Conn { return conn }
