package transport

import (
	"bufio"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"
)

// record is one entry as list_tree prints it.
func record(path, typ, mode string, size int, mtime, ctime string) string {
	return strings.Join([]string{path, typ, mode, fmt.Sprint(size), mtime, "42", "1", ctime}, "\x00") + "\x00"
}

func TestParseFind(t *testing.T) {
	long := strings.Repeat("d/", 2500) + "f"
	listing := record("b.php", "f", "644", 5, "1700000000.5", "1700000001.123456789123") +
		record("a dir\nwith a newline", "d", "2755", 4096, "1700000000", "1700000000.0000000010") +
		record(long, "f", "600", 0, "1700000000.25", "1700000000") +
		"\x000\x00"
	for _, c := range []struct{ size, hint int }{{16, 0}, {4096, 0}, {16, 2}, {4096, 3}, {4096, 1 << 30}} {
		t.Run(fmt.Sprintf("buffer %d hint %d", c.size, c.hint), func(t *testing.T) {
			stats, err := ParseFindSized(bufio.NewReaderSize(strings.NewReader(listing), c.size), c.hint)
			if err != nil {
				t.Fatal(err)
			}
			if len(stats) != 3 || stats[0].Path != "a dir\nwith a newline" || stats[1].Path != "b.php" || stats[2].Path != long {
				t.Fatalf("paths not as listed, sorted: %d stats", len(stats))
			}
			b := stats[1]
			if !b.Mode.IsRegular() || b.Mode.Perm() != 0o644 || b.Size != 5 || b.Inode != 42 || b.Links != 1 ||
				!b.ModTime.Equal(time.Unix(1700000000, 500000000)) || !b.ChangeTime.Equal(time.Unix(1700000001, 123456789)) {
				t.Errorf("b.php: %+v", b)
			}
			if d := stats[0]; !d.Mode.IsDir() || d.Mode.Perm() != 0o755 || !d.ChangeTime.Equal(time.Unix(1700000000, 1)) {
				t.Errorf("dir: %+v", d)
			}
		})
	}
	// A cut listing is an error, never a shorter listing.
	for n := range len(listing) - 1 {
		if _, err := ParseFind(bufio.NewReaderSize(strings.NewReader(listing[:n]), 16)); err == nil {
			t.Fatalf("listing cut at %d of %d bytes parsed", n, len(listing))
		}
	}
	if _, err := ParseFind(bufio.NewReader(strings.NewReader(record("x", "f", "644", 1, "1", "1") + "\x001\x00"))); err == nil || !strings.Contains(err.Error(), "status 1") {
		t.Errorf("find failed: %v", err)
	}
	if _, err := ParseFind(bufio.NewReader(strings.NewReader(record("x", "f", "644", 1, "soon", "1") + "\x000\x00"))); err == nil {
		t.Error("a bad mtime parsed")
	}
}

func TestParseShape(t *testing.T) {
	long := strings.Repeat("d/", 2500) + "f"
	shape := "f/644/5/1700000000.5/b.php\x00" + "d/2755/4096/1700000000/a dir/with a slash\nand a newline\x00" + "f/600/0/1700000000.25/" + long + "\x00"
	stats, err := ParseShape(strings.NewReader(shape))
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 3 || stats[0].Path != "a dir/with a slash\nand a newline" || stats[1].Path != "b.php" || stats[2].Path != long {
		t.Fatalf("paths not as listed, sorted: %+v", stats)
	}
	if b := stats[1]; !b.Mode.IsRegular() || b.Mode.Perm() != 0o644 || b.Size != 5 || !b.Precise || b.Inode != 0 || b.Links != 0 ||
		!b.ModTime.Equal(time.Unix(1700000000, 500000000)) || !b.ChangeTime.IsZero() {
		t.Errorf("b.php: %+v", b)
	}
	if d := stats[0]; !d.Mode.IsDir() || d.Mode&fs.ModeSetgid == 0 || d.Mode.Perm() != 0o755 {
		t.Errorf("dir: %+v", d)
	}
	if stats, err := ParseShape(strings.NewReader("")); err != nil || len(stats) != 0 {
		t.Errorf("empty: %v, %v", stats, err)
	}
	// A cut or damaged shape is an error, never a shorter listing.
	for n := range len(shape) - 1 {
		if _, err := ParseShape(strings.NewReader(shape[:n])); err == nil && n > 0 && shape[n-1] != 0 {
			t.Fatalf("shape cut at %d of %d bytes parsed", n, len(shape))
		}
	}
	for _, bad := range []string{"f/644/5/b.php\x00", "f/644/5/1/\x00", "f/6x4/5/1/a\x00", "f/644/five/1/a\x00", "f/644/5/soon/a\x00"} {
		if _, err := ParseShape(strings.NewReader(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// The formats written in find.sh are the ones documented here.
func TestListTreeFormats(t *testing.T) {
	for _, f := range []string{FindFormat, ShapeFormat} {
		if !strings.Contains(ListTree, "'"+f+"'") {
			t.Errorf("find.sh does not print %s", f)
		}
	}
}

func BenchmarkParseFind(b *testing.B) {
	var sb strings.Builder
	for i := range 5000 {
		sb.WriteString(record(fmt.Sprintf("vendor/package%d/src/File%d.php", i/50, i), "f", "644", 500+i, "1764900000.1234567890", "1764900000.9876543210"))
	}
	sb.WriteString("\x000\x00")
	listing := sb.String()
	for _, hint := range []int{0, 5001} {
		b.Run(fmt.Sprintf("hint=%d", hint), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseFindSized(bufio.NewReader(strings.NewReader(listing)), hint); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
