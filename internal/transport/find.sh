# Sourced into the scripts that list a tree (sshx's scan, the deploy lock
# holder's snapshot, a release's seal); it defines one function and runs
# nothing.
#
# list_tree ROOT [SHAPE] prints everything below ROOT (followed if it is a
# link) with GNU find as NUL-terminated records of eight fields (FindFormat
# in findscan.go; names may hold any byte but NUL), then a trailer of an
# empty field and find's exit status: sh has no pipefail, and the listing
# is usually piped into gzip. ParseFind reads it. With SHAPE, the same walk
# also writes into that file, for the regular files, the fields that are
# alike on every server holding the same files (ShapeFormat: no inode, no
# change time), one record a file, unsorted; ParseShape reads it. Only
# regular files are reused, and a directory's mtime is the server's own
# (its entries were made there, at their own times).
list_tree() {
	if [ $# -gt 1 ]; then
		set -- "$1" -mindepth 1 -printf '%P\0%y\0%m\0%s\0%T@\0%i\0%n\0%C@\0' -type f -fprintf "$2" '%y/%m/%s/%T@/%P\0'
	else
		set -- "$1" -mindepth 1 -printf '%P\0%y\0%m\0%s\0%T@\0%i\0%n\0%C@\0'
	fi
	find -H "$@"
	printf '\0%s\0' "$?"
}
