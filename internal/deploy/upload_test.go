package deploy

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// planFixture is a previous release (its manifest and what a scan of it
// finds) for MakePlan.
type planFixture struct {
	prev release.Manifest
	scan []transport.Stat
}

// file adds a file to the previous release as deployed (recorded mtime)
// and as found now (stat).
func (f *planFixture) file(p, content string, mode uint32, recorded int64, stat transport.Stat) {
	f.prev.Entries = append(f.prev.Entries, release.Entry{Path: p, Type: release.TypeFile, Mode: mode,
		Size: int64(len(content)), Hash: sha256.Sum256([]byte(content)), MTime: recorded})
	stat.Path = p
	f.scan = append(f.scan, stat)
}

func newFile(p, content string, mode uint32) release.Entry {
	return release.Entry{Path: p, Type: release.TypeFile, Mode: mode, Size: int64(len(content)), Hash: sha256.Sum256([]byte(content))}
}

func TestMakePlanReusesByContent(t *testing.T) {
	const t1, t2 = int64(1764112722123456789), int64(1764112723123456789)
	same := func(content string, mode fs.FileMode, mtime int64) transport.Stat {
		return transport.Stat{Mode: mode, Size: int64(len(content)), ModTime: time.Unix(0, mtime), Precise: true}
	}
	var f planFixture
	f.file("a", "xxx", 0o644, t1, same("xxx", 0o644, t1))
	f.file("b", "xxx", 0o644, t2, same("xxx", 0o644, t2))
	f.file("c", "yyy", 0o755, t1, same("yyy", 0o755, t1))
	f.file("never-recorded", "zzz", 0o644, 0, same("zzz", 0o644, t1))
	f.file("resized", "www", 0o644, t1, same("wwww", 0o644, t1))
	f.file("touched", "vvv", 0o644, t1, same("vvv", 0o644, t2))
	f.file("chmodded", "uuu", 0o644, t1, same("uuu", 0o600, t1))
	f.file("empty", "", 0o644, t1, same("", 0o644, t1))
	f.file("seconds", "sss", 0o644, t1, transport.Stat{Mode: 0o644, Size: 3, ModTime: time.Unix(t1/1e9, 0)})
	// The scan is sorted by the plan if it is not.
	f.scan[0], f.scan[len(f.scan)-1] = f.scan[len(f.scan)-1], f.scan[0]

	m := &release.Manifest{Entries: []release.Entry{
		{Path: "d", Type: release.TypeDir, Mode: 0o755},
		newFile("d/z", "xxx", 0o644), // a and b hold this content: the one listed last
		newFile("a", "xxx", 0o644),   // the same path first
		newFile("d/y", "xxx", 0o644), // both used
		newFile("c", "yyy", 0o644),   // other permission bits
		newFile("never-recorded", "zzz", 0o644),
		newFile("resized", "www", 0o644),
		newFile("touched", "vvv", 0o644),
		newFile("chmodded", "uuu", 0o644),
		newFile("empty", "", 0o644), // nothing to save
		newFile("seconds", "sss", 0o644),
		{Path: "l", Type: release.TypeSymlink, Target: "a"},
	}}
	p := MakePlan(m, &f.prev, f.scan)
	type reuse struct {
		path, from string
		mtime      int64
	}
	var got []reuse
	for _, r := range p.Reuse {
		got = append(got, reuse{r.Entry.Path, r.From, r.FromMTime})
	}
	want := []reuse{{"d/z", "b", t2}, {"a", "a", t1}, {"seconds", "seconds", time.Unix(t1/1e9, 0).UnixNano()}}
	if len(got) != len(want) {
		t.Fatalf("reuse %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("reuse %v, want %v", got, want)
		}
	}
	var uploaded []string
	for _, e := range p.Upload {
		uploaded = append(uploaded, e.Path)
	}
	wantUp := []string{"d/y", "c", "never-recorded", "resized", "touched", "chmodded", "empty"}
	if len(uploaded) != len(wantUp) {
		t.Fatalf("upload %q, want %q", uploaded, wantUp)
	}
	for i := range wantUp {
		if uploaded[i] != wantUp[i] {
			t.Fatalf("upload %q, want %q", uploaded, wantUp)
		}
	}
	if len(p.Dirs) != 1 || len(p.Symlinks) != 1 || p.ReuseBytes != 9 || p.UploadBytes != 18 {
		t.Errorf("dirs %d symlinks %d reuse bytes %d upload bytes %d", len(p.Dirs), len(p.Symlinks), p.ReuseBytes, p.UploadBytes)
	}

	// Without a previous release everything is uploaded.
	p = MakePlan(m, nil, nil)
	if len(p.Reuse) != 0 || len(p.Upload) != 10 {
		t.Errorf("first deploy: reuse %d upload %d", len(p.Reuse), len(p.Upload))
	}
}

