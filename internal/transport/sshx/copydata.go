package sshx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"

	"golang.org/x/crypto/ssh"
)

// pkg/sftp cannot send the copy-data request, and SFTP handles belong to
// one server process, so copy-data runs on an SFTP channel of its own,
// spoken by the small client below: SFTP v3 (draft-ietf-secsh-filexfer-02)
// with just the requests a copy needs.

// Packet types, open flags, attribute flags and status codes of SFTP v3.
const (
	fxpInit     = 1
	fxpVersion  = 2
	fxpOpen     = 3
	fxpClose    = 4
	fxpFsetstat = 10
	fxpRemove   = 13
	fxpStat     = 17
	fxpStatus   = 101
	fxpHandle   = 102
	fxpAttrs    = 105
	fxpExtended = 200

	fxfRead  = 0x01
	fxfWrite = 0x02
	fxfCreat = 0x08
	fxfExcl  = 0x20

	attrSize        = 0x01
	attrUIDGID      = 0x02
	attrPermissions = 0x04

	fxOK               = 0
	fxNoSuchFile       = 2
	fxPermissionDenied = 3
	fxFailure          = 4
	fxOpUnsupported    = 8
)

// maxReply bounds the length of an answer: the ones asked for here are
// small, and anything past OpenSSH's own limit (256 KiB) is a broken stream.
const maxReply = 256 << 10

// fxStatus is an SSH_FXP_STATUS answer other than OK.
type fxStatus struct {
	code uint32
	msg  string
}

func (e *fxStatus) Error() string { return fmt.Sprintf("%s (SFTP status %d)", e.msg, e.code) }

// Unwrap gives the fs error a status stands for. SFTP v3 has no code for
// an existing file: OpenSSH answers FAILURE, which the caller looks into.
func (e *fxStatus) Unwrap() error {
	switch e.code {
	case fxNoSuchFile:
		return fs.ErrNotExist
	case fxPermissionDenied:
		return fs.ErrPermission
	case fxOpUnsupported:
		return errors.ErrUnsupported
	}
	return nil
}

// reply is one answer: its type and what follows the request id.
type reply struct {
	typ  byte
	data []byte
	err  error // the channel ended before the answer came
}

// sftpChannel is an SFTP session on the shared SSH connection. Requests
// from many goroutines are in flight at once; one goroutine reads the
// answers and hands each to the request with its id.
type sftpChannel struct {
	sess       *ssh.Session
	extensions map[string]string // from the server's VERSION

	writeMu sync.Mutex
	in      io.Writer

	mu      sync.Mutex
	nextID  uint32
	pending map[uint32]chan reply
	err     error // why the channel ended; set once
}

func openSFTPChannel(sess *ssh.Session) (*sftpChannel, error) {
	in, err := sess.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := sess.RequestSubsystem("sftp"); err != nil {
		return nil, err
	}
	if _, err := in.Write([]byte{0, 0, 0, 5, fxpInit, 0, 0, 0, 3}); err != nil {
		return nil, err
	}
	typ, body, err := readPacket(out)
	if err != nil {
		return nil, err
	}
	version, body, ok := takeUint32(body)
	if typ != fxpVersion || !ok || version != 3 {
		return nil, fmt.Errorf("the server answered SFTP INIT with packet type %d, version %d", typ, version)
	}
	c := &sftpChannel{sess: sess, in: in, extensions: map[string]string{}, pending: map[uint32]chan reply{}}
	for len(body) > 0 {
		var name, data string
		if name, body, ok = takeString(body); ok {
			data, body, ok = takeString(body)
		}
		if !ok {
			return nil, errors.New("malformed SFTP VERSION")
		}
		c.extensions[name] = data
	}
	go c.readReplies(out)
	return c, nil
}

