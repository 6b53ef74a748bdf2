package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"sort"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// Release statuses in the log.
const (
	StatusStarted    = "started"     // being prepared, or left behind by a crash
	StatusSuccess    = "success"     // went live and passed its checks
	StatusFailed     = "failed"      // never live, or rolled back automatically
	StatusRolledBack = "rolled-back" // replaced by a manual rollback
	StatusUnknown    = "unknown"     // a directory with no record, newer than the log's first: maybe half-written
	StatusPrepared   = "prepared"    // complete and finished by mode: prepare, waiting for mode: activate
)

// Record is one line of the releases log. The newest line for an id wins.
type Record struct {
	ID         string    `json:"id"`
	Status     string    `json:"status"`
	Revision   string    `json:"revision,omitempty"`
	Actor      string    `json:"actor,omitempty"`
	RunURL     string    `json:"run_url,omitempty"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	KeepUntil  time.Time `json:"keep_until,omitzero"` // a prepared release is not pruned before
	Message    string    `json:"message,omitempty"`
}

// releaseLog is the JSON-lines history in .atomic-deploy/releases.log.
type releaseLog struct {
	records []Record
}

func readReleaseLog(ctx context.Context, t transport.Transport, l Layout) (*releaseLog, error) {
	data, err := t.ReadFile(ctx, l.Log())
	if errors.Is(err, fs.ErrNotExist) {
		return &releaseLog{}, nil
	}
	if err != nil {
		return nil, err
	}
	return parseReleaseLog(data), nil
}

// parseReleaseLog reads the log's JSON lines; lines it cannot read (a
// record from a newer version, a torn write) are skipped.
func parseReleaseLog(data []byte) *releaseLog {
	rl := &releaseLog{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		var r Record
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.ID != "" {
			rl.records = append(rl.records, r)
		}
	}
	return rl
}

// latest returns the newest record for every id.
func (rl *releaseLog) latest() map[string]Record {
	m := map[string]Record{}
	for _, r := range rl.records {
		prev, ok := m[r.ID]
		if ok {
			// Keep fields set by earlier lines (revision, start) unless overwritten.
			if r.Revision == "" {
				r.Revision = prev.Revision
			}
			if r.Actor == "" {
				r.Actor = prev.Actor
			}
			if r.RunURL == "" {
				r.RunURL = prev.RunURL
			}
			if r.StartedAt.IsZero() {
				r.StartedAt = prev.StartedAt
			}
			if r.KeepUntil.IsZero() {
				r.KeepUntil = prev.KeepUntil
			}
		}
		m[r.ID] = r
	}
	return m
}

// status of id.
func (rl *releaseLog) status(id string) string {
	if r, ok := rl.latest()[id]; ok {
		return r.Status
	}
	return rl.unrecorded(id).Status
}

// unrecorded is the record of a release directory the log does not name.
// One older than every record was there before this log (deployed by hand
// or by another tool) and is adopted as successful. One newer than the
// log's first record appeared while this tool kept the log: a deploy of
// another tool may have crashed half-way through writing it, so it is
// unknown: never a rollback target by default, never a kept release.
func (rl *releaseLog) unrecorded(id string) Record {
	if len(rl.records) > 0 && id > rl.first() {
		return Record{ID: id, Status: StatusUnknown, Message: "no record in the releases log (left by a crashed deploy or another tool?)"}
	}
	return Record{ID: id, Status: StatusSuccess}
}

// first is the oldest release id the log names.
func (rl *releaseLog) first() string {
	first := rl.records[0].ID
	for _, r := range rl.records[1:] {
		first = min(first, r.ID)
	}
	return first
}

// maxLogRecords keeps the log from growing without end: a rewrite keeps the
// newest this many, and so does the lock holder after it appends.
const maxLogRecords = 1000

// append adds records and writes the log back atomically (temp file +
// rename). Callers hold the deploy lock.
func (rl *releaseLog) append(ctx context.Context, t transport.Transport, l Layout, records ...Record) error {
	if len(records) == 0 {
		return nil
	}
	rl.records = append(rl.records, records...)
	if len(rl.records) > maxLogRecords {
		rl.records = rl.records[len(rl.records)-maxLogRecords:]
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for i := range rl.records {
		if err := enc.Encode(&rl.records[i]); err != nil {
			return err
		}
	}
	return t.WriteFile(ctx, l.Log(), b.Bytes(), 0o644)
}

// ReleaseInfo describes a release directory for listings and decisions.
type ReleaseInfo struct {
	Record
	Current bool
}

// listReleases joins the release directories with their log records, oldest first.
func listReleases(ctx context.Context, t transport.Transport, l Layout, rl *releaseLog, currentID string) ([]ReleaseInfo, error) {
	entries, err := t.ReadDir(ctx, l.Releases())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return releasesFromNames(names, rl, currentID), nil
}

// releasesFromNames joins release ids with their log records, oldest first
// (ids with no record: unrecorded).
func releasesFromNames(names []string, rl *releaseLog, currentID string) []ReleaseInfo {
	latest := rl.latest()
	out := make([]ReleaseInfo, 0, len(names))
	for _, id := range names {
		r, ok := latest[id]
		if !ok {
			r = rl.unrecorded(id)
		}
		out = append(out, ReleaseInfo{Record: r, Current: id == currentID})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
