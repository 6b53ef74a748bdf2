package sshx

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/pkg/sftp"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// missingStatus is what copy.sh exits with when OLD or the directory of
// NEW does not exist, so it can be reported as fs.ErrNotExist.
const missingStatus = 2

// Copy makes newpath a private copy of oldpath on the server: with SFTP's
// copy-data extension where the server offers it (OpenSSH 9.0 and later),
// else with GNU cp over exec, else by reading the file through this
// machine and writing it back (CopyMethod says which).
func (t *Transport) Copy(ctx context.Context, oldpath, newpath string) error {
	if err := t.Ready(ctx); err != nil {
		return err
	}
	var err error
	switch t.copyMethod() {
	case transport.CopyServerSide:
		err = t.do(ctx, func() error { return t.copyServerSide(ctx, oldpath, newpath) })
	case transport.CopyShell:
		err = t.copyShell(ctx, oldpath, newpath)
	default:
		err = t.copyThrough(ctx, oldpath, newpath)
	}
	if err != nil {
		return fmt.Errorf("copy %s %s: %w", oldpath, newpath, err)
	}
	return nil
}

// CopyMethod names how Copy copies on this server; it waits for SFTP to
// start and, on a server without copy-data, for the shell probe.
func (t *Transport) CopyMethod() string {
	<-t.ready
	return t.copyMethod()
}

func (t *Transport) copyMethod() string {
	switch {
	case t.copyData:
		return transport.CopyServerSide
	case t.hasShell() && t.gnuCp:
		return transport.CopyShell
	}
	return transport.CopyThroughClient
}

// copyServerSide copies with copy-data in two round trips: the source's
// mode and both handles; then the copy, the mode and the closes, all sent
// at once (the server answers them in order). The copy is created
// readable only by its owner and gets its mode after its content, since a
// write by a user other than root clears setuid and setgid.
func (t *Transport) copyServerSide(ctx context.Context, oldpath, newpath string) error {
	c, err := t.copyChannel(ctx)
	if err != nil {
		return err
	}
	stat := c.request(fxpStat, appendString(nil, oldpath))
	// OPEN: path, pflags, ATTRS (flags, then the attributes they name).
	openOld := c.request(fxpOpen, appendUint32s(appendString(nil, oldpath), fxfRead, 0))
	openNew := c.request(fxpOpen, appendUint32s(appendString(nil, newpath), fxfWrite|fxfCreat|fxfExcl, attrPermissions, 0o600))
	mode, statErr := fileMode(stat)
	oldHandle, oldErr := handle(openOld)
	newHandle, newErr := handle(openNew)
	switch {
	case statErr != nil:
		err = fmt.Errorf("stat %s: %w", oldpath, statErr)
	case mode&0o170000 != 0o100000:
		err = errors.New("not a regular file")
	case oldErr != nil:
		err = fmt.Errorf("open %s: %w", oldpath, oldErr)
	case newErr != nil:
		err = fmt.Errorf("create %s: %w", newpath, t.noSpace(newpath, t.existsErr(newpath, newErr)))
	}

	var copied, chmod, closed <-chan reply
	if err == nil {
		req := appendString(nil, "copy-data")
		req = appendString(req, oldHandle)
		req = binary.BigEndian.AppendUint64(req, 0) // read from offset 0
		req = binary.BigEndian.AppendUint64(req, 0) // length 0: up to the end
		req = appendString(req, newHandle)
		req = binary.BigEndian.AppendUint64(req, 0) // write at offset 0
		copied = c.request(fxpExtended, req)
		chmod = c.request(fxpFsetstat, appendUint32s(appendString(nil, newHandle), attrPermissions, mode&0o7777))
	}
	if oldErr == nil {
		c.request(fxpClose, appendString(nil, oldHandle)) // its answer is not needed
	}
	if newErr == nil {
		closed = c.request(fxpClose, appendString(nil, newHandle))
	}
	if copied != nil {
		switch copyErr, chmodErr := status(copied), status(chmod); {
		case copyErr != nil:
			err = fmt.Errorf("copy-data: %w", copyErr)
		case chmodErr != nil:
			err = fmt.Errorf("set mode: %w", chmodErr)
		}
	}
	if closed != nil {
		if cerr := status(closed); err == nil && cerr != nil {
			err = fmt.Errorf("close: %w", cerr)
		}
		if err != nil {
			err = t.noSpace(newpath, err)                            // while the partial copy still fills the disk
			status(c.request(fxpRemove, appendString(nil, newpath))) // best effort; err is what matters
		}
	}
	return err
}

// copyChannel returns the SFTP channel for copy-data, opening it on first
// need (again if it ended).
func (t *Transport) copyChannel(ctx context.Context) (*sftpChannel, error) {
	t.copyMu.Lock()
	defer t.copyMu.Unlock()
	if t.copyChan != nil && !t.copyChan.failed() {
		return t.copyChan, nil
	}
	sess, err := t.newSession(ctx)
	if err != nil {
		return nil, err
	}
	c, err := openSFTPChannel(sess)
	if err == nil && c.extensions["copy-data"] != "1" {
		err = errors.New("the server does not offer it on a second channel")
	}
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("start SFTP for copy-data on %s: %w", t.name, err)
	}
	t.copyChan = c
	return c, nil
}

// copyShell copies with GNU cp on the server (remote/copy.sh).
func (t *Transport) copyShell(ctx context.Context, oldpath, newpath string) error {
	_, err := t.run(ctx, command("copy", copyScript, oldpath, newpath))
	var exit *transport.ExitError
	if errors.As(err, &exit) {
		switch exit.Status {
		case existsStatus:
			return fs.ErrExist
		case missingStatus:
			return fs.ErrNotExist
		}
	}
	return err
}

// copyThrough reads oldpath over SFTP and writes newpath with Create,
// with pkg/sftp's concurrent reads and writes.
func (t *Transport) copyThrough(ctx context.Context, oldpath, newpath string) error {
	var src *sftp.File
	var info fs.FileInfo
	err := t.do(ctx, func() (err error) {
		if src, err = t.sftp.Open(oldpath); err != nil {
			return err
		}
		info, err = src.Stat()
		return err
	})
	if src != nil {
		defer func() { go src.Close() }()
	}
	if err != nil {
		return opErr("open", oldpath, err)
	}
	if !info.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	dst, err := t.Create(ctx, newpath, info.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.sftp.Remove(newpath) // best effort; err is what matters
		return err
	}
	return nil
}
