package webtest

import (
	"os"
	"path/filepath"
	"testing"
)

// php-fpm is named after its PHP version, which differs between the
// distributions the tests run on (Debian 12: 8.2, Ubuntu 24.04: 8.3).
func TestFindPHPFPM(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		want  string
	}{
		{"none", nil, "php-fpm"},
		{"Debian 12", []string{"php-fpm8.2"}, "php-fpm8.2"},
		{"Ubuntu 24.04", []string{"php-fpm8.3"}, "php-fpm8.3"},
		{"newest of several, by number", []string{"php-fpm8.10", "php-fpm8.2", "php-fpm8.9"}, "php-fpm8.10"},
		{"not a version", []string{"php-fpm8.2", "php-fpm8.x"}, "php-fpm8.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, f), nil, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if got := findPHPFPM(dir); got != filepath.Join(dir, tt.want) {
				t.Errorf("findPHPFPM = %q, want %q", got, filepath.Join(dir, tt.want))
			}
		})
	}
}
