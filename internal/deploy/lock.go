package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// hostLock is the deploy lock on one host, of one of two kinds: flock(2)
// held by a process of the deploy's own SSH session where the server has
// a shell (sessionLock), or a lease renewed over SFTP where it has none
// (leaseLock). A deploy holds it from Open to Finish or Close.
type hostLock interface {
	// Held returns an error if the lock was lost; checked before the switch.
	Held(ctx context.Context) error
	// lost is the loss already known here, without asking the server:
	// enough right before a switch that Held was asked for moments ago.
	lost() error
	// finish lets go after appending records to the releases log (log is
	// the log as Open read it, for a lock that rewrites it) and deleting
	// the releases in prune; it returns what went wrong, as warnings: the
	// new release is live by then.
	finish(ctx context.Context, log *releaseLog, records []Record, prune []string) (warnings []string)
	// release lets go without writing anything: cleanup after a failure.
	release(ctx context.Context) error
	// guard is what a command on the server checks before it switches on
	// the lock's behalf (upload.sh): the holder's pid, our token and the
	// file that holds it; ok is false where no command can check the lock.
	guard() (pid, token, file string, ok bool)
}

// Owner identifies a lock holder to whoever finds the lock taken.
type Owner struct {
	Token     string    `json:"token"`
	Actor     string    `json:"actor,omitempty"`
	RunURL    string    `json:"run_url,omitempty"`
	Host      string    `json:"runner,omitempty"`
	StartedAt time.Time `json:"started_at"`
	TTL       Duration  `json:"ttl"`
}

func (o Owner) String() string {
	s := fmt.Sprintf("started %s", o.StartedAt.UTC().Format(time.RFC3339))
	if o.Actor != "" {
		s = "by " + o.Actor + ", " + s
	}
	if o.RunURL != "" {
		s += ", " + o.RunURL
	}
	return s
}

// Duration marshals as a Go duration string.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// LockedError says who holds the lock.
type LockedError struct {
	Path  string
	Owner Owner
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("deploy root is locked by another deploy (%s); it is released when that deploy ends or its lease expires, or remove it with mode: unlock", e.Owner)
}

// LockOptions tunes the lease.
type LockOptions struct {
	TTL  time.Duration // a lease not renewed for this long is stale
	Wait time.Duration // how long to wait for a held lock
}

// DefaultLockOptions keep a crashed deploy from blocking the next one for
// more than a minute, while renewing often enough that a slow link or a
// paused runner does not lose a live lease.
var DefaultLockOptions = LockOptions{TTL: 60 * time.Second, Wait: 3 * time.Minute}

func randomToken() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
