package app

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
	"github.com/atomic-deploy/atomic-deploy/internal/version"
)

// parseCommandLine reads `atomic-deploy [command] [--option value]...`,
// GNU style: --name value or --name=value, and --name alone for a true/false
// option. Each option can also come from the environment
// (ATOMIC_DEPLOY_<NAME>, the way to pass secrets without showing them in ps)
// or from the config file (--config-file, default atomic-deploy.yml when
// present); flags win. done reports that it printed help or the version.
func parseCommandLine(args []string, env map[string]string, stdout io.Writer) (command string, lookup config.Lookup, done bool, err error) {
	command = "deploy"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		command, args = args[0], args[1:]
	}
	switch command {
	case "deploy", "prepare", "activate", "rollback", "unlock", "releases", "plan":
	case "help":
		fmt.Fprint(stdout, usage())
		return "", nil, true, nil
	default:
		return "", nil, false, fmt.Errorf("unknown command %q", command)
	}
	fs := pflag.NewFlagSet("atomic-deploy", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	values := map[string]*inputFlag{}
	for _, in := range config.Inputs {
		// One variable a flag: --env A=1 --env B=2.
		f := &inputFlag{repeatable: in.Name == "env" || in.Name == "secret-env"}
		values[in.Name] = f
		flag := fs.VarPF(f, in.Name, "", in.Description)
		if in.Default == "true" || in.Default == "false" {
			flag.NoOptDefVal = "true"
		}
	}
	keyFile := fs.String("private-key-file", "", "read private-key from this file")
	knownHostsFile := fs.String("known-hosts-file", "", "read known-hosts from this file")
	showVersion := fs.Bool("version", false, "print the version")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(stdout, usage())
			return "", nil, true, nil
		}
		return "", nil, false, flagError(fs, err)
	}
	if *showVersion {
		fmt.Fprintf(stdout, "atomic-deploy %s\n", version.String())
		return "", nil, true, nil
	}
	if fs.NArg() > 0 {
		return "", nil, false, fmt.Errorf("unexpected argument %q (options are --name value or --name=value; a true/false option takes --name=false)", fs.Arg(0))
	}
	for name, file := range map[string]string{"private-key": *keyFile, "known-hosts": *knownHostsFile} {
		if file == "" {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return "", nil, false, fmt.Errorf("--%s-file: %w", name, err)
		}
		values[name].Set(string(data))
	}
	if command == "prepare" || command == "activate" || command == "rollback" || command == "unlock" {
		values["mode"].Set(command)
	}
	given := func(name string) (string, bool) {
		if f := values[name]; f != nil && f.set {
			return f.value, true
		}
		v, ok := env["ATOMIC_DEPLOY_"+envName(name)]
		return v, ok
	}
	path, explicit := given("config-file")
	if !explicit {
		path = DefaultConfigFile
	}
	file, err := readConfigFile(path, explicit)
	if err != nil {
		return "", nil, false, err
	}
	return command, layered(given, file, true), false, nil
}

// flagError words pflag's errors the GNU way ("unknown flag --bogus"), with
// the closest option when the flag looks like a typo of one.
func flagError(fs *pflag.FlagSet, err error) error {
	var names []string
	fs.VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	var notExist *pflag.NotExistError
	var needsValue *pflag.ValueRequiredError
	switch {
	case errors.As(err, &notExist) && notExist.GetSpecifiedShortnames() != "":
		// -path: one dash reads as short options, which there are none of.
		given := notExist.GetSpecifiedShortnames()
		if slices.Contains(names, given) {
			return fmt.Errorf("unknown flag -%s; options take two dashes: --%s", given, given)
		}
		return fmt.Errorf("unknown flag -%s", given)
	case errors.As(err, &notExist):
		given := notExist.GetSpecifiedName()
		if near := closest(given, names); near != "" {
			return fmt.Errorf("unknown flag --%s; did you mean --%s?", given, near)
		}
		return fmt.Errorf("unknown flag --%s", given)
	case errors.As(err, &needsValue):
		return fmt.Errorf("flag --%s needs a value", needsValue.GetSpecifiedName())
	}
	return err
}

type inputFlag struct {
	value      string
	set        bool
	repeatable bool // each use adds a line
}

func (f *inputFlag) String() string { return f.value }
func (f *inputFlag) Set(v string) error {
	if f.repeatable && f.set {
		v = f.value + "\n" + v
	}
	f.value, f.set = v, true
	return nil
}
func (f *inputFlag) Type() string { return "value" }
