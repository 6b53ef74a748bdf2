package words_test

import (
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/words"
)

func TestCount(t *testing.T) {
	tests := []struct {
		n          int64
		noun, want string
	}{
		{0, "file", "0 files"}, {1, "file", "1 file"}, {2, "file", "2 files"}, {12345, "file", "12,345 files"},
		{1, "directory", "1 directory"}, {3, "directory", "3 directories"}, {1, "host", "1 host"}, {2, "release", "2 releases"},
	}
	for _, tt := range tests {
		if got := words.Count(tt.n, tt.noun); got != tt.want {
			t.Errorf("Count(%d, %q) = %q, want %q", tt.n, tt.noun, got, tt.want)
		}
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{-1: "0 B", 512: "512 B", 2048: "2.0 KiB", 83 << 20: "83 MiB"} {
		if got := words.Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
