package sshx

import (
	"embed"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// The commands this package runs itself where SFTP lacks an operation
// (remote/*.sh: constant text, values as positional parameters).
var (
	probeScript     = script("probe")
	scanScript      = transport.ListTree + script("scan")
	linkScript      = script("link")
	copyScript      = script("copy")
	renameScript    = script("rename")
	removeAllScript = script("remove-all")
	nowScript       = script("now")
	spareScript     = script("spare")
)

//go:embed remote/*.sh
var scripts embed.FS

func script(name string) string {
	text, err := scripts.ReadFile("remote/" + name + ".sh")
	if err != nil {
		panic(err) // a file of this package is missing: a build mistake
	}
	return string(text)
}

// command is one of this package's scripts with its arguments.
func command(name, text string, args ...string) transport.Command {
	return transport.Command{Name: name, Script: text, Args: args}
}
