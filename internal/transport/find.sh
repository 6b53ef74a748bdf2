# Sourced into the scripts that list a tree (sshx's scan, the deploy lock
# holder's snapshot); it defines one function and runs nothing.
#
# list_tree ROOT prints everything below ROOT (followed if it is a link)
# with GNU find as NUL-terminated records of eight fields (FindFormat in
# findscan.go; names may hold any byte but NUL), then a trailer of an
# empty field and find's exit status: sh has no pipefail, and the listing
# is usually piped into gzip. ParseFind reads it.
list_tree() {
	find -H "$1" -mindepth 1 -printf '%P\0%y\0%m\0%s\0%T@\0%i\0%n\0%C@\0'
	printf '\0%s\0' "$?"
}
