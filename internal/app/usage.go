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
  atomic-deploy [command] [--option value]...

COMMANDS
  deploy     upload a new release, run hooks, switch current to it (default)
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
		def := ""
		if in.Default != "" {
			def = fmt.Sprintf(" (default %q)", in.Default)
		}
		fmt.Fprintf(&b, "  --%-26s %s%s\n", in.Name, in.Description, def)
	}
	b.WriteString(`
EXAMPLES
  atomic-deploy --source ./build --path /tmp/site
  atomic-deploy --host deploy@web1 --path /var/www/app \
      --private-key "$(cat ~/.ssh/id_ed25519)" --known-hosts "$(ssh-keyscan web1)"
  atomic-deploy rollback --path /tmp/site
`)
	return b.String()
}
