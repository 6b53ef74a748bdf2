# atomic-deploy:upload — puts a release on the server from its standard
# input and finishes in the same command what can be finished there: one
# round trip for the whole upload.
#
# The "started" record goes into the releases log before anything else,
# so a crash at any later point leaves a release the next deploy knows to
# be unfinished. The input is a line with three byte counts, two gzip'd
# lists of files reused from the live release (same path, NUL-terminated;
# moved: from and to, NUL-terminated; a count of 0 is an empty list) and
# the manifest's delta (0 for none), then a tar stream in segments,
# gzip'd or raw as compressing pays (unframe;
# compress.go). Each reused file becomes a private copy (copy_listed,
# lib/copy.sh), so no two releases share an inode: made ahead by the lock
# holder (after the deploy before, or while the client planned:
# take_ahead), else here. The stream,
# buffered meanwhile, is then extracted in the deploy root, without -P:
# every name is relative (releases/<id>/..., the release's manifest or a
# delta against the live one's, the new current link), and GNU tar keeps
# its guard against names that climb out with .. or start with /. With a
# delta, the manifest is rebuilt here from the one at the head, and
# checked against the SHA-256 the delta carries; the stream brings the
# delta again, as its last file (below).
# With a lock holder's pid,
# the new link is renamed over current once the lock is known to be still
# ours, and the success record, if any, follows (switch_now,
# lib/finish.sh).
#
# Arguments:
#  1 the deploy root, where the stream is extracted
#  2 the releases log     3 the started record (one JSON line)
#  4 the manifest delta the stream brings, or "" for a whole manifest
#  5 the live release's manifest   6 the new release's manifest
#  7 the lock holder's pid, or "" when this command does not switch
#  8 the lock's token     9 the lock's identity file
# 10 the new current link 11 current
# 12 the success record, or "" when the log gets it later
# 13 the live release, reused files are copied from
# 14 the new release
# 15 where its seal goes (lib/finish.sh), when nothing runs in the release
#    after this command; or ""
# 16 the lock holder's copy of the live release made ahead (holder.sh's
#    copy_ahead), or "" where it was not asked for one
# 17... make_writable's arguments (lib/writable.sh), once the stream is
#    in: writable-dirs; absent where there are none
# Exit statuses: status.go; tar's or cp's own when they fail.

root=$1 log=$2 started=$3 delta=$4 live_manifest=$5 manifest=$6 holder=$7 token=$8 owner=$9
shift 9
next=$1 current=$2 success=$3 live=$4 new=$5 seal_file=$6 ahead=$7
shift 7

# The new manifest from the live one (standard input) and the delta
# (file $AD_DELTA): "c N" copies the next N lines, "s N" skips N,
# "a LINE" adds LINE; the first line, "= SUM", is for sha256sum.
rebuild='
BEGIN {
	d = ENVIRON["AD_DELTA"]
	while ((r = (getline op < d)) > 0) {
		c = substr(op, 1, 1)
		if (c == "=") continue
		if (c == "a") { print substr(op, 3); continue }
		if (c != "c" && c != "s") exit 1
		n = substr(op, 3) + 0
		while (n-- > 0) {
			if ((getline l) <= 0) exit 1
			if (c == "c") print l
		}
	}
	if (r < 0) exit 1
}'

# Compressing and checking run at once, at gzip -1: three times faster
# than -6 for ~9 % more in the next deploy's download. -n: no mtime in the
# header (GNU gzip takes it from a file on standard input), so hosts that
# rebuild one manifest store the same bytes.
# rebuild_manifest DELTA: the new manifest from the live one and DELTA,
# which it removes.
rebuild_manifest() {
	plain=$manifest.plain.tmp packed=$manifest.tmp
	if gzip -dc "$live_manifest" | AD_DELTA=$1 awk "$rebuild" > "$plain" && {
		gzip -1 -n < "$plain" > "$packed" &
		sum=$(sha256sum < "$plain")
		wait $! && [ "$sum" = "$(sed -n '1s/^= //p' "$1")  -" ]
	} && mv -f "$packed" "$manifest"; then
		rm -f "$plain" "$1"
	else
		rm -f "$plain" "$packed" "$1"
		exit 86
	fi
}

# unframe writes the tar stream from the input's segments (compress.go),
# each a line naming its kind, then its body: "z", gzip'd chunks; "r", raw
# chunks; "R", the rest of the input as it is. Read exactly: read(1) takes
# a byte at a time from a pipe, head -c no further than its count.
# Without its end, it says nothing more: what is missing shows after tar
# (the stream's last member).
unframe() {
	while IFS= read -r kind; do
		case $kind in
		z) unchunk | gzip -dc || return ;;
		r) unchunk || return ;;
		R) cat; return ;;
		*) return 1 ;;
		esac
	done
}

