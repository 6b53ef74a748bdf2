package release_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"unicode/utf8"
	"unsafe"

	kgzip "github.com/klauspost/compress/gzip"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
)

// node is one path of a test tree.
type node struct {
	content string      // file content (ignored for dirs and links)
	dir     bool        // a directory
	link    string      // a symlink to this target
	mode    fs.FileMode // permissions; 0 means 0644 / 0755
	fifo    bool
}

// tree writes nodes under a new temp dir (parents first) and returns it.
func tree(t *testing.T, nodes map[string]node) string {
	t.Helper()
	root := t.TempDir()
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range nodes {
			if !yield(k) {
				return
			}
		}
	})
	for _, name := range names {
		n := nodes[name]
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case n.dir:
			err = os.MkdirAll(p, 0o755)
			if err == nil && n.mode != 0 {
				err = os.Chmod(p, n.mode)
			}
		case n.link != "":
			err = os.Symlink(n.link, p)
		case n.fifo:
			err = syscall.Mkfifo(p, 0o644)
		default:
			err = os.WriteFile(p, []byte(n.content), 0o644)
			if err == nil && n.mode != 0 {
				err = os.Chmod(p, n.mode)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func paths(m *release.Manifest) []string {
	var out []string
	for _, e := range m.Entries {
		out = append(out, e.Path)
	}
	slices.Sort(out)
	return out
}

func entry(t *testing.T, m *release.Manifest, p string) *release.Entry {
	t.Helper()
	e := m.Entry(p)
	if e != m.Index()[p] {
		t.Fatalf("Entry(%q) and Index disagree", p)
	}
	if e == nil {
		t.Fatalf("no entry %q in %q", p, paths(m))
	}
	return e
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// exported drops the unexported fields so entries compare after a round trip.
func exported(es []release.Entry) []release.Entry {
	out := make([]release.Entry, len(es))
	for i, e := range es {
		out[i] = release.Entry{Path: e.Path, Type: e.Type, Mode: e.Mode, Size: e.Size, Hash: e.Hash, Target: e.Target, MTime: e.MTime}
	}
	return out
}

// TestExcludes pins the .gitignore semantics of exclude patterns. .git is
// excluded before any pattern, so every case also shows it stays out.
func TestExcludes(t *testing.T) {
	const dir, file = true, false
	tests := []struct {
		patterns []string
		rel      string
		isDir    bool
		want     bool
	}{
		// .git always, at any depth, as a directory or a file (a worktree's
		// or a submodule's "gitdir:" file); only "!.git" ships it.
		{nil, ".git", dir, true},
		{nil, ".git", file, true},
		{nil, "vendor/pkg/.git", dir, true},
		{nil, ".gitignore", file, false},
		{nil, ".github", dir, false},
		{[]string{"tests"}, ".git", dir, true},
		{[]string{"!.git"}, ".git", dir, false},
		{[]string{"!.git"}, "vendor/pkg/.git", dir, false},
		{[]string{"!/.git"}, "vendor/pkg/.git", dir, true},
		// A name without a slash matches at any depth, files and directories.
		{[]string{"tests"}, "tests", dir, true},
		{[]string{"tests"}, "src/tests", dir, true},
		{[]string{"tests"}, "tests.php", file, false},
		{[]string{"tests"}, "app/tests", file, true},
		{[]string{"tests/"}, "app/tests", file, false},
		{[]string{"tests/"}, "app/tests", dir, true},
		{[]string{"*.log"}, "x.log", file, true},
		{[]string{"*.log"}, "deep/er/x.log", file, true},
		{[]string{"node_modules"}, "node_modules", dir, true},
		{[]string{"README.md"}, "README.md", file, true},
		// A leading or middle slash anchors at the source root.
		{[]string{"/docs"}, "docs", dir, true},
		{[]string{"/docs"}, "sub/docs", dir, false},
		{[]string{"/build"}, "build", file, true},
		{[]string{"/tests"}, "app/tests", dir, false},
		{[]string{"docs/*.md"}, "docs/a.md", file, true},
		{[]string{"docs/*.md"}, "app/docs/a.md", file, false},
		{[]string{"storage/logs/*"}, "storage/logs/a", file, true},
		{[]string{"storage/logs/*"}, "x/storage/logs/a", file, false},
		{[]string{"doc/*.txt"}, "doc/a/b.txt", file, false},
		// A trailing slash: directories only.
		{[]string{"docs/"}, "docs", dir, true},
		{[]string{"docs/"}, "a/docs", dir, true},
		{[]string{"docs/"}, "docs", file, false},
		{[]string{"cache/"}, "bootstrap/cache", file, false},
		// ** spans directories.
		{[]string{"**/*.log"}, "app.log", file, true},
		{[]string{"**/*.log"}, "storage/logs/x.log", file, true},
		{[]string{"**/*.log"}, "app.log.gz", file, false},
		{[]string{"a/**/b"}, "a/b", dir, true},
		{[]string{"a/**/b"}, "a/x/y/b", dir, true},
		{[]string{"a/**/b"}, "c/a/x/b", dir, false},
		{[]string{"logs/**"}, "logs/x", file, true},
		{[]string{"logs/**"}, "logs/a/b/c", file, true},
		{[]string{"**/cache"}, "cache", dir, true},
		{[]string{"**/cache"}, "bootstrap/cache", dir, true},
		// ! re-includes; the last matching line wins.
		{[]string{"*.log", "!keep.log"}, "a/keep.log", file, false},
		{[]string{"*.log", "!keep.log"}, "a/other.log", file, true},
		{[]string{"!keep.log", "*.log"}, "keep.log", file, true},
		{[]string{"/public/*", "!/public/index.php"}, "public/index.php", file, false},
		{[]string{"/public/*", "!/public/index.php"}, "public/app.js", file, true},
		// Escapes, comments, blank lines, character classes.
		{[]string{`\!important`}, "!important", file, true},
		{[]string{`\#hash`}, "#hash", file, true},
		{[]string{"# a comment", "", "  "}, "# a comment", file, false},
		{[]string{"*.[oa]"}, "lib.a", file, true},
		{[]string{"a?c"}, "a/c", file, false},
		{[]string{".git", "/docs", "**/*.log"}, "README.md", file, false},
	}
	for _, tt := range tests {
		x, err := release.NewExcludes(tt.patterns)
		if err != nil {
			t.Fatalf("NewExcludes(%q): %v", tt.patterns, err)
		}
		if got := x.Excluded(tt.rel, tt.isDir); got != tt.want {
			t.Errorf("patterns %q: Excluded(%q, dir=%v) = %v, want %v", tt.patterns, tt.rel, tt.isDir, got, tt.want)
		}
	}
}

func TestExcludesRefuseBadPatterns(t *testing.T) {
	for _, p := range []string{"[unclosed", "!docs/[a-", `trailing\`} {
		if _, err := release.NewExcludes([]string{p}); err == nil || !strings.Contains(err.Error(), "not a valid pattern") {
			t.Errorf("NewExcludes(%q) = %v, want an error", p, err)
		}
	}
}

func TestWalkExcludes(t *testing.T) {
	root := tree(t, map[string]node{
		".git/HEAD":                      {content: "ref"},
		".git/objects/ab/cd":             {content: "obj"},
		".gitignore":                     {content: "x"},
		"vendor/lib/.git/config":         {content: "nested repo"},
		"vendor/lib/lib.php":             {content: "<?php"},
		"docs/index.md":                  {content: "top-level docs"},
		"src/docs/keep.md":               {content: "nested docs are not anchored"},
		"app.log":                        {content: "log"},
		"storage/logs/laravel.log":       {content: "log"},
		"storage/logs/keep.txt":          {content: "k"},
		"node_modules/dep/index.js":      {content: "js"},
		"node_modules/dep/weird.fifo":    {fifo: true}, // would fail the walk if visited
		"public/index.html":              {content: "<h1>hi</h1>"},
		"public/app.log.d/not-a-log.txt": {content: "dir name ends in .log.d"},
	})
	m, err := release.Walk(context.Background(), root, []string{".git", "/docs", "**/*.log", "node_modules"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		".gitignore", "public", "public/app.log.d", "public/app.log.d/not-a-log.txt", "public/index.html",
		"src", "src/docs", "src/docs/keep.md", "storage", "storage/logs", "storage/logs/keep.txt",
		"vendor", "vendor/lib", "vendor/lib/lib.php",
	}
	if got := paths(m); !slices.Equal(got, want) {
		t.Errorf("Walk paths =\n%q\nwant\n%q", got, want)
	}
	// Directories come before what they contain.
	seen := map[string]bool{}
	for _, e := range m.Entries {
		if d := filepath.Dir(e.Path); d != "." && !seen[d] {
			t.Errorf("%s comes before its directory", e.Path)
		}
		seen[e.Path] = true
	}
}

// A checkout's .git/config holds the token actions/checkout used: no
// exclude input, however it is set, ships it; only "!.git" does.
func TestWalkNeverShipsGitUnlessAsked(t *testing.T) {
	root := tree(t, map[string]node{
		".git/config":           {content: "[http]\n\textraheader = AUTHORIZATION: basic c2VjcmV0"},
		".git/HEAD":             {content: "ref: refs/heads/main"},
		".github/workflows/a.y": {content: "on: push"},
		"tests/a_test.php":      {content: "<?php"},
		"index.php":             {content: "<?php"},
	})
	for _, tt := range []struct {
		exclude []string
		want    []string
	}{
		{nil, []string{".github", ".github/workflows", ".github/workflows/a.y", "index.php", "tests", "tests/a_test.php"}},
		{[]string{"tests"}, []string{".github", ".github/workflows", ".github/workflows/a.y", "index.php"}},
		{[]string{".github"}, []string{"index.php", "tests", "tests/a_test.php"}},
		{[]string{"!.git", ".git/HEAD"}, []string{".git", ".git/config", ".github", ".github/workflows", ".github/workflows/a.y", "index.php", "tests", "tests/a_test.php"}},
	} {
		m, err := release.Walk(context.Background(), root, tt.exclude)
		if err != nil {
			t.Fatal(err)
		}
		if got := paths(m); !slices.Equal(got, tt.want) {
			t.Errorf("exclude %q: released\n%q\nwant\n%q", tt.exclude, got, tt.want)
		}
	}
}

// .deployignore in the source root is read first; the exclude input comes
// after it and so has the last word.
func TestWalkReadsDeployignore(t *testing.T) {
	root := tree(t, map[string]node{
		".deployignore":            {content: "# kept with the code\r\n/tests/\n*.log\n!storage/logs/keep.log\n\nnode_modules/\n"},
		"tests/a_test.php":         {content: "<?php"},
		"src/tests/helper.php":     {content: "<?php"},
		"storage/logs/app.log":     {content: "log"},
		"storage/logs/keep.log":    {content: "keep"},
		"node_modules/dep/main.js": {content: "js"},
		"node_modules.txt":         {content: "a file, not the directory"},
		"index.php":                {content: "<?php"},
	})
	m, err := release.Walk(context.Background(), root, []string{"src/tests", "!app.log"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{".deployignore", "index.php", "node_modules.txt", "src", "storage", "storage/logs", "storage/logs/app.log", "storage/logs/keep.log"}
	if got := paths(m); !slices.Equal(got, want) {
		t.Errorf("released\n%q\nwant\n%q", got, want)
	}

	// Nothing inside an excluded directory comes back, as in git.
	pub := tree(t, map[string]node{"public/index.php": {content: "<?php"}, "public/app.js": {content: "js"}, "x": {content: "x"}})
	for _, tt := range []struct {
		exclude []string
		want    []string
	}{
		{[]string{"/public/*", "!/public/index.php"}, []string{"public", "public/index.php", "x"}},
		{[]string{"/public", "!/public/index.php"}, []string{"x"}},
	} {
		m, err := release.Walk(context.Background(), pub, tt.exclude)
		if err != nil {
			t.Fatal(err)
		}
		if got := paths(m); !slices.Equal(got, tt.want) {
			t.Errorf("exclude %q: released %q, want %q", tt.exclude, got, tt.want)
		}
	}

	bad := tree(t, map[string]node{".deployignore": {content: "ok\n\n[oops\n"}, "index.php": {content: "x"}})
	_, err = release.Walk(context.Background(), bad, nil)
	if err == nil || !strings.Contains(err.Error(), ".deployignore line 3") || !strings.Contains(err.Error(), `"[oops"`) {
		t.Errorf("a bad pattern in .deployignore: %v", err)
	}
}

func TestWalkRefusesSpecialFiles(t *testing.T) {
	root := tree(t, map[string]node{"a": {content: "x"}, "run/app.sock": {fifo: true}})
	_, err := release.Walk(context.Background(), root, nil)
	if err == nil || !strings.Contains(err.Error(), "run/app.sock") || !strings.Contains(err.Error(), "exclude it") {
		t.Errorf("Walk with a FIFO: %v", err)
	}
}

func TestWalkSymlinks(t *testing.T) {
	t.Run("relative links inside are kept verbatim", func(t *testing.T) {
		root := tree(t, map[string]node{
			"css/site.css":         {content: "body{}"},
			"current.css":          {link: "css/site.css"},
			"css/up.html":          {link: "../index.html"},
			"index.html":           {content: "hi"},
			"assets":               {link: "css"},
			"dangling":             {link: "storage/app/public"},
			"deep/a/b/to-root.txt": {link: "../../../index.html"},
			"self":                 {link: "."},
		})
		m, err := release.Walk(context.Background(), root, nil)
		if err != nil {
			t.Fatal(err)
		}
		for p, target := range map[string]string{"current.css": "css/site.css", "css/up.html": "../index.html", "assets": "css",
			"dangling": "storage/app/public", "deep/a/b/to-root.txt": "../../../index.html", "self": "."} {
			e := entry(t, m, p)
			if e.Type != release.TypeSymlink || e.Target != target || e.Mode != 0 || e.Size != 0 || !e.Hash.IsZero() {
				t.Errorf("%s = %+v, want a symlink to %s", p, *e, target)
			}
		}
		if entry(t, m, "assets").Type != release.TypeSymlink {
			t.Error("a link to a directory was followed")
		}
	})
	refused := []struct {
		name   string
		nodes  map[string]node
		phrase []string
	}{
		{"absolute", map[string]node{"a": {content: "x"}, "conf/env": {link: "/etc/app/.env"}},
			[]string{"conf/env", "/etc/app/.env", "absolute"}},
		{"escaping ../../x", map[string]node{"a": {content: "x"}, "sub/link": {link: "../../x"}},
			[]string{"sub/link", "../../x", "outside the release"}},
		{"escaping ..", map[string]node{"a": {content: "x"}, "parent": {link: ".."}},
			[]string{"parent", "outside the release"}},
		{"escaping deep", map[string]node{"a": {content: "x"}, "a1/a2/l": {link: "../x/../../../etc/passwd"}},
			[]string{"a1/a2/l", "outside the release"}},
		{"escaping through a link to .", map[string]node{"a": {content: "x"}, "dot": {link: "."}, "esc": {link: "dot/dot/../../x"}},
			[]string{"esc", "dot/dot/../../x", "outside the release"}},
		{"escaping through a link up to the root", map[string]node{"a/b/c": {content: "x"}, "a/b/up": {link: "../.."}, "esc": {link: "a/b/up/../x"}},
			[]string{"esc", "outside the release"}},
		{"escaping through a chain", map[string]node{"a": {content: "x"}, "l1": {link: "l2"}, "l2": {link: "."}, "esc": {link: "l1/.."}},
			[]string{"esc", "outside the release"}},
	}
	for _, tt := range refused {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			root := tree(t, tt.nodes)
			_, err := release.Walk(context.Background(), root, nil)
			if err == nil {
				t.Fatal("Walk accepted it")
			}
			for _, p := range tt.phrase {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not say %q", err, p)
				}
			}
		})
	}
	t.Run("a link loop is not an escape", func(t *testing.T) {
		root := tree(t, map[string]node{"a": {content: "x"}, "l1": {link: "l2"}, "l2": {link: "l1"}})
		if _, err := release.Walk(context.Background(), root, nil); err != nil {
			t.Errorf("Walk: %v", err)
		}
	})
	t.Run("an excluded bad link is fine", func(t *testing.T) {
		root := tree(t, map[string]node{"a": {content: "x"}, "node_modules/.bin/x": {link: "/usr/bin/env"}})
		if _, err := release.Walk(context.Background(), root, []string{"node_modules"}); err != nil {
			t.Errorf("Walk: %v", err)
		}
	})
}

// TestSymlinksThroughSharedPaths: on the server a shared path is a link to
// <path>/shared/<it>, so ".." out of it (from a link that lives in it, or
// one whose target passes through it) leads outside the release even when
// it would not in the source tree.
func TestSymlinksThroughSharedPaths(t *testing.T) {
	shared := release.Options{SharedDirs: []string{"storage", "var/cache"}, SharedFiles: []string{".env"}}
	tests := []struct {
		name   string
		nodes  map[string]node
		phrase []string // nil: accepted
	}{
		{"a link in a shared dir climbing out of it", map[string]node{"storage/sub/x": {link: "../../y"}, "y": {content: "y"}},
			[]string{"storage/sub/x", "../../y", "shared path storage"}},
		{"a link in a shared dir climbing out at once", map[string]node{"storage/x": {link: "../../etc"}},
			[]string{"storage/x", "../../etc"}},
		{"up through a shared dir", map[string]node{"storage/f": {content: "f"}, "a": {link: "storage/../x"}, "x": {content: "x"}},
			[]string{`source a `, "storage/../x", "shared path storage"}},
		{"up and out through a shared dir", map[string]node{"storage/f": {content: "f"}, "a": {link: "storage/../.."}},
			[]string{`source a `, "storage/../.."}},
		{"from a subdirectory up through a shared dir", map[string]node{"storage/f": {content: "f"}, "public/up": {link: "../storage/.."}},
			[]string{"public/up", "shared path storage"}},
		{"up through a nested shared dir", map[string]node{"var/cache/f": {content: "f"}, "a": {link: "var/cache/../x"}, "var/x": {content: "x"}},
			[]string{`source a `, "shared path var/cache"}},
		{"up through a shared file", map[string]node{".env": {content: "K=v"}, "a": {link: ".env/../x"}, "x": {content: "x"}},
			[]string{`source a `, "shared path .env"}},
		{"up through a release link to a shared dir", map[string]node{"storage/f": {content: "f"}, "s": {link: "storage"}, "a": {link: "s/../x"}, "x": {content: "x"}},
			[]string{`source a `, "s/../x", "shared path storage"}},
		{"the release's own link at a shared path is not what the server has", map[string]node{"storage": {link: "public"}, "public/f": {content: "f"},
			"a": {link: "storage/../x"}, "x": {content: "x"}}, []string{`source a `, "shared path storage"}},

		{"into a shared dir (storage:link)", map[string]node{"storage/app/public/f": {content: "f"}, "public/storage": {link: "../storage/app/public"}}, nil},
		{"within a shared dir", map[string]node{"storage/app/f": {content: "f"}, "storage/app/public/l": {link: "../f"}}, nil},
		{"to a shared dir and file", map[string]node{"storage/f": {content: "f"}, ".env": {content: "K=v"}, "s": {link: "storage"}, "e": {link: ".env"}}, nil},
		{"a name that only starts like a shared dir", map[string]node{"storage2/f": {content: "f"}, "a": {link: "storage2/../x"}, "x": {content: "x"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := shared
			o.Source, o.Revision = tree(t, tt.nodes), "r"
			_, err := release.Build(context.Background(), o)
			if tt.phrase == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, p := range tt.phrase {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not say %q", err, p)
				}
			}
			// Without shared paths the same tree stays inside the release
			// unless it climbs out of it anyway.
			o.SharedDirs, o.SharedFiles = nil, nil
			if _, err := release.Build(context.Background(), o); err != nil && strings.Contains(err.Error(), "shared path") {
				t.Errorf("without shared paths: %v", err)
			}
		})
	}
}

func TestWalkNastyNames(t *testing.T) {
	names := []string{
		"with space.txt",
		"it's.txt",
		`"double".txt`,
		"new\nline.txt",
		"tab\there",
		"ünïcødé/日本語.txt",
		"-rf",
		"--help",
		"$(id)",
		"`id`",
		"back\\slash",
		"*",
		"~",
		"dir with space/file with space",
	}
	nodes := map[string]node{}
	for i, n := range names {
		nodes[n] = node{content: strings.Repeat("x", i)}
	}
	root := tree(t, nodes)
	m, err := release.Walk(context.Background(), root, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		e := entry(t, m, n)
		if e.Type != release.TypeFile || e.Size != int64(i) || e.Hash.String() != sha(strings.Repeat("x", i)) {
			t.Errorf("%q = %+v", n, *e)
		}
		r, err := e.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(r)
		r.Close()
		if string(data) != strings.Repeat("x", i) {
			t.Errorf("Open(%q) = %q", n, data)
		}
	}
	// The names survive the stored manifest too.
	b, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	back, err := release.DecodeManifest(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(exported(back.Entries), exported(m.Entries)) {
		t.Errorf("round trip changed entries:\n%+v\n%+v", back.Entries, m.Entries)
	}
}

func TestWalkModes(t *testing.T) {
	root := tree(t, map[string]node{
		"bin":           {dir: true, mode: 0o755},
		"bin/run":       {content: "#!/bin/sh\n", mode: 0o755},
		"secret.txt":    {content: "s", mode: 0o600},
		"shared":        {dir: true, mode: 0o775 | fs.ModeSetgid},
		"shared/a":      {content: "a", mode: 0o664},
		"tmp":           {dir: true, mode: 0o777 | fs.ModeSticky},
		"readonly":      {dir: true, mode: 0o555},
		"suid":          {content: "x", mode: 0o755 | fs.ModeSetuid},
		"empty-file":    {content: ""},
		"plain/file.md": {content: "m"},
	})
	// readonly must be made last: files were written before its chmod, in sorted order.
	m, err := release.Walk(context.Background(), root, nil)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]uint32{
		"bin": 0o755, "bin/run": 0o755, "secret.txt": 0o600, "shared": 0o2775, "shared/a": 0o664,
		"tmp": 0o1777, "readonly": 0o555, "suid": 0o4755, "empty-file": 0o644,
	} {
		if got := entry(t, m, p).Mode; got != want {
			t.Errorf("%s mode = %o, want %o", p, got, want)
		}
	}
	if e := entry(t, m, "shared"); e.Type != release.TypeDir {
		t.Errorf("shared = %+v", *e)
	}
	if e := entry(t, m, "empty-file"); e.Size != 0 || e.Hash.String() != sha("") {
		t.Errorf("empty-file = %+v", *e)
	}
	for _, p := range []uint32{0, 0o644, 0o755, 0o2775, 0o1777, 0o4755, 0o7777} {
		if got := release.FileMode(p); uint32(got.Perm()) != p&0o777 {
			t.Errorf("FileMode(%o) = %v", p, got)
		}
	}
	if got := release.FileMode(0o2775); got&fs.ModeSetgid == 0 || got&fs.ModeSetuid != 0 {
		t.Errorf("FileMode(2775) = %v", got)
	}
}

func TestBuildErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("x"), 0o644)
	onlyExcluded := tree(t, map[string]node{".git/HEAD": {content: "x"}, "empty-dir": {dir: true}})
	tests := []struct {
		name    string
		opts    release.Options
		phrases []string
	}{
		{"source is a file", release.Options{Source: file}, []string{file, "is not a directory"}},
		{"source missing", release.Options{Source: filepath.Join(t.TempDir(), "nope")}, []string{"nope", "does not exist"}},
		{"source empty", release.Options{Source: t.TempDir()}, []string{"has no files to release"}},
		{"source empty after excludes", release.Options{Source: onlyExcluded, Exclude: []string{".git"}}, []string{"has no files to release", `".git"`}},
		{"build fails", release.Options{Source: onlyExcluded, Build: "echo building; exit 3"}, []string{"build command failed", "exit status 3"}},
		{"REVISION is a directory", release.Options{Source: tree(t, map[string]node{"REVISION/x": {content: "x"}})}, []string{"REVISION must be a file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Revision = "abc"
			tt.opts.Stdout, tt.opts.Stderr = io.Discard, io.Discard
			m, err := release.Build(context.Background(), tt.opts)
			if err == nil {
				t.Fatalf("Build accepted it: %q", paths(m))
			}
			for _, p := range tt.phrases {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not say %q", err, p)
				}
			}
		})
	}
}

func TestBuildRevision(t *testing.T) {
	for _, withFile := range []bool{false, true} {
		nodes := map[string]node{"index.html": {content: "hi"}}
		if withFile {
			nodes["REVISION"] = node{content: "stale revision from the repo\n", mode: 0o600}
		}
		m, err := release.Build(context.Background(), release.Options{Source: tree(t, nodes), Revision: "0123abc"})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range m.Entries {
			if e.Path == release.RevisionFile {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d REVISION entries", n)
		}
		e := entry(t, m, release.RevisionFile)
		if e.Type != release.TypeFile || e.Mode != 0o644 || e.Size != 8 || e.Hash.String() != sha("0123abc\n") {
			t.Errorf("REVISION = %+v", *e)
		}
		r, err := e.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(r)
		if string(data) != "0123abc\n" {
			t.Errorf("REVISION content %q", data)
		}
		if files, size := m.Files(); files != 2 || size != 10 {
			t.Errorf("Files() = %d, %d", files, size)
		}
	}
}

func TestBuildCommand(t *testing.T) {
	root := tree(t, map[string]node{"src.txt": {content: "s"}})
	var out bytes.Buffer
	m, err := release.Build(context.Background(), release.Options{
		Source: root, Revision: "r", Stdout: &out, Stderr: &out,
		Build: "mkdir -p dist && printf built > dist/out.txt && echo \"built in $(basename \"$PWD\")\"",
	})
	if err != nil {
		t.Fatal(err)
	}
	if e := entry(t, m, "dist/out.txt"); e.Hash.String() != sha("built") {
		t.Errorf("dist/out.txt = %+v", *e)
	}
	if !strings.Contains(out.String(), "built in "+filepath.Base(root)) {
		t.Errorf("build output %q", out.String())
	}
}

// TestBuildEnvironment: the build gets Options.Env and nothing of this
// process's environment, which holds the secret inputs in Actions.
func TestBuildEnvironment(t *testing.T) {
	t.Setenv("INPUT_PASSWORD", "process-secret-3f2a")
	for _, tt := range []struct {
		name string
		env  []string
		want []string
	}{
		{"nil is an empty environment", nil, nil},
		{"what it is given", []string{"CI=true", "HOME=/github/home"}, []string{"CI=true", "HOME=/github/home"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := tree(t, map[string]node{"src.txt": {content: "s"}})
			m, err := release.Build(context.Background(), release.Options{Source: root, Revision: "r", Env: tt.env,
				Build: `tr '\0' '\n' < /proc/$$/environ > env.txt`})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(filepath.Join(root, "env.txt"))
			if want := strings.Join(append(tt.want, ""), "\n"); string(got) != want {
				t.Errorf("the build's environment is\n%s\nwant\n%s", got, want)
			}
			entry(t, m, "env.txt")
		})
	}
}

func TestBuildFollowsASymlinkedSource(t *testing.T) {
	root := tree(t, map[string]node{"site/index.html": {content: "hi"}, "link": {link: "site"}})
	m, err := release.Build(context.Background(), release.Options{Source: filepath.Join(root, "link"), Revision: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := paths(m), []string{"REVISION", "index.html"}; !slices.Equal(got, want) {
		t.Errorf("paths = %q, want %q", got, want)
	}
	// Content is read through the link too (from the root and the path).
	r, err := entry(t, m, "index.html").Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if data, _ := io.ReadAll(r); string(data) != "hi" {
		t.Errorf("index.html reads %q", data)
	}
}

func sampleManifest() *release.Manifest {
	return &release.Manifest{Entries: []release.Entry{
		{Path: "app", Type: release.TypeDir, Mode: 0o2775},
		{Path: "app/index.php", Type: release.TypeFile, Mode: 0o644, Size: 5, Hash: sha256.Sum256([]byte("<?php")), MTime: 1764112722123456789},
		{Path: "app/empty", Type: release.TypeFile, Mode: 0o600, Hash: sha256.Sum256([]byte(""))},
		{Path: "app/link", Type: release.TypeSymlink, Target: "../REVISION"},
		{Path: "name with\nnewline 'and' \"quotes\" ünï -x", Type: release.TypeFile, Mode: 0o755, Size: 1, Hash: sha256.Sum256([]byte("x"))},
		{Path: "REVISION", Type: release.TypeFile, Mode: 0o644, Size: 4, Hash: sha256.Sum256([]byte("abc\n"))},
	}}
}

func TestManifestRoundTrip(t *testing.T) {
	for _, m := range []*release.Manifest{sampleManifest(), {}} {
		var b bytes.Buffer
		if err := m.Encode(&b); err != nil {
			t.Fatal(err)
		}
		back, err := release.DecodeManifest(&b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(exported(back.Entries), exported(m.Entries)) {
			t.Errorf("round trip:\n%+v\nwant\n%+v", back.Entries, m.Entries)
		}
	}
	files, size := sampleManifest().Files()
	if files != 4 || size != 10 {
		t.Errorf("Files() = %d, %d", files, size)
	}
}

// Encoding reuses compressors: what it writes is what a new one writes,
// also after an encoding that failed halfway (its writer went away) and
// while others run at once.
func TestEncodeReusesCompressorsCleanly(t *testing.T) {
	big := &release.Manifest{}
	for i := range 5000 {
		big.Entries = append(big.Entries, release.Entry{Path: fmt.Sprintf("f%05d", i), Type: release.TypeFile, Mode: 0o644, Size: int64(i), Hash: sha256.Sum256([]byte{byte(i)})})
	}
	for range 3 {
		if err := big.Encode(failingWriter{}); err == nil {
			t.Fatal("encoding into a failing writer succeeded")
		}
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, m := range []*release.Manifest{sampleManifest(), big} {
				var b bytes.Buffer
				if err := m.Encode(&b); err != nil {
					t.Error(err)
					return
				}
				zr, err := gzip.NewReader(bytes.NewReader(b.Bytes()))
				if err != nil {
					t.Error(err)
					return
				}
				plain, err := io.ReadAll(zr)
				if err != nil {
					t.Error(err)
					return
				}
				var want bytes.Buffer
				zw := kgzip.NewWriter(&want) // what Encode uses, new
				zw.Write(plain)
				zw.Close()
				if !bytes.Equal(b.Bytes(), want.Bytes()) {
					t.Errorf("%d entries: %d bytes encoded, %d from a new compressor", len(m.Entries), b.Len(), want.Len())
				}
			}
		}()
	}
	wg.Wait()
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("gone") }

func gz(s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.Bytes()
}

const header = `{"atomic-deploy-manifest":1}` + "\n"

func TestDecodeManifestRejects(t *testing.T) {
	h := sha("x")
	tests := []struct {
		name, data, phrase string
	}{
		{"empty", "", "header"},
		{"other header", `{"atomic-deploy-manifest":2}` + "\n", "header"},
		{"absolute path", header + `{"p":"/etc/passwd","t":"f","s":1,"h":"` + h + `"}`, "bad path"},
		{"dot-dot", header + `{"p":"../x","t":"f","s":1,"h":"` + h + `"}`, "bad path"},
		{"dot-dot inside", header + `{"p":"a","t":"d"}` + "\n" + `{"p":"a/../../x","t":"f","h":"` + h + `"}`, "bad path"},
		{"dot", header + `{"p":".","t":"d"}`, "bad path"},
		{"unclean", header + `{"p":"a//b","t":"d"}`, "bad path"},
		{"trailing slash", header + `{"p":"a/","t":"d"}`, "bad path"},
		{"empty path", header + `{"p":"","t":"d"}`, "bad path"},
		{"NUL in path", header + `{"p":"a\u0000b","t":"d"}`, "bad path"},
		{"listed twice", header + `{"p":"a","t":"d"}` + "\n" + `{"p":"a","t":"d"}`, "listed twice"},
		{"child before directory", header + `{"p":"a/b","t":"d"}` + "\n" + `{"p":"a","t":"d"}`, "before its directory"},
		{"child of a file", header + `{"p":"a","t":"f","h":"` + h + `"}` + "\n" + `{"p":"a/b","t":"d"}`, "before its directory"},
		{"unknown field", header + `{"p":"a","t":"d","x":1}`, "unknown field"},
		{"unknown type", header + `{"p":"a","t":"c"}`, "unknown type"},
		{"bad hash", header + `{"p":"a","t":"f","h":"zz"}`, "bad hash"},
		{"short hash", header + `{"p":"a","t":"f","h":"abcd"}`, "bad hash"},
		{"negative size", header + `{"p":"a","t":"f","s":-1,"h":"` + h + `"}`, "negative size"},
		{"bad mode", header + `{"p":"a","t":"d","m":65536}`, "bad mode"},
		{"directory with a hash", header + `{"p":"a","t":"d","h":"` + h + `"}`, "directory with file fields"},
		{"symlink without target", header + `{"p":"a","t":"l"}`, "bad symlink target"},
		{"not JSON", header + "hello", "manifest entry 1"},
		{"blank line", header + "\n", "manifest entry 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := release.DecodeManifest(bytes.NewReader(gz(tt.data)))
			if err == nil {
				t.Fatalf("accepted: %+v", m)
			}
			if !strings.Contains(err.Error(), tt.phrase) {
				t.Errorf("error %q does not say %q", err, tt.phrase)
			}
		})
	}
	if _, err := release.DecodeManifest(strings.NewReader(header)); err == nil {
		t.Error("accepted a manifest that is not gzip")
	}
}

// FuzzDecodeManifest feeds DecodeManifest arbitrary manifest text (the
// gzip layer is added here; it is the standard library's). It must never
// panic, every path it accepts must be a clean relative path, and whatever
// it accepts must encode and decode to the same entries.
func FuzzDecodeManifest(f *testing.F) {
	f.Add([]byte(header))
	f.Add([]byte(header + `{"p":"a","t":"d","m":493}` + "\n" + `{"p":"a/b","t":"f","m":420,"s":1,"h":"` + sha("x") + `","mt":1}` + "\n"))
	f.Add([]byte(header + `{"p":"l","t":"l","l":"../x"}` + "\n"))
	f.Add([]byte(header + `{"p":"../x","t":"d"}`))
	if b, err := sampleManifest().Bytes(); err == nil {
		zr, _ := gzip.NewReader(bytes.NewReader(b))
		plain, _ := io.ReadAll(zr)
		f.Add(plain)
	}
	f.Fuzz(func(t *testing.T, plain []byte) {
		m, err := release.DecodeManifest(bytes.NewReader(gz(string(plain))))
		if err != nil {
			return
		}
		for _, e := range m.Entries {
			p := e.Path
			if p == "" || p == "." || strings.HasPrefix(p, "/") || filepath.ToSlash(filepath.Clean(p)) != p || strings.ContainsRune(p, 0) {
				t.Fatalf("accepted unclean path %q", p)
			}
			for _, part := range strings.Split(p, "/") {
				if part == ".." || part == "." || part == "" {
					t.Fatalf("accepted path %q with a %q element", p, part)
				}
			}
		}
		b, err := m.Bytes()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		back, err := release.DecodeManifest(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("re-encoded manifest does not decode: %v", err)
		}
		if !reflect.DeepEqual(exported(back.Entries), exported(m.Entries)) {
			t.Fatalf("round trip changed entries:\n%+v\n%+v", back.Entries, m.Entries)
		}
	})
}

// TestManifestLinesUnchanged pins the stored form byte for byte: servers
// hold manifests in it, and an unchanged entry must give the same line in
// every deploy (the manifest travels as a delta against the previous one).
// The one change since: the byte \xff, which is not UTF-8, is written
// \udcff (it was \ufffd, which lost it).
func TestManifestLinesUnchanged(t *testing.T) {
	m := sampleManifest()
	m.Entries = append(m.Entries, release.Entry{Path: "<&>\u2028\x7f\x01\t\xff", Type: release.TypeSymlink, Target: "a<b>&c\u2029\b\f"})
	var b bytes.Buffer
	if err := m.EncodeMTimes(&b, []int64{0, 1764112722123456789, 7, 0, -1, 1764112723000000000, 0}); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&b)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(zr)
	// Written by the release before hashes were held as bytes.
	want := "{\"atomic-deploy-manifest\":1}\n{\"p\":\"app\",\"t\":\"d\",\"m\":1533}\n{\"p\":\"app/index.php\",\"t\":\"f\",\"m\":420,\"s\":5,\"h\":\"fe5bcb54c56e0b9f456a060364dd28b2248f3a0e21c168d4ce9d009b73e83e3c\",\"mt\":1764112722123456789}\n{\"p\":\"app/empty\",\"t\":\"f\",\"m\":384,\"h\":\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\",\"mt\":7}\n{\"p\":\"app/link\",\"t\":\"l\",\"l\":\"../REVISION\"}\n{\"p\":\"name with\\nnewline 'and' \\\"quotes\\\" ünï -x\",\"t\":\"f\",\"m\":493,\"s\":1,\"h\":\"2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881\",\"mt\":-1}\n{\"p\":\"REVISION\",\"t\":\"f\",\"m\":420,\"s\":4,\"h\":\"edeaaff3f1774ad2888673770c6d64097e391bc362d7d6fb34982ddf0efd18cb\",\"mt\":1764112723000000000}\n{\"p\":\"\\u003c\\u0026\\u003e\\u2028\x7f\\u0001\\t\\udcff\",\"t\":\"l\",\"l\":\"a\\u003cb\\u003e\\u0026c\\u2029\\b\\f\"}\n"
	if string(got) != want {
		t.Errorf("encoded\n%s\nwant\n%s", got, want)
	}
}

func TestDigestAndTypeText(t *testing.T) {
	// Upper-case hex was accepted before and still is; it is written back
	// in lower case.
	h := sha("x")
	m, err := release.DecodeManifest(bytes.NewReader(gz(header + `{"p":"a","t":"f","s":1,"h":"` + strings.ToUpper(h) + `"}` + "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Entries[0].Hash.String(); got != h {
		t.Errorf("hash %s, want %s", got, h)
	}
	if d, err := release.ParseDigest(h); err != nil || d != sha256.Sum256([]byte("x")) {
		t.Errorf("ParseDigest(%s) = %v, %v", h, d, err)
	}
	for _, bad := range []string{"", "zz", h[:62], h + "00", strings.Replace(h, "2", "g", 1)} {
		if _, err := release.ParseDigest(bad); err == nil {
			t.Errorf("ParseDigest(%q) accepted", bad)
		}
	}
	if s := (release.Digest{}).String(); s != "" {
		t.Errorf("zero digest reads %q", s)
	}
	if release.TypeDir.String() != "d" || release.TypeFile.String() != "f" || release.TypeSymlink.String() != "l" || release.EntryType(0).String() != "" {
		t.Error("entry type letters changed")
	}
	for _, tt := range []struct{ line, phrase string }{
		{`{"p":"a","t":"dir"}`, "unknown type"},
		{`{"p":"a","t":""}`, "unknown type"},
		{`{"p":"a"}`, "unknown type"},
		{`{"p":"a","t":"l","l":"b","h":"zz"}`, "bad hash"},
	} {
		if _, err := release.DecodeManifest(bytes.NewReader(gz(header + tt.line + "\n"))); err == nil || !strings.Contains(err.Error(), tt.phrase) {
			t.Errorf("%s: error %v, want %q", tt.line, err, tt.phrase)
		}
	}
}

// TestDecodeSharesDescribedPaths: a decoded manifest takes the paths of
// the manifest described last, so a deploy holds each path once.
func TestDecodeSharesDescribedPaths(t *testing.T) {
	nodes := map[string]node{}
	for _, n := range []string{"a", "a-b", "a.b", "a0", "a/x", "a/x-y/z", "a/x/y", "b/c d", "ü/ñ", "Z"} {
		nodes[n+"/f"] = node{content: n}
	}
	root := tree(t, nodes)
	built, err := release.Build(context.Background(), release.Options{Source: root, Revision: "r"})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := built.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	// The previous release had other paths too, before and among these.
	var plain bytes.Buffer
	plain.WriteString(header)
	for i := range 40 {
		fmt.Fprintf(&plain, `{"p":"0old%02d","t":"d","m":493}`+"\n", i)
	}
	zr, _ := gzip.NewReader(bytes.NewReader(stored))
	lines, _ := io.ReadAll(zr)
	dropped := 0
	for i, line := range strings.SplitAfter(string(lines), "\n")[1:] {
		if strings.HasPrefix(line, `{"p":"a/x`) {
			dropped++ // added since: a run of paths the previous manifest lacks
			continue
		}
		plain.WriteString(line)
		if i == 3 {
			plain.WriteString(`{"p":"a/gone","t":"d"}` + "\n")
		}
	}
	m, err := release.Describe(context.Background(), release.Options{Source: root, Revision: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(m.Entries[:len(m.Entries)-1], func(a, b release.Entry) int { return release.WalkOrder(a.Path, b.Path) }) {
		t.Errorf("a walk is not in walk order: %q", paths(m))
	}
	hashed := make(chan error, 1)
	go func() { hashed <- m.Hash(context.Background()) }() // as a deploy does, while it decodes
	prev, err := release.DecodeManifest(bytes.NewReader(gz(plain.String())))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-hashed; err != nil {
		t.Fatal(err)
	}
	idx := m.Index()
	shared := 0
	for _, e := range prev.Entries {
		if n := idx[e.Path]; n != nil {
			if unsafe.StringData(n.Path) != unsafe.StringData(e.Path) {
				t.Errorf("%q is a copy", e.Path)
			}
			shared++
		}
	}
	if dropped == 0 || shared != len(m.Entries)-dropped {
		t.Errorf("%d paths shared, want %d", shared, len(m.Entries)-dropped)
	}
}

// storedEntry is Entry as it was declared when manifests were first
// stored: encoding/json writing it is the reference for every line.
type storedEntry struct {
	Path   string `json:"p"`
	Type   string `json:"t"`
	Mode   uint32 `json:"m,omitempty"`
	Size   int64  `json:"s,omitempty"`
	Hash   string `json:"h,omitempty"`
	Target string `json:"l,omitempty"`
	MTime  int64  `json:"mt,omitempty"`
}

// storedEntryRaw is storedEntry with its strings already quoted.
type storedEntryRaw struct {
	Path   json.RawMessage `json:"p"`
	Type   json.RawMessage `json:"t"`
	Mode   uint32          `json:"m,omitempty"`
	Size   int64           `json:"s,omitempty"`
	Hash   string          `json:"h,omitempty"`
	Target json.RawMessage `json:"l,omitempty"`
	MTime  int64           `json:"mt,omitempty"`
}

// quoteBytes quotes s as a manifest does: its UTF-8 runs as encoding/json
// quotes them, each byte that is not UTF-8 as \udc80-\udcff.
func quoteBytes(s string) json.RawMessage {
	b := []byte{'"'}
	for len(s) > 0 {
		if r, size := utf8.DecodeRuneInString(s); r == utf8.RuneError && size == 1 {
			b = fmt.Appendf(b, `\udc%02x`, s[0])
			s = s[1:]
			continue
		}
		n := 0
		for n < len(s) {
			r, size := utf8.DecodeRuneInString(s[n:])
			if r == utf8.RuneError && size == 1 {
				break
			}
			n += size
		}
		run, _ := json.Marshal(s[:n])
		b = append(b, run[1:len(run)-1]...)
		s = s[n:]
	}
	return append(b, '"')
}

// FuzzAppendLine: the manifest's own encoder writes exactly what
// encoding/json writes for the entry as first declared, but for the bytes
// of a path or target that are not UTF-8 (written \udc80-\udcff where
// encoding/json loses them as \ufffd); and the line reads back as the
// entry, byte for byte.
func FuzzAppendLine(f *testing.F) {
	f.Add("app/index.php", "", byte('f'), uint32(0o644), int64(5), []byte("x"), int64(1764112722123456789))
	f.Add("<&>\u2028\u2029\x7f\x01\t\xff\b\f\r\n\"\\/é日本", "a<b>&c\u2029", byte('l'), uint32(0), int64(0), []byte{}, int64(0))
	f.Add("d", "t", byte('d'), uint32(0o7777), int64(-1), []byte{}, int64(-7))
	f.Add("\xed\xa0\x80\xf4\x90\x80\x80\xc0\xaf", "\xe2\x80", byte(0), uint32(1<<31), int64(1<<62), []byte{0}, int64(-1<<63))
	f.Add("caf\xe9.txt", "caf\xe8.txt", byte('l'), uint32(0), int64(0), []byte{}, int64(0))
	f.Add("\\udcff \xff \ufffd", "\xff\xfe", byte('f'), uint32(0o644), int64(1), []byte("x"), int64(1))
	f.Add("\xff", "", byte(0xff), uint32(0), int64(0), []byte{}, int64(0))
	f.Fuzz(func(t *testing.T, p, target string, typ byte, mode uint32, size int64, content []byte, mtime int64) {
		e := release.Entry{Path: p, Type: release.EntryType(typ), Mode: mode, Size: size, Target: target}
		if len(content) > 0 {
			e.Hash = sha256.Sum256(content)
		}
		var b bytes.Buffer
		if err := (&release.Manifest{Entries: []release.Entry{e}}).EncodeMTimes(&b, []int64{mtime}); err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(&b)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(zr)
		var want bytes.Buffer
		want.WriteString(header)
		if utf8.ValidString(p) && utf8.ValidString(target) && utf8.ValidString(e.Type.String()) {
			json.NewEncoder(&want).Encode(storedEntry{Path: p, Type: e.Type.String(), Mode: mode, Size: size, Hash: e.Hash.String(), Target: target, MTime: mtime})
		} else {
			raw := storedEntryRaw{Path: quoteBytes(p), Type: quoteBytes(e.Type.String()), Mode: mode, Size: size, Hash: e.Hash.String(), MTime: mtime}
			if target != "" {
				raw.Target = quoteBytes(target)
			}
			json.NewEncoder(&want).Encode(raw)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("encoded\n%q\nencoding/json\n%q", got, want.Bytes())
		}
		switch e.Type {
		case 0, release.TypeDir, release.TypeFile, release.TypeSymlink:
		default:
			return // not a type a line can hold
		}
		line := bytes.TrimSuffix(got[len(header):], []byte("\n"))
		back, err := release.DecodeLine(line)
		e.MTime = mtime
		if err != nil || back != e {
			t.Fatalf("%q reads back as %+v, %v; want %+v", line, back, err, e)
		}
	})
}

// FuzzParseLine: the manifest's own parser reads a line only when
// encoding/json reads it into the same entry; the slow way (DecodeLine)
// reads what encoding/json reads, into the same entry but for the bytes
// that are not UTF-8, which it keeps (raw, or written \udc80-\udcff); and
// whatever it reads, written again, reads back the same.
func FuzzParseLine(f *testing.F) {
	if b, err := sampleManifest().Bytes(); err == nil {
		zr, _ := gzip.NewReader(bytes.NewReader(b))
		plain, _ := io.ReadAll(zr)
		for _, line := range bytes.Split(plain, []byte("\n")) {
			f.Add(line)
		}
	}
	h := sha("x")
	for _, line := range []string{
		`{"p":"a","t":"f","m":420,"s":1,"h":"` + h + `","mt":1764112722123456789}`,
		`{"p":"a","t":"f","m":420,"s":1,"h":"` + strings.ToUpper(h) + `"}`,
		`{"p":"a","t":"f","m":0420}`, `{"p":"a","t":"f","s":-0}`, `{"p":"a","t":"f","s":-9223372036854775808}`,
		`{"p":"a","t":"f","s":9223372036854775808}`, `{"p":"a","t":"d","m":4294967296}`, `{"p":"a","t":"d","m":4294967295}`,
		`{"p":"a","t":"l","l":"b"} `, `{"p":"a","t":"l","l":"b"}x`, `{"p":"a\u0062","t":"d"}`, `{"p":"a","t":"x"}`,
		`{"p":"a","t":"f","mt":1,"s":2}`, `{"p":"a","t":"f","s":1.5}`, `{"p":"a","t":"f","s":1e3}`, `{"p":"~","t":"d"}`,
		`{"p":"caf\udce9.txt","t":"l","l":"caf\udce8"}`, "{\"p\":\"caf\xe9\",\"t\":\"d\"}", `{"p":"\uDCFF\udc7f\ud800\ud83d\udc80\ud83d\udcff\ud83d","t":"d"}`,
		`{"p":"a\ufffd","t":"d"}`, `{"p":"\\udcff","t":"d"}`, `{"P":"a","T":"d"}`, `{"p":null,"t":"d"}`, `{"p":"a\u0000","t":"d"}`,
	} {
		f.Add([]byte(line))
	}
	lowSurrogate := regexp.MustCompile(`(?i)\\ud[c-f]`)
	f.Fuzz(func(t *testing.T, line []byte) {
		slow, slowErr := release.DecodeLine(line)
		if got, ok := release.ParseLine(line); ok {
			var want release.Entry
			dec := json.NewDecoder(bytes.NewReader(line))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&want); err != nil {
				t.Fatalf("parsed %q, which encoding/json refuses: %v", line, err)
			}
			if got != want || slowErr != nil || slow != got {
				t.Fatalf("%q: parsed %+v, encoding/json reads %+v, DecodeLine %+v (%v)", line, got, want, slow, slowErr)
			}
		}
		var want release.Entry
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		jsonErr := dec.Decode(&want)
		if (slowErr == nil) != (jsonErr == nil) {
			t.Fatalf("%q: DecodeLine %v, encoding/json %v", line, slowErr, jsonErr)
		}
		if slowErr != nil {
			return
		}
		if utf8.Valid(line) && !lowSurrogate.Match(line) && slow != want {
			t.Fatalf("%q: DecodeLine reads %+v, encoding/json %+v", line, slow, want)
		}
		var b bytes.Buffer
		if err := (&release.Manifest{Entries: []release.Entry{slow}}).EncodeMTimes(&b, []int64{slow.MTime}); err != nil {
			t.Fatal(err)
		}
		zr, _ := gzip.NewReader(&b)
		plain, _ := io.ReadAll(zr)
		again := bytes.TrimSuffix(plain[len(header):], []byte("\n"))
		if back, err := release.DecodeLine(again); err != nil || back != slow {
			t.Fatalf("%q reads as %+v, written again as %q it reads as %+v (%v)", line, slow, again, back, err)
		}
	})
}

// TestManifestKeepsNamesThatAreNotUTF8: names that differ only in bytes
// that are not UTF-8 stay distinct and exact through a stored manifest;
// an older reader (encoding/json) still reads the line, as U+FFFD; and a
// manifest an older atomic-deploy stored with \ufffd still decodes.
func TestManifestKeepsNamesThatAreNotUTF8(t *testing.T) {
	h := sha256.Sum256([]byte("x"))
	m := &release.Manifest{Entries: []release.Entry{
		{Path: "caf\xe9.txt", Type: release.TypeFile, Mode: 0o644, Size: 1, Hash: h},
		{Path: "caf\xe8.txt", Type: release.TypeFile, Mode: 0o644, Size: 1, Hash: h},
		{Path: "d\xff", Type: release.TypeDir, Mode: 0o755},
		{Path: "d\xff/l", Type: release.TypeSymlink, Target: "../caf\xe9.txt"},
		{Path: "caf\ufffd.txt", Type: release.TypeFile, Mode: 0o644, Size: 1, Hash: h},
	}}
	b, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	back, err := release.DecodeManifest(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(exported(back.Entries), exported(m.Entries)) {
		t.Errorf("round trip:\n%q\nwant\n%q", paths(back), paths(m))
	}
	zr, _ := gzip.NewReader(bytes.NewReader(b))
	plain, _ := io.ReadAll(zr)
	lines := strings.Split(string(plain), "\n")
	if !strings.HasPrefix(lines[1], `{"p":"caf\udce9.txt",`) || !strings.HasPrefix(lines[5], `{"p":"caf`+"\ufffd"+`.txt",`) || !strings.Contains(lines[4], `"l":"../caf\udce9.txt"`) {
		t.Errorf("lines:\n%s", plain)
	}
	var old storedEntry
	if err := json.Unmarshal([]byte(lines[1]), &old); err != nil || old.Path != "caf\ufffd.txt" {
		t.Errorf("encoding/json reads %q as %+v, %v", lines[1], old, err)
	}
	stored := header + `{"p":"caf\ufffd.txt","t":"f","m":420,"s":1,"h":"` + sha("x") + `"}` + "\n"
	if m, err := release.DecodeManifest(bytes.NewReader(gz(stored))); err != nil || m.Entries[0].Path != "caf\ufffd.txt" {
		t.Errorf("an older manifest: %v, %v", m, err)
	}
}
