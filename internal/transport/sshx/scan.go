package sshx

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/klauspost/compress/gzip"
)

// Scan lists everything below root (a symbolic link as root is followed).
// With a shell and GNU find it is one command with sub-second mtimes;
// otherwise an SFTP walk with many directories read at once.
func (t *Transport) Scan(ctx context.Context, root string) ([]transport.Stat, error) {
	fi, err := t.stat(ctx, root)
	if err != nil {
		return nil, opErr("scan", root, err)
	}
	if !fi.IsDir() {
		return nil, opErr("scan", root, fmt.Errorf("not a directory"))
	}
	var stats []transport.Stat
	if t.hasShell() && t.gnuFind {
		stats, err = t.scanFind(ctx, root) // sorted by transport.ParseFind
	} else {
		stats, err = t.scanSFTP(ctx, root)
		sort.Slice(stats, func(i, j int) bool { return stats[i].Path < stats[j].Path })
	}
	if err != nil {
		return nil, opErr("scan", root, err)
	}
	return stats, nil
}

func (t *Transport) scanFind(ctx context.Context, root string) ([]transport.Stat, error) {
	pr, pw := io.Pipe()
	type result struct {
		stats []transport.Stat
		err   error
	}
	done := make(chan result, 1)
	go func() {
		stats, err := parseFindStream(pr)
		pr.CloseWithError(err) // unblock the session if parsing stopped early
		io.Copy(io.Discard, pr)
		done <- result{stats, err}
	}()
	var errOut bytes.Buffer
	err := t.exec(ctx, command("scan", scanScript, root), nil, pw, transport.LimitWriter(&errOut, 2048))
	pw.CloseWithError(io.EOF)
	res := <-done
	if err != nil {
		if msg := strings.TrimSpace(errOut.String()); msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return nil, err
	}
	return res.stats, res.err
}

// parseFindStream reads what scanScript prints, one record at a time, so a
// listing of 100,000 files is never held as one buffer.
func parseFindStream(r io.Reader) ([]transport.Stat, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	mode, err := br.ReadByte()
	if err != nil {
		return nil, errors.New("find printed nothing")
	}
	src := br
	if mode == 'z' {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("find output: %w", err)
		}
		defer zr.Close()
		src = bufio.NewReaderSize(zr, 64<<10)
	}
	return transport.ParseFind(src)
}

func (t *Transport) scanSFTP(ctx context.Context, root string) ([]transport.Stat, error) {
	var stats []transport.Stat
	err := t.walk(ctx, root, false, func(rel string, fi fs.FileInfo) {
		stats = append(stats, transport.Stat{Path: rel, Mode: fi.Mode(), Size: fi.Size(), ModTime: fi.ModTime()})
	})
	return stats, err
}

// walk reads every directory below root over SFTP, many at once (bounded by
// the request limit), calling visit (serialized) for each entry. Symbolic
// links are reported, not followed.
func (t *Transport) walk(ctx context.Context, root string, ignoreMissing bool, visit func(rel string, fi fs.FileInfo)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	var readDir func(rel string)
	readDir = func(rel string) {
		defer wg.Done()
		dir := path.Join(root, rel)
		var entries []fs.FileInfo
		err := t.do(ctx, func() (err error) {
			entries, err = t.sftp.ReadDirContext(ctx, dir)
			return err
		})
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if !(ignoreMissing && errors.Is(err, fs.ErrNotExist)) && firstErr == nil {
				firstErr = opErr("readdir", dir, err)
				cancel()
			}
			return
		}
		for _, e := range entries {
			r := path.Join(rel, e.Name())
			visit(r, e)
			if e.IsDir() {
				wg.Add(1)
				go readDir(r)
			}
		}
	}
	wg.Add(1)
	go readDir("")
	wg.Wait()
	return firstErr
}

// RemoveAll deletes p and everything below it: `rm -rf` with a shell, else
// an SFTP walk that removes files many at once, then directories deepest
// first. A missing p is not an error.
func (t *Transport) RemoveAll(ctx context.Context, p string) error {
	if !path.IsAbs(p) || path.Clean(p) == "/" {
		return fmt.Errorf("remove all %q: refusing a path that is not absolute or is /", p)
	}
	var err error
	if t.hasShell() {
		_, err = t.run(ctx, command("remove-all", removeAllScript, p))
	} else {
		err = t.removeAllSFTP(ctx, p)
	}
	if err != nil {
		return opErr("remove all", p, err)
	}
	return nil
}

func (t *Transport) removeAllSFTP(ctx context.Context, p string) error {
	fi, err := t.Lstat(ctx, p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		var files []string
		dirsByDepth := map[int][]string{}
		maxDepth := 0
		err := t.walk(ctx, p, true, func(rel string, fi fs.FileInfo) {
			full := path.Join(p, rel)
			if !fi.IsDir() {
				files = append(files, full)
				return
			}
			d := depth(rel)
			dirsByDepth[d] = append(dirsByDepth[d], full)
			maxDepth = max(maxDepth, d)
		})
		if err != nil {
			return err
		}
		if err := t.forEach(ctx, files, t.removeFile); err != nil {
			return err
		}
		for d := maxDepth; d >= 1; d-- {
			if err := t.forEach(ctx, dirsByDepth[d], t.removeDir); err != nil {
				return err
			}
		}
		return t.removeDir(ctx, p)
	}
	return t.removeFile(ctx, p)
}

func depth(rel string) int {
	return strings.Count(rel, "/") + 1
}

func (t *Transport) removeFile(ctx context.Context, p string) error {
	err := t.do(ctx, func() error { return t.sftp.Remove(p) })
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return opErr("remove", p, err)
	}
	return nil
}

func (t *Transport) removeDir(ctx context.Context, p string) error {
	err := t.do(ctx, func() error { return t.sftp.RemoveDirectory(p) })
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return opErr("remove", p, err)
	}
	return nil
}

// forEach runs f on every item with as many workers as requests may be in
// flight, stopping at the first error.
func (t *Transport) forEach(ctx context.Context, items []string, f func(context.Context, string) error) error {
	if len(items) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan string)
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for range min(len(items), cap(t.sem)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for item := range work {
				if err := f(ctx, item); err != nil {
					once.Do(func() { firstErr = err; cancel() })
				}
			}
		}()
	}
feed:
	for _, item := range items {
		select {
		case work <- item:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}
