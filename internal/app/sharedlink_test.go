package app_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
)

// TestReleaseLinkOutOfSharedDirRefused: public/s -> ../storage/.. stays in
// the source tree, but on the server storage is a link to <path>/shared/storage,
// so it would serve <path>/shared (the production .env) from public/. The
// deploy refuses it before anything is touched, naming the link.
func TestReleaseLinkOutOfSharedDirRefused(t *testing.T) {
	source := t.TempDir()
	os.MkdirAll(filepath.Join(source, "public"), 0o755)
	os.MkdirAll(filepath.Join(source, "storage/logs"), 0o755)
	os.WriteFile(filepath.Join(source, "public/index.html"), []byte("hi\n"), 0o644)
	os.Symlink("../storage/..", filepath.Join(source, "public/s"))
	root := deploytest.LocalRoot(t, "site")
	os.MkdirAll(filepath.Join(root, "shared"), 0o755)
	os.WriteFile(filepath.Join(root, "shared/.env"), []byte("APP_KEY=production-secret\n"), 0o600)

	r := runAction(t, actionEnv(t, map[string]string{"path": root, "source": source, "shared-dirs": "storage", "shared-files": ".env"}))
	if r.code != 1 || !strings.Contains(r.stdout, "::error title=Release not prepared::source public/s is a symlink to ../storage/..") ||
		!strings.Contains(r.stdout, "shared path storage") {
		t.Fatalf("exit %d, want 1 naming public/s\n%s", r.code, r.stdout)
	}
	if _, err := os.Stat(filepath.Join(root, "releases")); err == nil {
		t.Error("a release was started")
	}
}
