package deploy

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// recordState stores the manifest of the finished release with each file's
// server mtime (the next deploy reuses a file only if it is unchanged
// since). When the upload could not report mtimes (SFTP), one scan provides
// them and also checks that every file arrived whole.
func (h *Host) recordState(ctx context.Context, manifestStored bool) error {
	if manifestStored {
		return nil // the tar stream stored it already
	}
	dir := h.L.Release(h.ReleaseID)
	scan, err := h.T.Scan(ctx, dir)
	if err != nil {
		return fmt.Errorf("verify %s: %w", dir, err)
	}
	byPath := make(map[string]transport.Stat, len(scan))
	for _, s := range scan {
		byPath[s.Path] = s
	}
	if err := waitPastMTimes(ctx, h.T, scan); err != nil {
		return err
	}
	for i := range h.manifest.Entries {
		e := &h.manifest.Entries[i]
		if under(e.Path, h.S.SharedDirs) || under(e.Path, h.S.SharedFiles) {
			continue
		}
		s, ok := byPath[e.Path]
		switch e.Type {
		case release.TypeFile:
			if !ok || !s.Mode.IsRegular() || s.Size != e.Size {
				return fmt.Errorf("verify %s: %s is missing or incomplete on the server (disk full?)", dir, e.Path)
			}
		case release.TypeDir:
			if !ok || !s.Mode.IsDir() {
				return fmt.Errorf("verify %s: directory %s is missing", dir, e.Path)
			}
		case release.TypeSymlink:
			if !ok || s.Mode&fs.ModeSymlink == 0 {
				return fmt.Errorf("verify %s: symlink %s is missing", dir, e.Path)
			}
		}
	}
	data, err := h.encodeManifest(func(e *release.Entry) int64 { return byPath[e.Path].ModTime.UnixNano() })
	if err != nil {
		return err
	}
	if err := h.T.WriteFile(ctx, h.L.Manifest(h.ReleaseID), data, 0o644); err != nil {
		return fmt.Errorf("store manifest: %w", err)
	}
	return nil
}

// encodeManifest encodes this host's manifest with each file's server
// mtime from mtime. The manifest may be shared with other hosts, so the
// mtimes are kept beside it, never written into it. Paths moved into
// shared/ get none: they are never reused from a release.
func (h *Host) encodeManifest(mtime func(e *release.Entry) int64) ([]byte, error) {
	var buf bytes.Buffer
	err := h.manifest.EncodeMTimes(&buf, h.recordedMTimes(mtime))
	return buf.Bytes(), err
}

// streamedMTimes are the mtimes a release uploaded by the tar stream
// records, entry by entry (now for what it uploads, the source's for what
// it reuses), and their digest. Made once for the hosts that share plan.
func (h *Host) streamedMTimes(plan *Plan, now time.Time) recordedMTimes {
	key := recordedKey{manifest: h.manifest, now: now.UnixNano(), shared: strings.Join(h.S.SharedDirs, "\x00") + "\x00\x00" + strings.Join(h.S.SharedFiles, "\x00")}
	r, _ := plan.recorded.get(key, func() (recordedMTimes, error) {
		byEntry := make(map[*release.Entry]int64, len(plan.Upload)+len(plan.Reuse))
		for _, e := range plan.Upload {
			byEntry[e] = now.UnixNano()
		}
		for _, r := range plan.Reuse {
			byEntry[r.Entry] = r.FromMTime
		}
		mtimes := h.recordedMTimes(func(e *release.Entry) int64 { return byEntry[e] })
		return recordedMTimes{mtimes: mtimes, digest: mtimesDigest(mtimes)}, nil
	})
	return r
}

// recordedMTimes are the mtimes encodeManifest records, entry by entry.
func (h *Host) recordedMTimes(mtime func(e *release.Entry) int64) []int64 {
	recorded := make([]int64, len(h.manifest.Entries))
	for i := range h.manifest.Entries {
		e := &h.manifest.Entries[i]
		if e.Type == release.TypeFile && !under(e.Path, h.S.SharedDirs) && !under(e.Path, h.S.SharedFiles) {
			recorded[i] = mtime(e)
		}
	}
	return recorded
}

// waitPastMTimes handles servers that report mtimes in whole seconds (SFTP
// v3): an edit in the same second as our write would keep size and mtime,
// so the deploy does not finish until the server's clock has left the
// second of the newest file. Any later edit then shows as a changed mtime.
func waitPastMTimes(ctx context.Context, t transport.Transport, scan []transport.Stat) error {
	var newest int64
	for _, s := range scan {
		if !s.Precise && s.Mode.IsRegular() {
			newest = max(newest, s.ModTime.Unix())
		}
	}
	if newest == 0 {
		return nil
	}
	for {
		now, err := t.Now(ctx)
		if err != nil {
			return fmt.Errorf("read the server clock: %w", err)
		}
		if now.Unix() > newest {
			return nil
		}
		wait := time.Until(time.Now().Truncate(time.Second).Add(time.Second)) + 20*time.Millisecond
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}