// TestTarHeadSharedByAlikeHosts: the hosts that share a plan share the
// head of its tar stream (made once), and the stream, two gzip members,
// reads as one archive with every entry in order.
func TestTarHeadSharedByAlikeHosts(t *testing.T) {
	plan := &Plan{
		Dirs:     []*release.Entry{{Path: "app", Type: release.TypeDir, Mode: 0o755}, {Path: "app/sub", Type: release.TypeDir, Mode: 0o700}},
		Symlinks: []*release.Entry{{Path: "link", Type: release.TypeSymlink, Target: "app"}},
		Upload:   []*release.Entry{{Path: "app/empty", Type: release.TypeFile, Mode: 0o644}},
		Reuse:    []Reuse{{Entry: &release.Entry{Path: "app/kept", Type: release.TypeFile, Mode: 0o600, Size: 3}, From: "app/kept"}},
	}
	now := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		linkFrom string
		want     []string
	}{
		{"", []string{"5 releases/new/ 755", "5 releases/new/app/ 755", "5 releases/new/app/sub/ 700", "2 releases/new/link 777",
			"0 releases/new/app/empty 644", "2 .next 777"}},
		{"releases/live", []string{"5 releases/new/ 755", "5 releases/new/app/ 755", "5 releases/new/app/sub/ 700", "2 releases/new/link 777",
			"1 releases/new/app/kept 600", "0 releases/new/app/empty 644", "2 .next 777"}},
	} {
		shape := tarShape{top: "releases/new", linkFrom: tc.linkFrom, now: now, extras: []tarExtra{{Name: ".next", Target: "releases/new"}}}
		var streams [2]bytes.Buffer
		for i := range streams {
			st := &uploadStats{}
			if err := plan.writeTar(&streams[i], nil, shape, st); err != nil {
				t.Fatal(err)
			}
			if st.reused.Load() != 1 || st.reusedBytes.Load() != 3 || st.files.Load() != 1 {
				t.Errorf("linkFrom %q: counted %d reused (%d bytes), %d files", tc.linkFrom, st.reused.Load(), st.reusedBytes.Load(), st.files.Load())
			}
		}
		if !bytes.Equal(streams[0].Bytes(), streams[1].Bytes()) {
			t.Errorf("linkFrom %q: two hosts' streams differ", tc.linkFrom)
		}
		a, _ := plan.tarHead(shape)
		b, _ := plan.tarHead(shape)
		if &a[0] != &b[0] {
			t.Errorf("linkFrom %q: the head was made again", tc.linkFrom)
		}
		tr := tar.NewReader(bytes.NewReader(unframe(t, &streams[0])))
		var got []string
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("linkFrom %q: %v", tc.linkFrom, err)
			}
			if !h.ModTime.Equal(now) {
				t.Errorf("%s: mtime %s", h.Name, h.ModTime)
			}
			got = append(got, fmt.Sprintf("%c %s %o", h.Typeflag, h.Name, h.Mode))
		}
		if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("linkFrom %q: entries\n%s\nwant\n%s", tc.linkFrom, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
		}
	}
}

// BenchmarkWriteTar: the stream of an initial deploy of 2,000 files of
// 2–20 KB, into a buffer (the link and the compressor's cost included).
func BenchmarkWriteTar(b *testing.B) {
	src := b.TempDir()
	testutil.SmallPHPFiles(b, src, 2000)
	m, err := release.Build(b.Context(), release.Options{Source: src})
	if err != nil {
		b.Fatal(err)
	}
	plan := MakePlan(m, nil, nil)
	shape := tarShape{top: "releases/new", now: time.Unix(1_700_000_000, 0)}
	var out bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		out.Reset()
		if err := plan.writeTar(&out, nil, shape, &uploadStats{}); err != nil {
			b.Fatal(err)
		}
	}
}
