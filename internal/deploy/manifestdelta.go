package deploy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"

	"github.com/klauspost/compress/gzip"
)

// The new release's manifest mostly repeats the previous one: a file that
// did not change keeps its line (same path, hash, size and, being a hard
// link, mtime). Instead of the whole manifest (tens of bytes per file,
// most of it the hash), the tar stream carries a delta against the
// previous manifest as stored on the server, and the server rebuilds the
// manifest with awk and checks the result's SHA-256 before storing it
// (remote/upload.sh).

// lineDigest identifies one manifest line (the first 16 bytes of its
// SHA-256: no two lines of two manifests are ever mistaken).
type lineDigest [16]byte

func digestLine(line []byte) lineDigest {
	sum := sha256.Sum256(line)
	return lineDigest(sum[:16])
}

// lineDigester passes a decompressed manifest through to its reader and
// records a digest of each line as it goes by.
type lineDigester struct {
	r       io.Reader
	partial []byte
	lines   []lineDigest
}

func (d *lineDigester) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	data := p[:n]
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			d.partial = append(d.partial, data...)
			break
		}
		if len(d.partial) > 0 {
			d.partial = append(d.partial, data[:i]...)
			d.lines = append(d.lines, digestLine(d.partial))
			d.partial = d.partial[:0]
		} else {
			d.lines = append(d.lines, digestLine(data[:i]))
		}
		data = data[i+1:]
	}
	return n, err
}

// manifestDelta is the new manifest as instructions against the old one's
// lines: "c N" copies the next N old lines, "s N" skips N, "a LINE" adds
// LINE; the first line, "= SUM", is the SHA-256 the result must have.
type manifestDelta struct {
	ops    bytes.Buffer
	sum    string // hex SHA-256 of the whole new manifest, decompressed
	copied int    // old lines reused
}

// makeManifestDelta describes the gzip-compressed manifest encoded against
// an old manifest whose lines have the digests old.
func makeManifestDelta(encoded []byte, old []lineDigest) (*manifestDelta, error) {
	zr, err := gzip.NewReader(bytes.NewReader(encoded))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	at := make(map[lineDigest]int32, len(old))
	for i, d := range old {
		at[d] = int32(i)
	}
	d := &manifestDelta{}
	whole := sha256.New()
	cursor := 0 // next old line
	run := 0    // old lines to copy, not yet written as an op
	flush := func() {
		if run > 0 {
			d.ops.WriteString("c " + strconv.Itoa(run) + "\n")
			run = 0
		}
	}
	br := bufio.NewReaderSize(zr, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// Longer than the buffer (a long path): read the rest.
			full := append([]byte(nil), line...)
			for err == bufio.ErrBufferFull {
				line, err = br.ReadSlice('\n')
				full = append(full, line...)
			}
			line = full
		}
		if len(line) == 0 && err == io.EOF {
			break
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		if line[len(line)-1] != '\n' {
			return nil, fmt.Errorf("manifest does not end with a newline")
		}
		whole.Write(line)
		body := line[:len(line)-1]
		if j, ok := at[digestLine(body)]; ok && int(j) >= cursor {
			if int(j) > cursor {
				flush()
				d.ops.WriteString("s " + strconv.Itoa(int(j)-cursor) + "\n")
			}
			run++
			d.copied++
			cursor = int(j) + 1
			continue
		}
		flush()
		d.ops.WriteString("a ")
		d.ops.Write(line)
	}
	flush()
	d.sum = hex.EncodeToString(whole.Sum(nil))
	return d, nil
}

// file is what the tar stream carries: the expected sum, then the ops.
func (d *manifestDelta) file() []byte {
	return append([]byte("= "+d.sum+"\n"), d.ops.Bytes()...)
}
