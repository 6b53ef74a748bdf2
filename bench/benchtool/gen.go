package main

import (
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Words for paths and file content, so the tree reads like a PHP vendor/.
var (
	vendorWords = []string{"acme", "symfony", "laravel", "monolog", "guzzle", "league", "doctrine", "nesbot", "ramsey", "psr", "nikic", "sebastian", "phpunit", "egulias", "dragonmantank", "brick", "fruitcake", "vlucas", "webmozart", "filp"}
	pkgWords    = []string{"console", "http-kernel", "routing", "collection", "flysystem", "event-dispatcher", "uuid", "carbon", "dotenv", "log", "container", "cache", "mime", "translation", "var-dumper", "finder", "process", "string", "polyfill-mbstring", "inflector"}
	dirWords    = []string{"Contracts", "Exception", "Events", "Support", "Http", "Console", "Util", "Storage", "Adapter", "Handler", "Formatter", "Internal", "Loader", "Node", "Token", "Visitor", "Bridge", "Test", "Resources", "Attribute"}
	classWords  = []string{"Manager", "Factory", "Provider", "Resolver", "Builder", "Collection", "Dispatcher", "Listener", "Repository", "Strategy", "Parser", "Compiler", "Writer", "Reader", "Stream", "Request", "Response", "Kernel", "Command", "Helper"}
	codeWords   = []string{"$this", "->", "return", "public", "function", "private", "static", "array", "string", "null", "new", "if", "foreach", "as", "=>", "$value", "$key", "$items", "self::", "throw", "isset", "count", "$options", "$name", "true", "false", "(", ")", ";", "{", "}", "[", "]", "parent::", "instanceof", "$callback"}
)

// genOptions says what tree to write.
type genOptions struct {
	Out        string
	Files      int
	Min, Max   int
	Seed       uint64
	MTime      int64 // unix seconds given to every file and directory
	ShowLayout bool
}

func cmdGen(args []string) error {
	fl := flag.NewFlagSet("gen", flag.ContinueOnError)
	var o genOptions
	fl.StringVar(&o.Out, "out", "", "directory to create (must not exist)")
	fl.IntVar(&o.Files, "files", 5000, "number of files")
	fl.IntVar(&o.Min, "min", 2048, "smallest file size in bytes")
	fl.IntVar(&o.Max, "max", 20480, "largest file size in bytes")
	fl.Uint64Var(&o.Seed, "seed", 1, "seed: the same seed gives the same tree")
	fl.Int64Var(&o.MTime, "mtime", 1704067200, "mtime (unix seconds) of every entry")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if o.Out == "" || o.Files < 1 || o.Min < 1 || o.Max < o.Min {
		return fmt.Errorf("gen: need -out, -files >= 1 and 1 <= -min <= -max")
	}
	if _, err := os.Lstat(o.Out); err == nil {
		return fmt.Errorf("gen: %s exists", o.Out)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	paths := layout(rng, o.Files)
	var total int64
	dirs := map[string]bool{}
	for _, p := range paths {
		full := filepath.Join(o.Out, p)
		for d := filepath.Dir(full); d != o.Out && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		size := o.Min + rng.IntN(o.Max-o.Min+1)
		if err := os.WriteFile(full, content(rng, size), 0o644); err != nil {
			return err
		}
		total += int64(size)
	}
	if err := setTimes(o.Out, time.Unix(o.MTime, 0)); err != nil {
		return err
	}
	fmt.Printf("files=%d dirs=%d bytes=%d\n", len(paths), len(dirs), total)
	return nil
}

// layout names n files in vendor/<vendor>/<package>/{src,tests}/... with
// nesting up to 5 levels below src.
func layout(rng *rand.Rand, n int) []string {
	var out []string
	var addDir func(dir string, depth int)
	addDir = func(dir string, depth int) {
		k := 2 + rng.IntN(10)
		for i := 0; i < k && len(out) < n; i++ {
			out = append(out, fmt.Sprintf("%s/%s%s%d.php", dir, pick(rng, dirWords), pick(rng, classWords), i))
		}
		if depth >= 4 {
			return
		}
		subs := rng.IntN(4)
		if depth == 0 {
			subs++
		}
		for i := 0; i < subs && len(out) < n; i++ {
			addDir(fmt.Sprintf("%s/%s%d", dir, pick(rng, dirWords), i), depth+1)
		}
	}
	for v := 0; len(out) < n; v++ {
		vendor := fmt.Sprintf("vendor/%s%d", pick(rng, vendorWords), v)
		pkgs := 1 + rng.IntN(4)
		for p := 0; p < pkgs && len(out) < n; p++ {
			pkg := fmt.Sprintf("%s/%s-%d", vendor, pick(rng, pkgWords), p)
			for _, f := range []string{"composer.json", "README.md", "LICENSE"} {
				if len(out) < n {
					out = append(out, pkg+"/"+f)
				}
			}
			addDir(pkg+"/src", 0)
			if rng.IntN(3) == 0 {
				addDir(pkg+"/tests", 2)
			}
		}
	}
	return out
}

func pick(rng *rand.Rand, words []string) string { return words[rng.IntN(len(words))] }

// content is size bytes of code-like text.
func content(rng *rand.Rand, size int) []byte {
	b := make([]byte, 0, size+64)
	b = append(b, "<?php\n\nnamespace App;\n\n"...)
	col := 0
	for len(b) < size {
		if col == 0 {
			b = append(b, "    "...)
		}
		w := pick(rng, codeWords)
		if rng.IntN(5) == 0 {
			w = fmt.Sprintf("%s%s%d", pick(rng, classWords), pick(rng, dirWords), rng.IntN(1000))
		}
		b = append(b, w...)
		col += len(w) + 1
		if col > 60+rng.IntN(40) {
			b = append(b, '\n')
			col = 0
		} else {
			b = append(b, ' ')
		}
	}
	return b[:size]
}

// setTimes gives every entry below root (and root) the time t.
func setTimes(root string, t time.Time) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		return os.Chtimes(p, t, t)
	})
	if err != nil {
		return err
	}
	// Deepest first: setting a child's time does not touch its parent's,
	// but writing files did.
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	for _, d := range dirs {
		if err := os.Chtimes(d, t, t); err != nil {
			return err
		}
	}
	return nil
}

