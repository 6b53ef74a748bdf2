# Sourced into the scripts that finish a release (upload.sh when it
# switches, hook.sh after before-activate, seal.sh otherwise); it defines
# functions and runs nothing. list_tree comes before it.

# seal DIR FILE: the listing of release DIR (size, mtime, inode, ctime of
# every file, list_tree's format), gzip'd into FILE, once the release is
# finished and before it can go live. Its files are its own (no other
# release shares an inode), so from then on only a write into a file
# changes what the listing says of it: the next deploy reuses a file only
# where it is still as sealed.
#
# The same walk writes the seal's shape, FILE.shape: only the fields that
# are alike on servers holding the same files (no inode, no change time),
# sorted and gzip'd without a name or time, so that alike servers store the
# same bytes. A deploy whose live release is as sealed gets the shape
# instead of the seal (holder.sh), and the client decodes it once for all
# such servers. A release without a shape (it could not be made, or sealed
# before shapes) has its seal sent instead.
seal() {
	rm -f "$2.shape"
	list_tree "$1" "$2.shape.raw.tmp" | gzip -1 > "$2.tmp" && mv -f "$2.tmp" "$2" || return
	if LC_ALL=C sort -z -o "$2.shape.raw.tmp" "$2.shape.raw.tmp" && gzip -1 -n < "$2.shape.raw.tmp" > "$2.shape.tmp"; then
		mv -f "$2.shape.tmp" "$2.shape"
	fi
	rm -f "$2.shape.raw.tmp" "$2.shape.tmp"
}

# link_next LINK TARGET: the link the switch renames over current, made
# ahead so that the switch is one rename. Nothing when LINK is "".
link_next() {
	if [ -n "$1" ]; then ln -s -- "$2" "$1"; fi
}

# switch_now PID TOKEN OWNER NEXT CURRENT LOG SUCCESS: renames the link
# NEXT over CURRENT (mv -T, rename(2)) once the lock is known to be still
# ours: its holder PID lives and its identity file OWNER holds our TOKEN
# (a waiter that found us stale would have written its own). Then appends
# SUCCESS, the success record, to the releases LOG, unless it is "".
# Returns 87 when it did not switch, 88 when it switched but the record is
# not in the log (status.go).
switch_now() {
	{ kill -0 "$1" 2>/dev/null && grep -qsF -e "$2" "$3" && mv -T -- "$4" "$5"; } || return 87
	if [ -n "$7" ]; then
		printf '%s\n' "$7" >> "$6" || return 88
	fi
}
