package deploy

import (
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// timedWriter measures, over the probe bytes written after the fill
// bytes, the share of the time its writes spent waiting (on a pipe to the
// SSH session, waiting for the link) and the bytes a second. restart
// measures again from there. The compressor writes from its own
// goroutine, hence the lock.
type timedWriter struct {
	w           io.Writer
	fill, probe int64
	// meter reads the link's busy time (nil: nothing does), from busyFrom
	// to busyTo bytes written after a large head (from, as for the fill),
	// while source counts the stream's bytes and made what the compressor
	// made of them.
	meter            transport.LinkMeter
	source, made     *atomic.Int64
	busyFrom, busyTo int64

	mu      sync.Mutex
	written int64         // in all
	from    int64         // written when the measure started
	start   time.Time     // when written passed from + fill
	startAt int64         // written then
	blocked time.Duration // time in writes since start
	share   float64       // blocked / elapsed once the probe is done
	rate    float64       // bytes a second over the probe
	done    bool

	busySince        time.Time     // when written passed busyFrom
	busyAt           time.Duration // the link's busy time then
	sourceAt, madeAt int64         // source and made then
	// Over the window, once known: the link's busy time / elapsed (-1
	// until then), source / made, and source a second.
	busyShare, busyRatio, busyRate float64
}

func (t *timedWriter) Write(p []byte) (int, error) {
	begin := time.Now()
	n, err := t.w.Write(p)
	end := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.written += int64(n)
	t.meterBusy(end)
	switch {
	case t.done:
	case t.start.IsZero():
		if t.written-t.from >= t.fill {
			t.start, t.startAt = end, t.written
		}
	default:
		t.blocked += end.Sub(begin)
		if t.written-t.from >= t.fill+t.probe {
			elapsed := max(end.Sub(t.start), time.Nanosecond)
			t.share = float64(t.blocked) / float64(elapsed)
			t.rate = float64(t.written-t.startAt) / elapsed.Seconds()
			t.done = true
		}
	}
	return n, err
}

// meterBusy reads the meter as written passes busyFrom and busyTo.
func (t *timedWriter) meterBusy(now time.Time) {
	if t.meter == nil || t.busyFrom == 0 {
		return
	}
	switch {
	case t.busySince.IsZero():
		if t.written-t.from < t.busyFrom {
			return
		}
		busy, ok := t.meter.LinkBusy()
		if !ok {
			t.busyFrom = 0 // never known
			return
		}
		t.busySince, t.busyAt, t.sourceAt, t.madeAt = now, busy, t.source.Load(), t.made.Load()
	case t.written-t.from >= t.busyTo:
		// No busy time at all after megabytes is a kernel that does not
		// count it (before 4.10), not an idle link.
		if busy, ok := t.meter.LinkBusy(); ok && busy > 0 {
			t.busyShare = float64(busy-t.busyAt) / float64(max(now.Sub(t.busySince), time.Nanosecond))
			// Over the window, not from the start: the compressor holds
			// megabytes it has been given and not yet made anything of,
			// about as many at both ends.
			t.busyRatio = float64(t.source.Load()-t.sourceAt) / float64(max(1, t.made.Load()-t.madeAt))
			t.busyRate = float64(t.source.Load()-t.sourceAt) / max(now.Sub(t.busySince), time.Nanosecond).Seconds()
		}
		t.busyFrom = 0 // measured
	}
}

// busy is the share of the time the link was busy over its window, the
// compression ratio over the same bytes and the stream's bytes a second,
// once known; a share of -1 before.
func (t *timedWriter) busy() (share, ratio, rate float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.busyShare, t.busyRatio, t.busyRate
}

// after measures from n bytes after what is written so far.
func (t *timedWriter) after(n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.from = t.written + n
}

// restart measures again, fill then probe bytes from here.
func (t *timedWriter) restart(fill, probe int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fill, t.probe, t.from = fill, probe, t.written
	t.start, t.blocked, t.done = time.Time{}, 0, false
}

// measured is the share of the probe's time spent waiting for the link
// and its bytes a second, once the probe is done.
func (t *timedWriter) measured() (share, rate float64, done bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.share, t.rate, t.done
}

// total is what was written in all.
func (t *timedWriter) total() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.written
}
