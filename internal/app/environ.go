package app

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
)

// secretEnvNames are the variables that carry secret inputs: INPUT_<NAME>
// as the runner spells it (hyphens kept) and as some runners spell it
// (hyphens as underscores), and ATOMIC_DEPLOY_<NAME> on the command line.
// Every input marked Secret in config.Inputs is one, so a secret input
// added later is covered without a change here.
func secretEnvNames() map[string]bool {
	names := map[string]bool{}
	for _, in := range config.Inputs {
		if !in.Secret {
			continue
		}
		upper := strings.ToUpper(strings.ReplaceAll(in.Name, " ", "_"))
		names["INPUT_"+upper] = true
		names["INPUT_"+strings.ReplaceAll(upper, "-", "_")] = true
		names["ATOMIC_DEPLOY_"+envName(in.Name)] = true
	}
	return names
}

// childEnv is the environment for the processes atomic-deploy starts on
// this machine (the build command, hooks of a deploy with no host, git):
// environ without the secret inputs' variables. npm ci or composer install
// run scripts of every dependency, and a build that writes its environment
// into a file would ship it with the release. Everything else is kept, so
// builds that need PATH, HOME, CI or their own tokens still work.
func childEnv(environ []string) []string {
	secret := secretEnvNames()
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		k, _, ok := strings.Cut(kv, "=")
		if ok && !secret[k] {
			out = append(out, kv)
		}
	}
	return out
}

// hideSecretEnv blanks the values of the secret inputs' variables in the
// environment block the kernel keeps for this process: every child could
// otherwise read them from /proc/<our pid>/environ (it is the same user),
// whatever environment it was given. The program's own copy, read at
// start, is not touched. Linux only; elsewhere it does nothing.
func hideSecretEnv() error {
	// By pid, not /proc/self: Docker's AppArmor profile refuses writes
	// below /proc/<anything but a number>.
	proc := fmt.Sprintf("/proc/%d", os.Getpid())
	stat, err := os.ReadFile(proc + "/stat")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	start, end, err := environBounds(stat)
	if err != nil {
		return err
	}
	mem, err := os.OpenFile(proc+"/mem", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer mem.Close()
	block := make([]byte, end-start)
	if _, err := mem.ReadAt(block, start); err != nil {
		return fmt.Errorf("read the environment block: %w", err)
	}
	secret := secretEnvNames()
	changed := false
	for off := 0; off < len(block); {
		n := bytes.IndexByte(block[off:], 0)
		if n < 0 {
			n = len(block) - off
		}
		kv := block[off : off+n]
		if k, v, ok := bytes.Cut(kv, []byte("=")); ok && secret[string(k)] && len(v) > 0 {
			clear(v)
			changed = true
		}
		off += n + 1
	}
	if !changed {
		return nil
	}
	if _, err := mem.WriteAt(block, start); err != nil {
		return fmt.Errorf("write the environment block: %w", err)
	}
	return nil
}

// environBounds reads env_start and env_end (fields 50 and 51, see
// proc(5)) from /proc/<pid>/stat. The command name (field 2) may hold
// spaces and parentheses, so fields are counted after its last ')'.
func environBounds(stat []byte) (start, end int64, err error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, errors.New("/proc/<pid>/stat: no command name")
	}
	fields := strings.Fields(string(stat[i+1:])) // field 3 onwards
	const envStart, envEnd = 50 - 3, 51 - 3
	if len(fields) <= envEnd {
		return 0, 0, errors.New("/proc/<pid>/stat: no env_start/env_end (Linux before 3.5)")
	}
	start, err1 := strconv.ParseInt(fields[envStart], 10, 64)
	end, err2 := strconv.ParseInt(fields[envEnd], 10, 64)
	if err1 != nil || err2 != nil || end < start || end-start > 1<<24 {
		return 0, 0, fmt.Errorf("/proc/<pid>/stat: bad env_start/env_end %q %q", fields[envStart], fields[envEnd])
	}
	return start, end, nil
}
