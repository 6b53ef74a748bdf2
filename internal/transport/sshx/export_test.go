package sshx

import (
	"context"
	"sort"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// ScanSFTP runs the SFTP walk even when the server has a shell, so tests
// can compare it with the find-based Scan.
func ScanSFTP(t *Transport, ctx context.Context, root string) ([]transport.Stat, error) {
	stats, err := t.scanSFTP(ctx, root)
	sort.Slice(stats, func(i, j int) bool { return stats[i].Path < stats[j].Path })
	return stats, err
}

// RemoveAllSFTP runs the SFTP fallback of RemoveAll.
func RemoveAllSFTP(t *Transport, ctx context.Context, p string) error {
	return t.removeAllSFTP(ctx, p)
}

// DisableExtensions makes Rename, Link and Copy do without the SFTP
// extensions, as on a server that does not offer them.
func DisableExtensions(t *Transport) {
	<-t.ready
	t.posixRename, t.hardLink, t.copyData = false, false, false
}

// SetKeepalive shortens the keepalive for transports dialled until restore.
func SetKeepalive(interval, timeout time.Duration) (restore func()) {
	oldInterval, oldTimeout := keepaliveInterval, keepaliveTimeout
	keepaliveInterval, keepaliveTimeout = interval, timeout
	return func() { keepaliveInterval, keepaliveTimeout = oldInterval, oldTimeout }
}

// SetRetryWait makes every wait between connection attempts d until restore.
func SetRetryWait(d time.Duration) (restore func()) {
	old := retryBackOff
	retryBackOff = func() backoff.BackOff { return backoff.NewConstantBackOff(d) }
	return func() { retryBackOff = old }
}

// SetWarmReadyWithin changes how long a warm session may take to say
// ready, until restore.
func SetWarmReadyWithin(d time.Duration) (restore func()) {
	old := warmReadyWithin
	warmReadyWithin = d
	return func() { warmReadyWithin = old }
}

// SpareScript is remote/spare.sh, the warm session's shell.
var SpareScript = spareScript
