package app_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/app"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
)

func runCLI(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := app.Main(context.Background(), args, env, app.IO{Stdout: &out, Stderr: &out})
	return code, out.String()
}

func TestConfigFileSharesSettings(t *testing.T) {
	ws := t.TempDir()
	t.Chdir(ws)
	os.MkdirAll(filepath.Join(ws, "build/storage"), 0o755)
	os.WriteFile(filepath.Join(ws, "build/index.html"), []byte("hi"), 0o644)
	root := deploytest.LocalRoot(t, "site")
	os.WriteFile(filepath.Join(ws, "atomic-deploy.yml"), []byte("path: "+root+"\nsource: build\nshared-dirs: [storage]\nkeep-releases: 2\n"), 0o644)

	// The CLI reads atomic-deploy.yml from the working directory.
	if code, out := runCLI(t, nil, "deploy"); code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if link, err := os.Readlink(filepath.Join(root, "current", "storage")); err != nil || !strings.Contains(link, "shared/storage") {
		t.Errorf("shared-dirs from the file not applied: %q %v", link, err)
	}
	// A flag wins over the file.
	other := filepath.Join(t.TempDir(), "other")
	if code, out := runCLI(t, nil, "deploy", "--path", other); code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if _, err := os.Lstat(filepath.Join(other, "current")); err != nil {
		t.Errorf("--path did not override the file: %v", err)
	}
	// In Actions, config-file names the file; inputs at their defaults yield to it.
	env := []string{"GITHUB_ACTIONS=true", "INPUT_CONFIG-FILE=atomic-deploy.yml", "INPUT_SOURCE=.", "INPUT_KEEP-RELEASES=5", "INPUT_MODE=deploy",
		"GITHUB_OUTPUT=" + filepath.Join(t.TempDir(), "out"), "GITHUB_STEP_SUMMARY=" + filepath.Join(t.TempDir(), "sum")}
	if code, out := runCLI(t, env); code != 0 {
		t.Fatalf("action exit %d\n%s", code, out)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "releases"))
	if len(entries) != 2 {
		t.Errorf("%d releases in the file's path, want 2 (keep-releases: 2 from the file)", len(entries))
	}
}

func TestConfigFileRefusals(t *testing.T) {
	tests := []struct{ file, want string }{
		{"private-key: abc\n", "is a secret"},
		{"pathh: /x\n", "unknown key pathh; did you mean path?"},
		{"keep-release: 3\n", "unknown key keep-release; did you mean keep-releases?"},
		{"exclude-paths: [a]\n", "unknown key exclude-paths (the keys are the options of atomic-deploy --help)"},
		{"path: [\n", "config file"},
		{"shared-dirs: {a: b}\n", "shared-dirs"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			ws := t.TempDir()
			t.Chdir(ws)
			os.WriteFile(filepath.Join(ws, "atomic-deploy.yml"), []byte(tt.file), 0o644)
			code, out := runCLI(t, nil, "deploy", "--path", filepath.Join(ws, "site"))
			if code != 2 || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d, output:\n%s", code, out)
			}
			if strings.Contains(out, "abc") {
				t.Errorf("secret value printed")
			}
		})
	}
}

func TestSecretsFromEnvironmentAndFiles(t *testing.T) {
	ws := t.TempDir()
	keyFile := filepath.Join(ws, "key")
	os.WriteFile(keyFile, []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nnot really\n-----END OPENSSH PRIVATE KEY-----\n"), 0o600)
	code, out := runCLI(t, []string{"ATOMIC_DEPLOY_KNOWN_HOSTS=[127.0.0.1]:2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"},
		"deploy", "--host", "u@127.0.0.1:2", "--path", "/srv/x", "--source", ws, "--private-key-file", keyFile)
	// The key is read (and refused for its content), so no "required" error.
	if code == 0 || strings.Contains(out, "is required") || !strings.Contains(strings.ToLower(out), "key") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

func TestReleasesAndPlanCommands(t *testing.T) {
	ws := t.TempDir()
	os.WriteFile(filepath.Join(ws, "a.txt"), []byte("1"), 0o644)
	root := deploytest.LocalRoot(t, "site")
	if code, out := runCLI(t, nil, "plan", "--source", ws, "--path", root); code != 0 || !strings.Contains(out, "upload 2 files") {
		t.Fatalf("plan before any deploy: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(root); err == nil {
		t.Fatalf("plan created the deploy root")
	}
	if code, out := runCLI(t, nil, "deploy", "--source", ws, "--path", root); code != 0 {
		t.Fatalf("deploy: exit %d\n%s", code, out)
	}
	os.WriteFile(filepath.Join(ws, "b.txt"), []byte("2"), 0o644)
	code, out := runCLI(t, nil, "plan", "--source", ws, "--path", root)
	if code != 0 || !strings.Contains(out, "upload 1 file (") || !strings.Contains(out, "reuse 2 files") || !strings.Contains(out, `+ "b.txt"`) {
		t.Fatalf("plan: exit %d\n%s", code, out)
	}
	code, out = runCLI(t, nil, "releases", "--path", root)
	if code != 0 || !regexp.MustCompile(`\*\s+\d{14}\s+success`).MatchString(out) {
		t.Fatalf("releases: exit %d\n%s", code, out)
	}
}

// TestReleasesShowsServerTextEscaped: the releases log comes from the
// server; what it says cannot move the terminal's cursor or retitle it.
func TestReleasesShowsServerTextEscaped(t *testing.T) {
	ws := t.TempDir()
	os.WriteFile(filepath.Join(ws, "a.txt"), []byte("1"), 0o644)
	root := deploytest.LocalRoot(t, "site")
	if code, out := runCLI(t, nil, "deploy", "--source", ws, "--path", root); code != 0 {
		t.Fatalf("deploy: exit %d\n%s", code, out)
	}
	ids, _ := os.ReadDir(filepath.Join(root, "releases"))
	log := filepath.Join(root, ".atomic-deploy", "releases.log")
	f, err := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"id":"` + ids[0].Name() + `","status":"success\r\u001b[2K","revision":"abc\u001b]0;owned\u0007\r::error::x"}` + "\n")
	f.Close()
	code, out := runCLI(t, nil, "releases", "--path", root)
	if code != 0 || !strings.Contains(out, `success\x0d\x1b[2K`) || !strings.Contains(out, `abc\x1b]0;owned\x07\x0d::error::x`) {
		t.Fatalf("releases: exit %d\n%q", code, out)
	}
	for _, raw := range []string{"\r", "\x1b", "\x07"} {
		if strings.Contains(out, raw) {
			t.Errorf("releases printed %q:\n%q", raw, out)
		}
	}
}
