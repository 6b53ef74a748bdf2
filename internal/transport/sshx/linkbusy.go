package sshx

import (
	"net"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

var _ transport.LinkMeter = (*Transport)(nil)

// LinkBusy (transport.LinkMeter) is how long the connection's socket
// has been busy sending since it opened, where the system says (Linux)
// and the socket meets the link: not a jump host's channel, nor a
// connection to this machine's loopback, where a relay (ssh -L, a
// tunnel's client) may take every byte at once whatever the link beyond
// it does.
func (t *Transport) LinkBusy() (time.Duration, bool) {
	m, ok := t.link.(interface{ linkBusy() (time.Duration, bool) })
	if addr, isTCP := t.link.RemoteAddr().(*net.TCPAddr); !ok || !isTCP || addr.IP.IsLoopback() {
		return 0, false
	}
	return m.linkBusy()
}
