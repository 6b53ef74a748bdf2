package deploy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/klauspost/compress/gzip"
)

// The lock holder prints the state of the deploy root as soon as it holds
// the lock: where `current` points, GNU tar or not, the release
// directories, the releases log and, for a deploy, the live release's
// manifest and a listing of its files. That is one command instead of a
// dozen requests, most of them one after another; each costs a round trip,
// and a command several (see ../../README.md, Performance).
//
// The snapshot is an optimisation only: when anything about it is off, Open
// reads the same state request by request, with the lock already held.

// snapshot is the deploy root as the lock holder saw it.
type snapshot struct {
	current    string // target of `current`; "" when it does not exist
	tarVersion string // first line of tar --version, if any
	cpVersion  string // first line of cp --version, if any
	deltaTools bool   // awk and sha256sum, to rebuild a manifest from a delta
	releases   []string
	// shared says, for each shared path asked for, what shared/<path> is.
	shared []sharedKind
	log    *releaseLog
	// For a deploy: the live release's stored manifest (nil when there is
	// none; manifestErr when it could not be read) and its files.
	manifest      *release.Manifest
	manifestLines []lineDigest // of the stored manifest's lines, header first
	manifestErr   error
	scan          []transport.Stat // nil when not listed (then Scan lists it)
	seal          []transport.Stat // the live release's seal; nil when it has none
	sealErr       error
	// asSealed says that the listing was byte for byte the seal, which
	// then stands for it (for activate, neither is sent; for a deploy, the
	// seal's shape stands for both where the release has one).
	asSealed bool
	// sealUnsent says that the seal was as listed but not sent, and its
	// shape did not arrive: seal and listing are read request by request.
	sealUnsent bool
	// For activate, where the prepared release is as sealed: the link
	// the holder made for its switch ("" when it made none).
	nextLink string
}

var errNoSnapshot = errors.New("the server printed no snapshot (no gzip?)")

// maxSection bounds what one snapshot section may claim to be.
const maxSection = 1 << 30

// maxPresized bounds the room made for a section before its bytes arrive.
const maxPresized = 16 << 20

// parseSnapshot reads what remote/holder.sh printed after "locked":
//
//	S  L<target>\0 | N\0   <tar --version line>\0   <cp --version line>\0   [01]\0 (delta tools)   <release>\0 ... \0   [01df]...\0 (shared paths)
//	   log z|-|!\n <gzip member>   [manifest <size>|-|!|=\n <gzip>   seal <size>|-|!|=\n <gzip>   scan <size>|-|=\n <gzip>   [shape <size>|-\n <gzip> | <next link>\0]]
//	   E\n
//
// "-" is absent, "!" is unreadable; the log is one gzip member, which
// ends itself (logSection); "=" for the manifest is the one the
// client holds (knownManifest), for the scan a listing byte for byte the
// seal (and the seal not sent: a deploy gets its shape instead, activate
// needs neither). The shape follows for a deploy only, the next link for
// activate only. P\n instead of all that: no snapshot.
func parseSnapshot(br *bufio.Reader, want rootWant) (*snapshot, error) {
	kind, err := br.ReadByte()
	if err != nil {
		return nil, err
	}
	if kind != 'S' {
		return nil, errNoSnapshot
	}
	field := func() (string, error) {
		s, err := br.ReadString(0)
		if err != nil {
			return "", fmt.Errorf("snapshot ended early: %w", err)
		}
		return s[:len(s)-1], nil
	}
	s := &snapshot{}
	link, err := field()
	if err != nil {
		return nil, err
	}
	switch {
	case strings.HasPrefix(link, "L"):
		s.current = link[1:]
	case link != "N":
		return nil, fmt.Errorf("snapshot: bad current field %q", link)
	}
	if s.tarVersion, err = field(); err != nil {
		return nil, err
	}
	if s.cpVersion, err = field(); err != nil {
		return nil, err
	}
	tools, err := field()
	if err != nil {
		return nil, err
	}
	s.deltaTools = tools == "1"
	for {
		name, err := field()
		if err != nil {
			return nil, err
		}
		if name == "" {
			break
		}
		s.releases = append(s.releases, name)
	}
	exists, err := field()
	if err != nil {
		return nil, err
	}
	if len(exists) != len(want.shared) || strings.Trim(exists, "01df") != "" {
		return nil, fmt.Errorf("snapshot: bad shared field %q", exists)
	}
	for _, c := range []byte(exists) {
		s.shared = append(s.shared, sharedKind(c))
	}
	logData, err := logSection(br)
	switch {
	case errors.Is(err, errSectionAbsent):
		s.log = &releaseLog{}
	case err != nil:
		return nil, err
	default:
		s.log = parseReleaseLog(logData)
	}
	if want.plan || want.prepared != "" {
		var live liveManifest
		live, err = manifestSection(br)
		switch {
		case errors.Is(err, errSectionSame) && want.known != nil:
			live, err = want.known.live, nil
		case err == nil:
			rememberManifest(s.current, live)
		}
		s.manifest, s.manifestLines = live.m, live.lines
		switch {
		case errors.Is(err, errSectionAbsent):
		case errors.Is(err, errSectionUnreadable), errors.As(err, new(*sectionDataError)):
			s.manifestErr = err
		case err != nil:
			return nil, err
		}
		// The live release's listings are about as long as its manifest.
		listing := func(r *bufio.Reader) ([]transport.Stat, error) {
			if s.manifest == nil {
				return transport.ParseFind(r)
			}
			return transport.ParseFindSized(r, len(s.manifest.Entries)+1)
		}
		s.seal, err = section(br, "seal", listing)
		sealSent, sealSame := err == nil, errors.Is(err, errSectionSame)
		switch {
		case errors.Is(err, errSectionAbsent), sealSame:
		case errors.Is(err, errSectionUnreadable), errors.As(err, new(*sectionDataError)):
			s.sealErr = err
		case err != nil:
			return nil, err
		}
		s.scan, err = section(br, "scan", listing)
		switch {
		case errors.Is(err, errSectionSame) && (sealSent || sealSame):
			s.scan, s.asSealed = s.seal, true
		case errors.Is(err, errSectionAbsent), errors.Is(err, errSectionSame), errors.As(err, new(*sectionDataError)):
			s.scan = nil // listed again by Scan, which says what is wrong
		case err != nil:
			return nil, err
		}
		if want.plan {
			shape, err := shapeSection(br)
			switch {
			case err == nil && s.asSealed && sealSame:
				s.scan = shape
			case err == nil, errors.Is(err, errSectionAbsent), errors.As(err, new(*sectionDataError)):
			default:
				return nil, err
			}
			if sealSame && s.scan == nil {
				// Neither the seal nor its shape arrived: both are read
				// again, request by request.
				s.asSealed, s.sealUnsent = false, true
			}
		}
		if want.prepared != "" {
			if s.nextLink, err = field(); err != nil {
				return nil, err
			}
		}
	}
	if end, err := br.ReadString('\n'); err != nil || end != "E\n" {
		return nil, fmt.Errorf("snapshot: no end marker (%q, %v)", end, err)
	}
	return s, nil
}

