package app

import (
	"runtime/debug"
	"testing"
)

func TestMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		hosts int
		want  int64
	}{
		{0, 72 << 20}, // a deploy to a local path
		{1, 72 << 20},
		{2, 73 << 20},
		{100, 171 << 20},
	} {
		if got := memoryLimit(tc.hosts); got != tc.want {
			t.Errorf("memoryLimit(%d) = %d MiB, want %d MiB", tc.hosts, got>>20, tc.want>>20)
		}
	}
}

func TestLimitMemoryLeavesGOMEMLIMIT(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })

	debug.SetMemoryLimit(1 << 40)
	LimitMemory("1TiB", 50)
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Errorf("with GOMEMLIMIT set the limit became %d MiB", got>>20)
	}
	LimitMemory("", 50)
	if got := debug.SetMemoryLimit(-1); got != memoryLimit(50) {
		t.Errorf("the limit for 50 hosts is %d MiB, want %d MiB", got>>20, memoryLimit(50)>>20)
	}
}
