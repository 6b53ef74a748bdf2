// Package deploy puts a release on one or many hosts and switches them to
// it, written once against transport.Transport (this machine, or SSH and
// SFTP).
//
// # The house
//
// Fleet functions (fleet_*.go: Deploy, Rollback, Unlock, ListReleases,
// PlanAll) run the steps of a Host (host.go) on every target: connect and
// Open, Prepare, Activate, AfterActivate, Finish; Revert, Abort and Close
// when something fails. One file a step:
//
//	open.go      take the lock, learn what the server can do, read the root
//	root.go      what Open read, from the holder's printout or request by request
//	prepare.go   the order of Prepare's steps
//	plan.go      MakePlan: which files are sent and which reused (pure)
//	upload*.go   the two uploaders: one tar stream, or pipelined SFTP
//	shared.go    shared-dirs and shared-files, seeded on the first deploy
//	manifest.go  the finished release's manifest, with each file's server mtime
//	writable.go, hooks.go, protect.go   what runs in the release
//	switch.go    the rename of current; the switch made by the upload's or the last hook's command
//	finish.go    success, prune, unlock; Abort
//	rollback.go  Revert, and rollbacks to a chosen release
//	lock.go      the lock, of two kinds: sessionlock.go (flock), lease.go (SFTP)
//	layout.go    every path of a deploy root, and the name of every file in it
//	remote/      every shell script a server runs, with its exit statuses
//
// A Host's state has names: serverCaps (what the server can do), rootState
// (what is on it), releaseState (notCreated, created, maybeLive, live,
// recorded: what this run has done to its release, which Abort, Revert and
// Finish act on).
//
// # The round trips of one deploy
//
// On a server with a shell, one host, nothing to run before the switch:
//
//  1. connect: TCP, SSH handshake and authentication; SFTP starts behind it;
//  2. remote/holder.sh: checks current, creates the layout, takes flock(2),
//     and prints the state of the root (the snapshot); meanwhile the
//     transport warms a session for the upload;
//  3. remote/upload.sh over the warm session: the release as one gzip tar
//     stream, extracted by GNU tar; it logs the release as started, rebuilds
//     the manifest from a delta, seals the release, renames the new link
//     over current (mv -T) once the lock is known to be ours, and logs the
//     success (on a fleet, and for mode: prepare, it seals and stops there);
//  4. the holder's input ends; it prunes old releases (waited for only when
//     there are some) and the kernel drops the lock.
//
// Shared paths already seeded come as links in 3's stream, and 3 makes
// writable-dirs writable: neither costs a round trip of its own (a shared
// path seeded by this deploy is linked over SFTP after 3, and writable-dirs
// then made writable by a command of their own). Hooks put their steps
// between 3 and the switch (the last hook's command seals the release: the
// hook runs in it). On one host, the command of the last hook before it
// (before-activate-once, else before-activate) then switches and logs the
// success as the upload's does in 3 (switch_now, remote/lib/finish.sh); a
// deploy that ends such a command closes its input and waits for its
// answer, so that whether it switched is known. Otherwise the switch is
// one rename of a link made in advance (SFTP's posix-rename, or mv -T):
// every host of a fleet switches within about one round trip. Where the
// server has no shell, Open takes a lease over SFTP and the upload is
// pipelined SFTP requests.
//
// # Wire formats
//
// holder.sh prints "locked <pid>\n", then the snapshot (parseSnapshot):
//
//	S  L<target>\0 | N\0   <tar --version>\0 <cp --version>\0   [01]\0 (awk, sha256sum)
//	   <release>\0 ... \0   [01df]...\0 (what each shared path is)
//	   log <size>|-|!\n <gzip>   [manifest, seal <size>|-|!|=\n <gzip>   scan <size>|-|=\n <gzip>
//	   [shape <size>|-\n <gzip> (deploy) | <next link>\0 (activate)]]
//	   E\n
//
// ("-" absent, "!" unreadable, "=" the listing is byte for byte the seal
// and the seal is not sent: a deploy gets the seal's shape, alike on alike
// servers, instead; activate needs neither, and the holder made the
// switch's link, named last; "P\n" instead: no gzip, no snapshot). The
// scan section is list_tree's output (transport/find.sh): eight
// NUL-terminated fields a file (path, type, mode, size, mtime, inode,
// links, ctime), then an empty field and find's status. The shape is
// "type/mode/size/mtime/path\0" a file, sorted (transport.ShapeFormat).
//
// The holder's input, when the deploy lets go: records for the releases
// log (JSON lines), "--prune--", the ids of old releases to delete, one a
// line, "--end--". A tail without its end is not acted on.
//
// upload.sh's input is a gzip tar stream: releases/<id> and everything in
// it (reused files as hard links to the live release), then, by absolute
// name, the manifest or its delta, and the new current link. A manifest
// delta (manifestdelta.go) is "= <sha256>" then "c N" (copy N lines of the
// live manifest), "s N" (skip N), "a LINE" (add LINE).
//
// hook.sh's input is the script, up to a line holding a random end marker:
// the exports of its environment, then the user's text. The rest of the
// input stays open until the hook ends; when it closes early, the hook's
// process group is ended.
//
// The releases log (releaselog.go) is JSON lines, one Record each, the
// newest line for an id winning; manifests are gzip'd JSON lines
// (internal/release), one entry a file, with each file's server mtime.
package deploy