// manifestSection reads the stored manifest's section, decoded once for
// every host whose holder sent the same bytes (memo.go).
func manifestSection(br *bufio.Reader) (liveManifest, error) {
	data, err := rawSection(br, "manifest")
	if err != nil {
		return liveManifest{}, err
	}
	return liveManifests.get(data, func() (liveManifest, error) {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return liveManifest{}, &sectionDataError{fmt.Errorf("manifest: %w", err)}
		}
		lines := &lineDigester{r: zr}
		m, err := release.DecodeManifestJSON(lines)
		if err != nil {
			return liveManifest{}, &sectionDataError{fmt.Errorf("manifest: %w", err)}
		}
		live := liveManifest{m: m, digest: sha256.Sum256(data)}
		if _, err := io.Copy(io.Discard, lines); err == nil && len(lines.partial) == 0 && len(lines.lines) == len(m.Entries)+1 {
			live.lines = lines.lines
		}
		return live, nil
	})
}

// knownManifest is a stored manifest this run has read from a host: the
// next hosts' lock holders are told its release and digest, and where
// theirs is byte for byte the same (alike hosts deployed together), they
// send "manifest =" instead of it. For 5,000 files that is ~235 kB a host
// less to send, decrypt and compare.
type knownManifest struct {
	id     string // the release it is the manifest of
	digest string // SHA-256 of the stored (gzip'd) bytes, hex
	live   liveManifest
}

// lastManifest is the manifest read last. Any host may be told about it:
// the digest, not the host, says whether it is the same.
var lastManifest atomic.Pointer[knownManifest]

// rememberManifest makes live, the manifest of the release current points
// to, the one the next hosts are told about.
func rememberManifest(current string, live liveManifest) {
	id, ok := strings.CutPrefix(current, "releases/")
	if !ok || id == "" || strings.Contains(id, "/") || live.m == nil {
		return
	}
	digest := hex.EncodeToString(live.digest[:])
	if k := lastManifest.Load(); k != nil && k.id == id && k.digest == digest {
		return
	}
	lastManifest.Store(&knownManifest{id: id, digest: digest, live: live})
}

// shapeSection reads the shape of the live release's seal, decoded once
// for every host whose holder sent the same bytes: alike servers do (it is
// stored sorted, and gzip'd without a time), and decoding each host's own
// seal was the largest part of what a fleet's client spent per host.
func shapeSection(br *bufio.Reader) ([]transport.Stat, error) {
	data, err := rawSection(br, "shape")
	if err != nil {
		return nil, err
	}
	return liveShapes.get(data, func() ([]transport.Stat, error) {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, &sectionDataError{fmt.Errorf("shape: %w", err)}
		}
		shape, err := transport.ParseShape(zr)
		if err != nil {
			return nil, &sectionDataError{fmt.Errorf("shape: %w", err)}
		}
		return shape, nil
	})
}

