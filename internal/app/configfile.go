package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
)

// DefaultConfigFile is read from the working directory when it exists, so
// a laptop deploy and the workflow can share one set of settings.
const DefaultConfigFile = "atomic-deploy.yml"

// readConfigFile reads a YAML mapping of input names to values. Lists
// become newline-separated text, as in a workflow's multi-line input.
// Secrets are refused: a file in a repository is the wrong home for them.
func readConfigFile(path string, explicit bool) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var raw map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil && !errors.Is(err, io.EOF) { // EOF: an empty file
		return nil, fmt.Errorf("config file %s: %v", path, err)
	}
	known := map[string]config.Input{}
	for _, in := range config.Inputs {
		known[in.Name] = in
	}
	out := map[string]string{}
	var errs []error
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		in, ok := known[k]
		switch {
		case !ok:
			errs = append(errs, unknownKey(path, k))
			continue
		case in.Secret:
			errs = append(errs, fmt.Errorf("config file %s: %q is a secret and is not read from files; pass it with --%s or the ATOMIC_DEPLOY_%s environment variable", path, k, k, envName(k)))
			continue
		}
		v, err := yamlText(raw[k])
		if err != nil {
			errs = append(errs, fmt.Errorf("config file %s: %s: %v", path, k, err))
			continue
		}
		out[k] = v
	}
	return out, errors.Join(errs...)
}

// unknownKey names a key that is no option, and the option it is most
// likely a typo of.
func unknownKey(path, key string) error {
	names := make([]string, len(config.Inputs))
	for i, in := range config.Inputs {
		names[i] = in.Name
	}
	if near := closest(key, names); near != "" {
		return fmt.Errorf("config file %s: unknown key %s; did you mean %s?", path, key, near)
	}
	return fmt.Errorf("config file %s: unknown key %s (the keys are the options of atomic-deploy --help)", path, key)
}

func yamlText(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case bool, int, int64, uint64, float64:
		return fmt.Sprint(v), nil
	case []any:
		parts := make([]string, 0, len(v))
		for _, item := range v {
			s, err := yamlText(item)
			if err != nil {
				return "", err
			}
			if strings.ContainsAny(s, "\n") {
				return "", errors.New("list items must be single lines")
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("must be text, a number, true/false or a list, not %T", v)
}

// envName is the environment variable an option can also come from on the
// command line: ATOMIC_DEPLOY_ plus the name upper-cased with underscores.
func envName(input string) string {
	return strings.ToUpper(strings.ReplaceAll(input, "-", "_"))
}

// layered looks an option up in order: given (flags or inputs), then the
// config file, then nothing (config applies the defaults). An Actions input
// equal to its action.yml default counts as not given, because the runner
// fills defaults in and the file's value must win over them.
func layered(given config.Lookup, file map[string]string, defaultsAreGiven bool) config.Lookup {
	defaults := map[string]string{}
	for _, in := range config.Inputs {
		defaults[in.Name] = in.Default
	}
	return func(name string) (string, bool) {
		v, ok := given(name)
		fv, inFile := file[name]
		if ok && (!inFile || defaultsAreGiven || strings.TrimSpace(v) != defaults[name]) {
			return v, true
		}
		if inFile {
			return fv, true
		}
		return v, ok
	}
}