# unchunk copies chunks ("<n>" on a line, then n bytes) to its output
# until "0".
unchunk() {
	while IFS= read -r n && [ "$n" -gt 0 ] 2> /dev/null; do
		head -c "$n" || return
	done
}

# unpack SIZE FILE: SIZE bytes of gzip from the input, decompressed into
# FILE (read exactly: head -c reads no further).
unpack() {
	if [ "$1" -gt 0 ]; then head -c "$1" | gzip -dc > "$2"; else : > "$2"; fi
}

# take_ahead makes the lock holder's copy of the live release's files
# (holder.sh's copy_ahead) the new release: a rename, then the removal of
# the copies not reused at their own path, where copying the reused files
# here would take ~0.1 s per 5,000. It waits for the copy to end. What it
# leaves in the list of files reused at their own path is what the copy
# lacks. Fails, changing nothing, where there is no whole copy; once the
# copy is taken, a failure to trim it ends the upload.
take_ahead() {
	{ [ -n "$ahead" ] && [ -e "$ahead.lock" ] && flock -s -w 300 "$ahead.lock" true && [ -e "$ahead.done" ]; } 2> /dev/null || return 1
	sorted=$manifest.same.sorted.tmp trim=$manifest.trim.tmp
	LC_ALL=C sort -z -o "$sorted" "$manifest.same.tmp" && mv -T -- "$ahead" "$new" || return 1
	{ LC_ALL=C comm -z -23 "$ahead.files" "$sorted" > "$trim" &&
		LC_ALL=C comm -z -13 "$ahead.files" "$sorted" > "$manifest.same.tmp" &&
		(cd "$new" && xargs -0 -r rm -f -- < "$trim"); } || exit 1
	# The directories only removed files needed (the stream brings back
	# every directory of the release; a failure leaves one empty).
	(cd "$new" && sed -z -n 's|/[^/]*$||p' "$trim" | LC_ALL=C sort -z -u | xargs -0 -r rmdir -p --ignore-fail-on-non-empty -- 2> /dev/null)
	rm -f "$ahead".* "$sorted" "$trim"
}

# Copies the reused files from the lists at the head; those the holder
# did not copy ahead are copied from the live release.
copy_reused() {
	[ "$same" -gt 0 ] || [ "$moved" -gt 0 ] || return 0
	take_ahead || mkdir -p "$new" || return
	copy_listed "$live" "$new" "$manifest.same.tmp" && copy_moved
}

# Copies the files reused at another path, from and to pairs.
copy_moved() {
	# shellcheck disable=SC2016 # the inner sh expands them
	xargs -0 -r -n 2 sh -c 'to=$2/$4 && mkdir -p "${to%/*}" && exec cp -p --reflink=auto -- "$1/$3" "$to"' copy-moved "$live" "$new" < "$manifest.moved.tmp"
}

printf '%s\n' "$started" >> "$log" || exit 1
# The head, read exactly (head -c reads no further). The manifest is
# rebuilt on a core of its own: where this command seals the release, at
# the same time as the seal; else while the reused files are copied (or
# the copy made ahead is awaited). No exit leaves it running.
IFS=' ' read -r same moved early || exit 1
unpack "$same" "$manifest.same.tmp" && unpack "$moved" "$manifest.moved.tmp" || exit 1
rebuilding=
if [ -n "$delta" ]; then
	[ "${early:-0}" -gt 0 ] && head -c "$early" > "$delta.head" || exit 1
	trap 'wait' EXIT
	if [ -z "$seal_file" ]; then
		rebuild_manifest "$delta.head" &
		rebuilding=$!
	fi
fi
copy_reused
status=$?
rm -f "$manifest.same.tmp" "$manifest.moved.tmp" "$manifest.same.sorted.tmp" "$manifest.trim.tmp"
[ "$status" = 0 ] || exit "$status"
# The manifest (or its delta) is the stream's last file (only the new
# current link follows, which the switch then lacks): where it is missing
# after tar, the stream ended early (GNU tar takes an archive cut between
# two members for whole).
last=${delta:-$manifest}
rm -f "$last"
unframe | tar -x -p --no-same-owner -C "$root" -f - || exit
[ -f "$last" ] || exit 1
[ -z "$delta" ] || rm -f "$delta"
if [ $# -gt 0 ]; then
	make_writable "$@" || exit 85
fi
if [ -n "$delta" ] && [ -z "$rebuilding" ]; then
	rebuild_manifest "$delta.head" &
	rebuilding=$!
fi
sealed=0
if [ -n "$seal_file" ]; then
	seal "$new" "$seal_file" || sealed=$?
fi
if [ -n "$rebuilding" ]; then
	wait "$rebuilding" || exit
fi
[ "$sealed" = 0 ] || exit "$sealed"
if [ -n "$holder" ]; then
	switch_now "$holder" "$token" "$owner" "$next" "$current" "$log" "$success" || exit
fi