// cmdChange rewrites n files of a tree made by gen (chosen the same way for
// the same tree and seed) with new content, and lists them.
func cmdChange(args []string) error {
	fl := flag.NewFlagSet("change", flag.ContinueOnError)
	dir := fl.String("dir", "", "tree to change in place")
	n := fl.Int("n", 50, "files to change")
	seed := fl.Uint64("seed", 2, "seed for choosing and rewriting")
	min := fl.Int("min", 2048, "smallest new size")
	max := fl.Int("max", 20480, "largest new size")
	list := fl.String("list", "", "write the changed paths (relative, one a line) here")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *n < 1 {
		return fmt.Errorf("change: need -dir and -n >= 1")
	}
	var files []string
	err := filepath.WalkDir(*dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(*dir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	if *n > len(files) {
		return fmt.Errorf("change: only %d files", len(files))
	}
	rng := rand.New(rand.NewPCG(*seed, 0xc4a96e))
	chosen := rng.Perm(len(files))[:*n]
	sort.Ints(chosen)
	var names []string
	var total int64
	for _, i := range chosen {
		size := *min + rng.IntN(*max-*min+1)
		if err := os.WriteFile(filepath.Join(*dir, files[i]), content(rng, size), 0o644); err != nil {
			return err
		}
		names = append(names, files[i])
		total += int64(size)
	}
	if *list != "" {
		if err := os.WriteFile(*list, []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("changed=%d bytes=%d\n", len(names), total)
	return nil
}
