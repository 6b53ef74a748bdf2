package deploy

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestMemo(t *testing.T) {
	var m memo[int, string]
	var calls atomic.Int32
	slow := func() (string, error) {
		calls.Add(1)
		time.Sleep(20 * time.Millisecond)
		return "v", nil
	}
	// Hosts asking at once wait for one computation.
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if v, err := m.get(1, slow); v != "v" || err != nil {
				t.Errorf("get: %q, %v", v, err)
			}
		})
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("computed %d times, want once", n)
	}
	// An error is a result too: the same input fails the same way.
	boom := errors.New("boom")
	if _, err := m.get(2, func() (string, error) { return "", boom }); err != boom {
		t.Errorf("err %v", err)
	}
	if _, err := m.get(2, slow); err != boom {
		t.Errorf("second get: %v, want the first one's error", err)
	}
	// Only the last memoSize keys are kept.
	for k := 3; k < 3+memoSize; k++ {
		m.get(k, slow)
	}
	before := calls.Load()
	m.get(1, slow)
	if calls.Load() != before+1 {
		t.Error("the oldest key was not forgotten")
	}
}