var (
	errSectionAbsent     = errors.New("absent")
	errSectionUnreadable = errors.New("could not be read on the server")
	errSectionSame       = errors.New("as sealed")
)

// sectionDataError is a section that arrived whole but whose content is
// damaged; the stream itself is still in step.
type sectionDataError struct{ err error }

func (e *sectionDataError) Error() string { return e.err.Error() }
func (e *sectionDataError) Unwrap() error { return e.err }

// section reads one "<name> <size>\n<size bytes of gzip>" section and
// decodes the decompressed content with decode, which keeps nothing of
// the reader it is given.
func section[T any](br *bufio.Reader, name string, decode func(*bufio.Reader) (T, error)) (T, error) {
	var zero T
	body, err := sectionBody(br, name)
	if err != nil {
		return zero, err
	}
	// Whatever happens below, the rest of the section is skipped, so the
	// stream stays in step.
	defer io.Copy(io.Discard, body)
	rd := sectionReaders.Get().(*sectionReader)
	defer sectionReaders.Put(rd)
	if err := rd.reset(body); err != nil {
		return zero, &sectionDataError{fmt.Errorf("%s: %w", name, err)}
	}
	v, err := decode(rd.br)
	if err != nil {
		return zero, &sectionDataError{fmt.Errorf("%s: %w", name, err)}
	}
	return v, nil
}

// logSection reads the releases log's section, "log z\n" and one gzip
// member: the holder sends it as gzip writes it, without its size, which
// would take two processes more on the server (holder.sh). The member's
// end is found by decoding it; data that does not decode leaves the rest
// of the snapshot out of step, so it is an error of the whole.
func logSection(br *bufio.Reader) ([]byte, error) {
	head, err := br.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("snapshot ended before log: %w", err)
	}
	switch head {
	case "log -\n":
		return nil, errSectionAbsent
	case "log !\n":
		return nil, fmt.Errorf("log %w", errSectionUnreadable)
	case "log z\n":
	default:
		return nil, fmt.Errorf("snapshot: expected log, got %q", head)
	}
	rd := sectionReaders.Get().(*sectionReader)
	defer sectionReaders.Put(rd)
	if err := rd.reset(br); err != nil {
		return nil, fmt.Errorf("snapshot: log: %w", err)
	}
	rd.zr.Multistream(false)
	data, err := io.ReadAll(rd.br)
	if err != nil {
		return nil, fmt.Errorf("snapshot: log: %w", err)
	}
	return data, nil
}

// rawSection reads one section's gzip data as it was sent.
func rawSection(br *bufio.Reader, name string) ([]byte, error) {
	body, err := sectionBody(br, name)
	if err != nil {
		return nil, err
	}
	// Room for the size it claims, up to a bound (the server may lie):
	// reading a manifest into a growing buffer was a few ms a host.
	buf := bytes.NewBuffer(make([]byte, 0, min(body.N+bytes.MinRead, maxPresized)))
	_, err = buf.ReadFrom(body)
	data := buf.Bytes()
	if err == nil && body.N > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot ended in %s: %w", name, err)
	}
	return data, nil
}

// sectionBody reads a section's head, "<name> <size>\n", and returns its
// body; absent, unreadable and as-sealed sections have none.
func sectionBody(br *bufio.Reader, name string) (*io.LimitedReader, error) {
	head, err := br.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("snapshot ended before %s: %w", name, err)
	}
	got, size, ok := strings.Cut(strings.TrimSuffix(head, "\n"), " ")
	if !ok || got != name {
		return nil, fmt.Errorf("snapshot: expected %s, got %q", name, head)
	}
	switch size {
	case "-":
		return nil, errSectionAbsent
	case "!":
		return nil, fmt.Errorf("%s %w", name, errSectionUnreadable)
	case "=":
		return nil, errSectionSame
	}
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil || n < 0 || n > maxSection {
		return nil, fmt.Errorf("snapshot: bad size of %s: %q", name, size)
	}
	return &io.LimitedReader{R: br, N: n}, nil
}

// sectionReaders decompress snapshot sections, reused from section to
// section and host to host: a new gzip reader and buffer are ~100 KB to
// allocate and clear, more than decoding a section of a few hundred files.
var sectionReaders = sync.Pool{New: func() any { return &sectionReader{} }}

type sectionReader struct {
	zr *gzip.Reader
	br *bufio.Reader
}

// reset points the reader at the gzip data of a new section.
func (s *sectionReader) reset(r io.Reader) error {
	if s.zr == nil {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		s.zr, s.br = zr, bufio.NewReaderSize(zr, 64<<10)
		return nil
	}
	if err := s.zr.Reset(r); err != nil {
		return err
	}
	s.br.Reset(s.zr)
	return nil
}
