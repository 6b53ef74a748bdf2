// Package remote holds the shell that a deploy runs on a server. Each
// script is a .sh file of this folder, embedded at build time: constant
// text, every value it works on a positional argument, shellcheck-clean
// and run by the tests under dash, bash and busybox sh. Nothing here puts
// a script together from values.
package remote

import (
	"embed"

	"github.com/atomic-deploy/atomic-deploy/internal/transport"
)

// Script is one script of this folder.
type Script struct {
	name, text string
}

// Command is the script with its arguments, ready for Transport.Exec.
func (s Script) Command(args ...string) transport.Command {
	return transport.Command{Name: s.name, Script: s.text, Args: args}
}

// Name is what the script is called in traces, tests and `ps`.
func (s Script) Name() string { return s.name }

// The scripts; the arguments each takes are listed at its top.
var (
	Holder    = load("holder", transport.ListTree, copying)                   // lock, state, prune (sessionlock.go)
	Upload    = load("upload", transport.ListTree, finish, copying, writable) // the tar stream, and what follows it
	Hook      = load("hook", transport.ListTree, finish)                      // before-activate, after-activate
	Seal      = load("seal", transport.ListTree, finish)                      // a release finished by no other command
	Writable  = load("writable", writable)                                    // writable-dirs, after an SFTP upload
	GNUTools  = load("gnu-tools")                                             // GNU tar and cp, or not?
	EndHolder = load("end-holder")                                            // a lock holder whose deploy is gone
)

//go:embed *.sh lib/*.sh
var files embed.FS

// finish defines what finishes a release (lib/finish.sh), copying how
// reused files are copied (lib/copy.sh), writable how writable-dirs are
// made writable (lib/writable.sh).
var (
	finish   = definitions("lib/finish.sh")
	copying  = definitions("lib/copy.sh")
	writable = definitions("lib/writable.sh")
)

func definitions(name string) string {
	text, err := files.ReadFile(name)
	if err != nil {
		panic(err) // a file of this folder is missing: a build mistake
	}
	return string(text)
}

// load reads name.sh, after the definitions it uses (shell that only
// defines functions, such as transport.ListTree).
func load(name string, definitions ...string) Script {
	text, err := files.ReadFile(name + ".sh")
	if err != nil {
		panic(err) // a file of this folder is missing: a build mistake
	}
	s := Script{name: name}
	for _, d := range definitions {
		s.text += d
	}
	s.text += string(text)
	return s
}
