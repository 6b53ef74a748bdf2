# Sourced into the scripts that finish a release (upload.sh when it
# switches, hook.sh after before-activate, seal.sh otherwise); it defines
# functions and runs nothing. list_tree comes before it.

# seal DIR FILE: the listing of release DIR (size, mtime, inode, ctime of
# every file, list_tree's format), gzip'd into FILE, once the release is
# finished and before it can go live. Its files are its own (no other
# release shares an inode), so from then on only a write into a file
# changes what the listing says of it: the next deploy reuses a file only
# where it is still as sealed.
seal() {
	list_tree "$1" | gzip -1 > "$2.tmp" && mv -f "$2.tmp" "$2"
}

# link_next LINK TARGET: the link the switch renames over current, made
# ahead so that the switch is one rename. Nothing when LINK is "".
link_next() {
	if [ -n "$1" ]; then ln -s -- "$2" "$1"; fi
}