// readReplies hands every answer to its request until the channel ends,
// then fails the requests still waiting.
func (c *sftpChannel) readReplies(out io.Reader) {
	for {
		typ, body, err := readPacket(out)
		var id uint32
		ok := false
		if err == nil {
			if id, body, ok = takeUint32(body); !ok {
				err = errors.New("malformed SFTP answer")
			}
		}
		c.mu.Lock()
		if err != nil {
			c.err = fmt.Errorf("SFTP channel for copy-data: %w", err)
			for id, ch := range c.pending {
				ch <- reply{err: c.err}
				delete(c.pending, id)
			}
			c.mu.Unlock()
			c.sess.Close()
			return
		}
		if ch := c.pending[id]; ch != nil {
			ch <- reply{typ: typ, data: body}
			delete(c.pending, id)
		}
		c.mu.Unlock()
	}
}

// request sends one request; its answer comes on the returned channel.
func (c *sftpChannel) request(typ byte, payload []byte) <-chan reply {
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.err != nil {
		ch <- reply{err: c.err}
		c.mu.Unlock()
		return ch
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()

	pkt := binary.BigEndian.AppendUint32(nil, uint32(5+len(payload)))
	pkt = append(pkt, typ)
	pkt = binary.BigEndian.AppendUint32(pkt, id)
	pkt = append(pkt, payload...)
	c.writeMu.Lock()
	_, err := c.in.Write(pkt)
	c.writeMu.Unlock()
	if err != nil {
		c.mu.Lock()
		if c.pending[id] == ch { // not already failed by readReplies
			delete(c.pending, id)
			ch <- reply{err: fmt.Errorf("SFTP channel for copy-data: %w", err)}
		}
		c.mu.Unlock()
	}
	return ch
}

// failed reports whether the channel has ended.
func (c *sftpChannel) failed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err != nil
}

// status waits for an answer that is only a status.
func status(ch <-chan reply) error { return statusOf(<-ch) }

func statusOf(r reply) error {
	if r.err != nil {
		return r.err
	}
	if r.typ != fxpStatus {
		return fmt.Errorf("unexpected SFTP answer of type %d", r.typ)
	}
	code, rest, ok := takeUint32(r.data)
	msg, _, _ := takeString(rest)
	if !ok {
		return errors.New("malformed SFTP status")
	}
	if code == fxOK {
		return nil
	}
	return &fxStatus{code: code, msg: msg}
}

// handle waits for the answer to an OPEN.
func handle(ch <-chan reply) (string, error) {
	return answer(ch, fxpHandle, func(data []byte) (string, bool) {
		h, _, ok := takeString(data)
		return h, ok
	})
}

// fileMode waits for the answer to a STAT: the st_mode it carries.
func fileMode(ch <-chan reply) (uint32, error) {
	return answer(ch, fxpAttrs, func(data []byte) (uint32, bool) {
		flags, data, ok := takeUint32(data)
		if flags&attrSize != 0 && len(data) >= 8 {
			data = data[8:]
		}
		if flags&attrUIDGID != 0 && len(data) >= 8 {
			data = data[8:]
		}
		mode, _, okMode := takeUint32(data)
		return mode, ok && okMode && flags&attrPermissions != 0
	})
}

// answer waits for an answer of type want, parsed by parse, or a status.
func answer[T any](ch <-chan reply, want byte, parse func([]byte) (T, bool)) (T, error) {
	var zero T
	r := <-ch
	if r.err != nil || r.typ == fxpStatus {
		if err := statusOf(r); err != nil {
			return zero, err
		}
		return zero, errors.New("SFTP status OK where data was due")
	}
	v, ok := parse(r.data)
	if r.typ != want || !ok {
		return zero, fmt.Errorf("unexpected or malformed SFTP answer of type %d", r.typ)
	}
	return v, nil
}

func readPacket(r io.Reader) (byte, []byte, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n == 0 || n > maxReply {
		return 0, nil, fmt.Errorf("SFTP packet of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return body[0], body[1:], nil
}

func takeUint32(b []byte) (uint32, []byte, bool) {
	if len(b) < 4 {
		return 0, b, false
	}
	return binary.BigEndian.Uint32(b), b[4:], true
}

func takeString(b []byte) (string, []byte, bool) {
	n, rest, ok := takeUint32(b)
	if !ok || uint32(len(rest)) < n {
		return "", b, false
	}
	return string(rest[:n]), rest[n:], true
}

func appendString(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint32(b, uint32(len(s))), s...)
}

func appendUint32s(b []byte, vs ...uint32) []byte {
	for _, v := range vs {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return b
}
