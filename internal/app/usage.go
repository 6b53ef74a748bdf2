package app

import (
	"fmt"
	"strings"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
)

func usage() string {
	var b strings.Builder
	b.WriteString(`atomic-deploy — zero-downtime releases over SSH (or to a local path)

USAGE
  atomic-deploy [command] [--option value | --option=value]...
  atomic-deploy --version | --help

COMMANDS
  deploy     upload a new release, run hooks, switch current to it (default)
  prepare    upload a new release and run before-activate; switch nothing
  activate   switch to a prepared release (--release-id), with its checks
  rollback   switch current back to the previous release (or --release-id)
  unlock     remove a deploy lock left behind
  releases   list the releases on each host (* marks the live one)
  plan       show what a deploy would upload and reuse; changes nothing

LAYOUT ON THE SERVER
  <path>/releases/<id>/   one directory per release (id: UTC YYYYMMDDHHMMSS)
  <path>/shared/          files kept across releases (shared-dirs, shared-files)
  <path>/current          symlink to the live release, switched with rename(2)
  <path>/.atomic-deploy/  lock, releases log, manifests

OPTIONS (the same names as the GitHub Action's inputs)
`)
	for _, in := range config.Inputs {
		text := in.Description
		if in.Default != "" {
			text += fmt.Sprintf(" Default: %q.", in.Default)
		}
		for i, line := range wrap(text, 70) {
			name := ""
			if i == 0 {
				name = "--" + in.Name
			}
			fmt.Fprintf(&b, "  %-26s  %s\n", name, line)
		}
	}
	b.WriteString(`  --private-key-file FILE     read private-key from FILE (CLI only)
  --known-hosts-file FILE     read known-hosts from FILE (CLI only)
  --version                   print the version and exit

  A true/false option alone means true (--auto-rollback); say --name=false for false.

ENVIRONMENT
  ATOMIC_DEPLOY_<OPTION>      any option, e.g. ATOMIC_DEPLOY_PRIVATE_KEY, ATOMIC_DEPLOY_PATH;
                              the way to pass secrets without showing them in ps
  ATOMIC_DEPLOY_TRACE=1       log every remote operation (SSH command, SFTP request) with
                              its timing
  RUNNER_DEBUG=1              the same; the runner sets it when a job is re-run with debug
                              logging
  GITHUB_ACTIONS=true         with no arguments: read INPUT_* as the GitHub Action does

FILES
  atomic-deploy.yml           options as "name: value" (lists allowed), read from the working
                              directory unless --config-file names another; flags and the
                              environment win; secrets are refused in it

EXIT STATUS
  0  done   1  the deploy (or rollback) failed; current is on a complete release   2  bad input, nothing changed

EXAMPLES
  atomic-deploy --source ./build --path /tmp/site

  # The key from a file, the host key pinned by a known_hosts file that was
  # checked out of band (ssh-keyscan output compared with
  # ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on the server):
  atomic-deploy --host deploy@web1 --path /var/www/app \
      --private-key-file ~/.ssh/deploy_ed25519 --known-hosts-file deploy/known_hosts

  # The key from the environment (a CI secret), never on the command line:
  ATOMIC_DEPLOY_PRIVATE_KEY="$DEPLOY_KEY" atomic-deploy plan --host deploy@web1 \
      --path /var/www/app --known-hosts-file deploy/known_hosts

  atomic-deploy releases --path /tmp/site
  atomic-deploy rollback --path /tmp/site [--release-id 20261125231842]

  # Upload now, switch later (deployed-release-id names the prepared release):
  atomic-deploy prepare --source ./build --path /tmp/site
  atomic-deploy activate --path /tmp/site --release-id 20261125231842
`)
	return b.String()
}

// wrap breaks text into lines of at most width characters at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}
