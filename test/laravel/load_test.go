package laravel_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// sample is one request made by the load generator. Times are offsets
// from the start of the run on the monotonic clock.
type sample struct {
	Start, End time.Duration
	Status     int    // 0: connection error
	Err        string // transport error, if any
	Release    string
	Build      int
	BadBody    bool
}

// load keeps `conns` keep-alive connections busy with GET url until stop.
type load struct {
	url   string
	conns int
	t0    time.Time

	mu      sync.Mutex
	samples []sample
}

func newLoad(url string, conns int, t0 time.Time) *load {
	return &load{url: url, conns: conns, t0: t0}
}

// run blocks until ctx ends.
func (l *load) run(ctx context.Context) {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        l.conns,
		MaxIdleConnsPerHost: l.conns,
		MaxConnsPerHost:     l.conns,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for range l.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]sample, 0, 4096)
			for ctx.Err() == nil {
				local = append(local, l.one(client))
			}
			l.mu.Lock()
			l.samples = append(l.samples, local...)
			l.mu.Unlock()
		}()
	}
	wg.Wait()
}

func (l *load) one(client *http.Client) sample {
	s := sample{Start: time.Since(l.t0)}
	// Not tied to ctx: a request in flight when the run ends completes, so
	// the end of the run never shows up as an error.
	resp, err := client.Get(l.url)
	if err != nil {
		s.End, s.Err = time.Since(l.t0), err.Error()
		return s
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	s.End, s.Status = time.Since(l.t0), resp.StatusCode
	if err != nil {
		s.Err = err.Error()
		return s
	}
	var st status
	if json.Unmarshal(body, &st) != nil || !releaseIDRE.MatchString(st.Release) {
		s.BadBody = true
		return s
	}
	s.Release, s.Build = st.Release, st.Build
	return s
}

func (l *load) results() []sample {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]sample(nil), l.samples...)
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out
}

// segment is a stretch of time in which every read of `current` named ID.
// The switch into ID happened after the previous segment's Last read and
// no later than First; the switch out of it after Last.
type segment struct {
	ID          string
	First, Last time.Duration
}

// watcher reads the `current` symlink in a tight loop and records when it
// changes: the server-side truth the responses are checked against.
type watcher struct {
	link string
	t0   time.Time

	mu   sync.Mutex
	segs []segment
}

func newWatcher(root string, t0 time.Time) *watcher {
	return &watcher{link: filepath.Join(root, "current"), t0: t0}
}

func (w *watcher) run(ctx context.Context) {
	for ctx.Err() == nil {
		before := time.Since(w.t0)
		target, err := os.Readlink(w.link)
		after := time.Since(w.t0)
		if err == nil {
			id := filepath.Base(target)
			w.mu.Lock()
			if n := len(w.segs); n > 0 && w.segs[n-1].ID == id {
				w.segs[n-1].Last = before
			} else {
				w.segs = append(w.segs, segment{ID: id, First: after, Last: before})
			}
			w.mu.Unlock()
		}
		time.Sleep(500 * time.Microsecond)
	}
}

func (w *watcher) segments() []segment {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]segment(nil), w.segs...)
}

// liveWindow is the widest interval in which id may have been live during
// segment k: from the last read of the previous release to the first read
// of the next one.
func liveWindow(segs []segment, k int) (from, to time.Duration) {
	from, to = -1<<62, 1<<62
	if k > 0 {
		from = segs[k-1].Last
	}
	if k+1 < len(segs) {
		to = segs[k+1].First
	}
	return from, to
}

// checkLive reports a sample whose release was not live at any moment
// between sending the request and receiving the answer. No grace is needed
// for requests in flight during a switch: nginx resolves $realpath_root
// after the request was sent, so an answer from the old release still had
// to start before the switch.
func checkLive(segs []segment, s sample) error {
	for k, seg := range segs {
		if seg.ID != s.Release {
			continue
		}
		from, to := liveWindow(segs, k)
		if s.End >= from && s.Start <= to {
			return nil
		}
	}
	var around []string
	for _, seg := range segs {
		if seg.Last >= s.Start-time.Second && seg.First <= s.End+time.Second {
			around = append(around, fmt.Sprintf("%s@[%s..%s]", seg.ID, seg.First, seg.Last))
		}
	}
	return fmt.Errorf("request [%s..%s] was answered by release %s, which was not live then (current: %v)", s.Start, s.End, s.Release, around)
}

// percentile returns the p-th percentile (0..100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}
