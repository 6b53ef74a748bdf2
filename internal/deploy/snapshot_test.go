package deploy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy/remote"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
)

// snapshotOf runs the lock holder under sh on l's root, with nothing on
// its input, and returns the snapshot it printed.
func snapshotOf(t *testing.T, sh posixShell, l Layout, want rootWant) []byte {
	t.Helper()
	r := sh.run(t, holderCommand(l, time.Second, Owner{}, want), strings.NewReader(""))
	locked, snap, ok := strings.Cut(r.stdout, "\n")
	if r.status != 0 || !ok || !strings.HasPrefix(locked, "locked ") {
		t.Fatalf("holder: status %d, stdout %q, stderr %q", r.status, r.stdout, r.stderr)
	}
	return []byte(snap)
}

// testSnapshot checks the holder's snapshot under sh (TestHolderScript).
func testSnapshot(t *testing.T, sh posixShell) {
	runSnapshot := func(t *testing.T, l Layout, want rootWant) []byte { return snapshotOf(t, sh, l, want) }
	root := t.TempDir()
	l := Layout{Root: root}
	for _, d := range []string{"releases/20260101000000/app", "releases/20260102000000", "releases/.hidden", "shared", ".atomic-deploy/manifests"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "releases/20260101000000/app/a.php"), []byte("<?php"), 0o644)
	os.Symlink("releases/20260101000000", filepath.Join(root, "current"))
	os.Symlink("releases/20260102000000", filepath.Join(root, tempLinkPrefix+"stale"))
	os.WriteFile(filepath.Join(root, "releases/not-a-dir"), nil, 0o644)
	os.WriteFile(l.Log(), []byte(`{"id":"20260101000000","status":"success"}`+"\n"), 0o644)

	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.php"), []byte("<?php"), 0o644)
	m, err := release.Build(t.Context(), release.Options{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	var mbuf bytes.Buffer
	m.Encode(&mbuf)
	os.WriteFile(l.Manifest("20260101000000"), mbuf.Bytes(), 0o644)

	os.MkdirAll(filepath.Join(root, "shared/storage"), 0o755)
	full := rootWant{plan: true, shared: []string{"storage", ".env"}}
	out := runSnapshot(t, l, full)
	s, err := parseSnapshot(bufio.NewReader(bytes.NewReader(out)), full)
	if err != nil {
		t.Fatalf("parse: %v\n%q", err, out)
	}
	slices.Sort(s.releases)
	if s.current != "releases/20260101000000" || !slices.Equal(s.releases, []string{".hidden", "20260101000000", "20260102000000"}) {
		t.Errorf("current %q releases %q", s.current, s.releases)
	}
	if !slices.Equal(s.shared, []sharedKind{sharedDir, sharedAbsent}) {
		t.Errorf("shared %q", s.shared)
	}
	if s.log.status("20260101000000") != StatusSuccess || len(s.log.records) != 1 {
		t.Errorf("log %+v", s.log.records)
	}
	if s.manifest == nil || len(s.manifest.Entries) != len(m.Entries) || s.manifestErr != nil {
		t.Errorf("manifest %+v (%v)", s.manifest, s.manifestErr)
	}
	var paths []string
	for _, st := range s.scan {
		paths = append(paths, st.Path)
	}
	if !slices.Equal(paths, []string{"app", "app/a.php"}) {
		t.Errorf("scan %q", paths)
	}
	if _, err := os.Lstat(filepath.Join(root, tempLinkPrefix+"stale")); err == nil {
		t.Error("the stale switch link was not removed")
	}
	if left, _ := filepath.Glob(filepath.Join(l.Meta(), ".snapshot-*")); len(left) > 0 {
		t.Errorf("left behind: %q", left)
	}

	// A manifest the client holds is not sent again; another one is.
	sum := sha256.Sum256(mbuf.Bytes())
	held := &release.Manifest{}
	for _, tc := range []struct {
		id, digest string
		same       bool
	}{
		{"20260101000000", hex.EncodeToString(sum[:]), true},
		{"20260101000000", strings.Repeat("0", 64), false},
		{"20260102000000", hex.EncodeToString(sum[:]), false},
	} {
		hinted := full
		hinted.known = &knownManifest{id: tc.id, digest: tc.digest, live: liveManifest{m: held}}
		out := runSnapshot(t, l, hinted)
		s, err := parseSnapshot(bufio.NewReader(bytes.NewReader(out)), hinted)
		if err != nil {
			t.Fatalf("known %s:%s: %v", tc.id, tc.digest, err)
		}
		if sent := !bytes.Contains(out, []byte("manifest =\n")); sent == tc.same || (s.manifest == held) != tc.same {
			t.Errorf("known %s:%s: manifest sent %v, the held one used %v, want held %v", tc.id, tc.digest, sent, s.manifest == held, tc.same)
		}
		if len(s.scan) != 2 {
			t.Errorf("known %s:%s: %d scanned", tc.id, tc.digest, len(s.scan))
		}
	}

	// A damaged manifest is reported and the rest still read.
	os.WriteFile(l.Manifest("20260101000000"), []byte("\x1f\x8bnot really"), 0o644)
	s, err = parseSnapshot(bufio.NewReader(bytes.NewReader(runSnapshot(t, l, full))), full)
	if err != nil || s.manifestErr == nil || s.manifest != nil || len(s.scan) != 2 {
		t.Errorf("damaged manifest: err %v, manifestErr %v, %d scanned", err, s.manifestErr, len(s.scan))
	}

	// Without a plan: no manifest, no listing.
	s, err = parseSnapshot(bufio.NewReader(bytes.NewReader(runSnapshot(t, l, rootWant{}))), rootWant{})
	if err != nil || s.scan != nil || s.manifest != nil {
		t.Errorf("no plan: %v %v %v", err, s.scan, s.manifest)
	}

	// Activate's check: the prepared release's listing and seal, not the
	// live one's, and no manifest.
	const prep = "20260102000000"
	os.WriteFile(filepath.Join(root, "releases", prep, "b.php"), []byte("<?php b"), 0o644)
	check := rootWant{prepared: prep}
	parseCheck := func(t *testing.T, want rootWant) *snapshot {
		t.Helper()
		s, err := parseSnapshot(bufio.NewReader(bytes.NewReader(runSnapshot(t, l, want))), want)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := parseCheck(t, check); s.seal != nil || s.manifest != nil || len(s.scan) != 1 || s.scan[0].Path != "b.php" {
		t.Errorf("prepared, no manifest, no seal: seal %v manifest %v scan %v", s.seal, s.manifest, s.scan)
	}
	os.WriteFile(l.Manifest(prep), mbuf.Bytes(), 0o644)
	if s := parseCheck(t, check); s.seal != nil || s.manifest != nil || len(s.scan) != 1 {
		t.Errorf("prepared, unsealed: seal %v manifest %v scan %v", s.seal, s.manifest, s.scan)
	}
	if r := sh.run(t, remote.Seal.Command(l.Release(prep), l.Seal(prep), filepath.Join(t.TempDir(), "next"), "releases/"+prep), nil); r.status != 0 {
		t.Fatalf("seal: status %d: %s", r.status, r.stderr)
	}
	// As sealed: neither is sent, and the holder made the switch's link.
	s = parseCheck(t, check)
	if !s.asSealed || s.seal != nil || s.scan != nil || s.manifest != nil || !strings.HasPrefix(s.nextLink, filepath.Join(root, tempLinkPrefix)) {
		t.Errorf("prepared, as sealed: as sealed %v, seal %v manifest %v scan %v, next link %q", s.asSealed, s.seal, s.manifest, s.scan, s.nextLink)
	} else if target, err := os.Readlink(s.nextLink); err != nil || target != "releases/"+prep {
		t.Errorf("the switch link: %q, %v", target, err)
	}
	// A deploy whose live release is as sealed gets the seal's shape for
	// both: the fields alike on alike servers.
	os.Symlink("releases/"+prep, filepath.Join(root, "current.new"))
	os.Rename(filepath.Join(root, "current.new"), l.Current())
	s, err = parseSnapshot(bufio.NewReader(bytes.NewReader(runSnapshot(t, l, full))), full)
	if err != nil || !s.asSealed || s.sealUnsent || s.seal != nil || len(s.scan) != 1 || s.scan[0].Path != "b.php" || s.scan[0].Size != 7 || s.scan[0].Inode != 0 || s.nextLink != "" {
		t.Errorf("live release as sealed: %v, as sealed %v, seal %v, scan %+v, next link %q", err, s.asSealed, s.seal, s.scan, s.nextLink)
	}
	// A release sealed without a shape: the seal stands for both.
	shape := readFile(t, l.SealShape(prep))
	os.Remove(l.SealShape(prep))
	s, err = parseSnapshot(bufio.NewReader(bytes.NewReader(runSnapshot(t, l, full))), full)
	if err != nil || !s.asSealed || len(s.seal) != 1 || len(s.scan) != 1 || s.scan[0].Path != "b.php" || s.scan[0].Inode == 0 {
		t.Errorf("as sealed, no shape: %v, as sealed %v, seal %v, scan %+v", err, s.asSealed, s.seal, s.scan)
	}
	// A damaged shape: neither arrived whole, both are read again.
	os.WriteFile(l.SealShape(prep), []byte("\x1f\x8bnot really"), 0o644)
	s, err = parseSnapshot(bufio.NewReader(bytes.NewReader(runSnapshot(t, l, full))), full)
	if err != nil || s.asSealed || !s.sealUnsent || s.seal != nil || s.scan != nil {
		t.Errorf("as sealed, damaged shape: %v, as sealed %v, unsent %v, seal %v, scan %+v", err, s.asSealed, s.sealUnsent, s.seal, s.scan)
	}
	os.WriteFile(l.SealShape(prep), []byte(shape), 0o644)
	// Not as sealed: both are sent, and no link is made.
	os.WriteFile(filepath.Join(root, "releases", prep, "b.php"), []byte("<?php B"), 0o644)
	if s := parseCheck(t, check); s.asSealed || len(s.seal) != 1 || s.seal[0].Path != "b.php" || s.manifest != nil || len(s.scan) != 1 || s.scan[0].Path != "b.php" || s.nextLink != "" {
		t.Errorf("prepared, edited after its seal: as sealed %v, seal %v manifest %v scan %v, next link %q", s.asSealed, s.seal, s.manifest, s.scan, s.nextLink)
	}
	if links, _ := filepath.Glob(filepath.Join(root, tempLinkPrefix+"*")); len(links) > 0 {
		t.Errorf("switch links left: %q", links)
	}
	// An id that names a path elsewhere is not read.
	if s := parseCheck(t, rootWant{prepared: "../releases/" + prep}); s.seal != nil || s.manifest != nil || s.scan != nil {
		t.Errorf("prepared ../: seal %v manifest %v scan %v", s.seal, s.manifest, s.scan)
	}

	// A cut stream is an error, never a partial state.
	for _, n := range []int{0, 1, len(out) / 2, len(out) - 1} {
		if _, err := parseSnapshot(bufio.NewReader(bytes.NewReader(out[:n])), full); err == nil {
			t.Errorf("snapshot cut at %d of %d bytes parsed without error", n, len(out))
		}
	}
}

func TestSnapshotEmptyRoot(t *testing.T) {
	forEachShell(t, func(t *testing.T, sh posixShell) {
		runSnapshot := func(t *testing.T, l Layout, want rootWant) []byte { return snapshotOf(t, sh, l, want) }
		testSnapshotEmptyRoot(t, runSnapshot)
	})
}

func testSnapshotEmptyRoot(t *testing.T, runSnapshot func(t *testing.T, l Layout, want rootWant) []byte) {
	full := rootWant{plan: true}
	root := t.TempDir()
	l := Layout{Root: root}
	s, err := parseSnapshot(bufio.NewReader(bytes.NewReader(runSnapshot(t, l, full))), full)
	if err != nil {
		t.Fatal(err)
	}
	if s.current != "" || len(s.releases) != 0 || len(s.log.records) != 0 || s.scan != nil || s.manifest != nil {
		t.Errorf("empty root: %+v", s)
	}
	if !strings.Contains(string(runSnapshot(t, l, rootWant{})), "log -") {
		t.Error("a missing log is not reported as absent")
	}
}
