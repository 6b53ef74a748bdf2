# atomic-deploy:holder — the deploy lock on a server with a shell, and the
# state of the deploy root, in one command: one round trip instead of a
# dozen requests.
#
# It checks that current is a symlink (or absent) and creates the layout,
# takes flock(2) on the lock file (waiting up to the given seconds), writes
# its identity with its pid, says "locked <pid>", prints the snapshot
# (below), and closes its output. Then it holds the lock until its
# input ends: the kernel drops the lock when this shell exits, so a deploy
# that dies or loses its connection leaves none behind. What arrived on
# the input (the tail: records for the releases log, a line --prune--, ids
# of old releases to delete, a line --end--) is acted on before it exits;
# a tail without its end (a connection lost while it was sent) is not.
# Then a job it leaves keeps the lock a while, so that the deploy need not
# wait for it: it deletes what the deploy left and the releases pruned, and
# makes the spare (after_deploy); the next holder stops the spare.
#
# Every way out before the lock prints one line first, so the client never
# waits on a session whose input it still holds open. The commands it
# starts inherit the lock's descriptor (the heartbeat's touch does not),
# so a waiter that ends this shell as orphaned may wait for them to
# finish. Its identity file is written by this shell only, on each
# heartbeat line (--beat--) the client sends before the tail.
#
# Arguments:
#  1 current             2 releases/          3 shared/
#  4 .atomic-deploy/     5 manifests/         6 the releases log
#  7 trash/              8 the lock file      9 the identity file
# 10 the prefix of temporary current links (a crashed switch leaves some)
# 11 the ending of a stored manifest's name (manifests/<id><ending>)
# 12 the ending of a release's seal's name (manifests/<id><ending>)
# 13 seconds to wait for the lock
# 14 the identity: JSON without its closing brace (the pid completes it)
# 15 0: the state only
#    1: also what a deploy plans with (the live manifest, seal and listing);
#    1:<id>:<sha256>: the same, but where the live release is <id> and its
#    stored manifest has that digest, the client holds it: "manifest ="
#    =<id>: whether prepared release <id> is still as sealed, which
#    activate checks, and where it is, the link its switch renames
#    (no manifest: without a seal, activate reads what it needs)
#    Each with a leading c where releases get private copies of reused
#    files: a deploy's holder offers upload.sh a copy of the live
#    release's files (the spare, or copy_ahead's), and every such holder
#    makes the spare once its deploy let go (after_deploy).
# 16 how many records the releases log keeps
# 17 the SFTP lease's owner file   18 seconds after which a lease is stale
# 19... shared paths, of which the snapshot says what each is (snapshot.go)
# Exit statuses: status.go.

current=$1 releases=$2 shared=$3 meta=$4 manifests=$5 log=$6 trash=$7 lockfile=$8 owner=$9
shift 9
templinks=$1 manifest_ending=$2 seal_ending=$3 wait=$4 identity=$5 plan=$6 keep_log=$7 lease=$8 lease_ttl=$9
shift 9
copies='' known='' ahead='' copying='' tar_version='' cp_version=''
case $plan in c*) copies=1 plan=${plan#c} ;; esac
case $plan in 1:*) known=${plan#1:} plan=1 ;; esac
if [ -n "$copies" ] && [ "$plan" = 1 ]; then ahead=$meta/.ahead-$$; fi
spare=$meta/.spare spare_gone=$meta/.spare-gone

command -v flock >/dev/null 2>&1 || { echo noflock; exit 69; }
if [ -e "$current" ] && [ ! -L "$current" ]; then echo notlink; exit 65; fi
# Every process started before the snapshot is time to live (activate):
# the tests of this script and the next ones are builtins, for that.
if [ ! -d "$releases" ] || [ ! -d "$shared" ] || [ ! -d "$manifests" ]; then
	mkdir -p "$releases" "$shared" "$manifests" "$meta" || { echo error; exit 1; }
fi
exec 9>>"$lockfile" || { echo error; exit 1; }
# A holder whose deploy let go may still hold the lock while it makes the
# spare (after_deploy): told to stop each second, it lets go within a batch.
waited=0
until flock -n 9; do
	[ "$waited" -lt "$wait" ] || { echo busy; exit 75; }
	touch "$spare.stop"
	if flock -w 1 9; then break; fi
	waited=$((waited + 1))
done
printf '%s,"pid":%s}' "$identity" "$$" > "$owner.tmp" && mv -f "$owner.tmp" "$owner"
# A lease, taken over SFTP by a deploy that could not see this server's
# shell, is a lock too. Each kind writes its own mark first and then looks
# for the other's (lease.go does the same), so two deploys never both go on.
if [ -f "$lease" ] && [ $(($(date +%s) - $(stat -c %Y "$lease" 2>/dev/null || echo 0))) -le "$lease_ttl" ]; then
	rm -f "$owner"
	echo busy
	exit 75
fi
# snapshot [SHARED...] prints the state of the deploy root as the lock
# holder sees it, in the format parseSnapshot reads (snapshot.go): where
# current points, the first lines of tar --version and cp --version
# (empty for activate), whether awk and sha256sum are there, the release
# directories, what each shared path is (0 absent, d a directory, f a
# file, 1 anything else, a link to either too), the releases log and, with
# plan=1, the live release's stored manifest and seal and a listing of its
# files (list_tree); with plan=<id>, the same of release <id>. A listing
# byte for byte its seal is sent as "=". Then a deploy needs only the
# seal's shape (lib/finish.sh), which is alike on alike servers and sent
# instead of the seal where there is one; activate needs neither, only the
# link for the switch, made here (a round trip less). Binary sections are
# written to files next to the lock first, so their size is known before
# they are sent. It also removes temporary current links a crashed switch
# left.
snapshot() {
	tmp=$meta/.snapshot-$$
	for f in "$meta"/.snapshot-* "$meta"/.ahead-*; do
		# of a holder killed mid-snapshot or before it ended: none runs now
		if [ -e "$f" ]; then
			rm -rf "$meta"/.snapshot-* "$meta"/.ahead-*
			break
		fi
	done
	if ! command -v gzip >/dev/null 2>&1; then
		printf 'P\n'
		return
	fi
	# The release to compare with its seal: the live one (plan=1), only
	# where current is written as a deploy writes it, or prepared release
	# <id>. Its walk starts as soon as the release is known, on another
	# core, while the rest is gathered: it is most of what an activate
	# waits for here, so a prepared release's starts before current is
	# read.
	id='' dir='' walking=''
	case $plan in
	=?*)
		id=${plan#=} dir=$releases/${plan#=}
		case $id in */* | . | ..) id= ;; esac
		start_walk
		;;
	esac
	printf S
	target=''
	if [ -L "$current" ]; then
		target=$(readlink "$current")
		printf 'L%s\0' "$target"
	else
		printf 'N\0'
	fi
	if [ "$plan" = 1 ]; then
		dir=$current
		case $target in
		releases/*/*) ;;
		releases/?*) id=${target#releases/} ;;
		esac
		start_walk
	fi
	case $plan in
	=*) printf '\0\0' ;; # activate uploads nothing: no tools to know
	*)
		tar_version=$(tar --version 2>/dev/null | head -n 1) cp_version=$(cp --version 2>/dev/null | head -n 1)
		printf '%s\0' "$tar_version" "$cp_version"
		# Only a tar stream takes a copy made ahead (upload_tar.go).
		case "$tar_version $cp_version" in *"GNU tar"*"GNU coreutils"*) ;; *) ahead='' ;; esac
		;;
	esac
	if command -v awk >/dev/null 2>&1 && command -v sha256sum >/dev/null 2>&1; then printf '1\0'; else printf '0\0'; fi
	for d in "$releases"/* "$releases"/.[!.]* "$releases"/..?*; do
		if [ -d "$d" ] && [ ! -L "$d" ]; then printf '%s\0' "${d##*/}"; fi
	done
	printf '\0'
	for p in "$@"; do
		if [ -L "$shared/$p" ]; then
			printf 1
		elif [ -d "$shared/$p" ]; then
			printf d
		elif [ -f "$shared/$p" ]; then
			printf f
		elif [ -e "$shared/$p" ]; then
			printf 1
		else
			printf 0
		fi
	done
	printf '\0'
	for f in "$templinks"*; do
		if [ -L "$f" ]; then rm -f "$f"; fi
	done
	if [ ! -e "$log" ]; then
		printf 'log -\n'
	elif command exec 8< "$log"; then
		# One gzip member, which ends itself: no size to learn first (wc)
		# and no file to send it from (cat), two processes fewer.
		printf 'log z\n'
		gzip -1 <&8
		command exec 8<&-
	else
		printf 'log !\n'
	fi
	if [ -n "$dir" ]; then
		seal=$manifests/$id$seal_ending listed='' same=''
		# The spare, where it is a copy of this release as sealed; else a
		# copy begun at once, on the other cores, while the release is
		# checked against its seal; locked before the end is printed, so
		# the upload that follows finds it locked until the copy is done.
		# Started as a subshell: a function run in the background with
		# redirections keeps copies of this shell's descriptors (dash), and
		# with them the session, open until it ends.
		if [ -n "$ahead" ] && [ -n "$id" ] && [ -f "$manifests/$id$manifest_ending" ] && [ -f "$seal" ]; then
			if take_spare "$id"; then
				copying=spare
			elif touch "$ahead.lock" && command exec 7>> "$ahead.lock" && flock -n 7; then
				(
					exec < /dev/null > /dev/null 2>&1
					copy_ahead "$manifests/$id$manifest_ending" "$seal" "$releases/$id" "$ahead"
				) &
				copying=$!
			fi
		fi
		if [ -n "$ahead" ] && [ -z "$copying" ]; then rm -f "$ahead.lock"; fi
		command exec 7>&-
		# Activate's link for the switch, made while the walk runs (a
		# process less after it), and removed below if the release is not
		# as sealed.
		next=''
		if [ "$plan" != 1 ] && [ -n "$walking" ]; then
			next=$templinks$$
			ln -s -- "releases/$id" "$next" || next=''
		fi
		if [ -n "$walking" ] && wait "$walking"; then
			listed=1
			if [ -f "$seal" ] && gzip -dc < "$seal" | cmp -s - "$tmp.list"; then same=1; fi
		fi
		if [ -z "$id" ] || [ ! -e "$manifests/$id$manifest_ending" ]; then
			printf 'manifest -\n'
		elif [ "$plan" != 1 ]; then
			printf 'manifest -\n' # activate checks by the seal
		elif [ "${known%:*}" = "$id" ] && sum=$(sha256sum < "$manifests/$id$manifest_ending") && [ "$id:${sum%% *}" = "$known" ]; then
			printf 'manifest =\n'
		elif cp "$manifests/$id$manifest_ending" "$tmp.man"; then
			emit manifest "$tmp.man" '!'
		else
			printf 'manifest !\n'
		fi
		if [ -z "$id" ] || [ ! -e "$seal" ]; then
			printf 'seal -\n'
		elif [ -n "$same" ] && { [ "$plan" != 1 ] || [ -f "$seal.shape" ]; }; then
			printf 'seal =\n'
		elif cp "$seal" "$tmp.seal"; then
			emit seal "$tmp.seal" '!'
		else
			printf 'seal !\n'
		fi
		if [ -n "$same" ]; then
			printf 'scan =\n'
		elif [ -n "$listed" ] && gzip -1 < "$tmp.list" > "$tmp.scan"; then
			emit scan "$tmp.scan" -
		else
			printf 'scan -\n'
		fi
		if [ "$plan" = 1 ]; then
			if [ -n "$same" ] && [ -f "$seal.shape" ]; then
				emit shape "$seal.shape" -
			else
				printf 'shape -\n'
			fi
		else
			# The client removes it if it does not switch; a holder
			# that finds it left removes it above.
			if [ -n "$next" ] && [ -z "$same" ]; then
				rm -f "$next"
				next=''
			fi
			printf '%s\0' "$next"
		fi
	fi
	# A copy by the seal's list is what the upload reuses only where the
	# release is still as sealed: else it is stopped, and its lock removed
	# so that the upload does not wait for it.
	if [ -n "$copying" ] && [ -z "$same" ]; then
		touch "$ahead.stop"
		rm -f "$ahead.lock"
	fi
	printf 'E\n'
	# After the end, which the client waits for.
	rm -f "$tmp.man" "$tmp.seal" "$tmp.scan" "$tmp.list"
}

# start_walk lists release $id at $dir into the snapshot's $tmp.list in
# the background (walking: its pid), where there is such a release.
start_walk() {
	if [ -n "$id" ] && [ -d "$dir/" ]; then
		(list_tree "$dir" > "$tmp.list") &
		walking=$!
	fi
}

# manifest_files MANIFEST OUT: the regular files a release's MANIFEST
# lists, NUL-terminated and sorted, into OUT; not those of the few names
# that need escapes in JSON (upload.sh copies them). A plain pattern in
# the C locale: a fifth of the time of one with a group.
manifest_files() {
	gzip -dc < "$1" | LC_ALL=C sed -n '/^{"p":"[^"\\]*","t":"f"/{s/^{"p":"//;s/".*//;p;}' | tr '\n' '\000' | LC_ALL=C sort -z > "$2"
}

# copy_ahead MANIFEST SEAL LIVE COPY makes, while the client plans, the
# private copies upload.sh would make of the files it reuses
# (copy_listed): of the regular files that the SEAL of the live release
# LIVE lists and its MANIFEST lists too (so not what hooks added there,
# which is never reused), into COPY; COPY.files lists them. COPY.done says
# it is whole. It holds COPY.lock (descriptor 7) until it ends; upload.sh
# waits on it. COPY.stop stops it (snapshot's, where the release is no
# longer as sealed; this shell's end, or end-holder.sh's): it holds the
# lock's descriptor too.
copy_ahead() {
	manifest_files "$1" "$4.listed" &
	listing=$!
	gzip -dc < "$2" | LC_ALL=C sed -z -n '1~8h;2~8{/^f$/{x;p;};}' | LC_ALL=C sort -z > "$4.on-disk"
	on_disk=$?
	wait "$listing" && [ "$on_disk" = 0 ] &&
		LC_ALL=C comm -z -12 "$4.listed" "$4.on-disk" > "$4.files" && rm -f "$4.listed" "$4.on-disk" &&
		mkdir "$4" && copy_listed "$3" "$4" "$4.files" "$4.stop" && touch "$4.done"
}

# spare_id ID: what .spare.id says of a spare of release ID: the id and
# the digest of its seal (a release made again under the same id has
# another seal).
spare_id() {
	sum=$(sha256sum < "$manifests/$1$seal_ending") && printf '%s %s\n' "$1" "${sum%% *}"
}

# spare_is MADE: whether the spare is whole and what spare_id said MADE.
spare_is() {
	[ -e "$spare.done" ] && [ "$(cat "$spare.id" 2> /dev/null)" = "$1" ]
}

# take_spare ID makes the spare the copy made ahead, where it is whole and
# of release ID as now sealed, and drops it where it is not. Whether the
# upload may take it is decided as for any copy made ahead: only where the
# release is still as sealed, so no file changed since the seal was
# written, which the spare was copied after (a change moves a file's
# ctime for good).
take_spare() {
	if spare_is "$(spare_id "$1")" &&
		mv -T -- "$spare.files" "$ahead.files" && mv -T -- "$spare" "$ahead"; then
		rm -f "$spare".*
		touch "$ahead.done" "$ahead.lock"
		return 0
	fi
	drop_spare
	return 1
}

# drop_spare deletes the spare at once, before a copy is made in its
# place: on a nearly full disk the two would not fit together.
drop_spare() {
	rm -rf "$spare" "$spare".*
}

# after_deploy runs once the deploy let go, in the background, holding the
# lock: it deletes what the upload did not take and the trash (the
# releases pruned; what it cannot delete the next holder names), and, where
# releases get private copies, makes the spare: a copy of the live
# release's files, as copy_ahead makes them, which the next deploy takes
# instead of copying them while it waits (take_spare). A holder that
# waits for the lock stops it; what was made of it then is deleted once
# the lock is let go, so that the deploy waiting does not wait for that.
after_deploy() {
	if [ -n "$ahead" ]; then rm -rf "$ahead".*; fi
	# The trash, and a spare cut short whose deletion did not end (its
	# job was killed).
	for x in "$trash"/* "$spare_gone"-*; do
		if [ -e "$x" ]; then rm -rf "$x"; fi
	done
	gone=''
	if [ -n "$copies" ]; then make_spare; fi
	if [ -n "$gone" ]; then
		exec 9>&-
		rm -rf "$gone"
	fi
}

# make_spare copies the live release for the next deploy, where there is
# none yet and the upload could take it (a tar stream: GNU tar and cp).
make_spare() {
	target=$(readlink "$current") || return
	case $target in
	releases/*/*) return ;;
	releases/?*) id=${target#releases/} ;;
	*) return ;;
	esac
	[ -f "$manifests/$id$manifest_ending" ] && [ -f "$manifests/$id$seal_ending" ] || return
	case "$(tar --version 2> /dev/null | head -n 1) $(cp --version 2> /dev/null | head -n 1)" in
	*"GNU tar"*"GNU coreutils"*) ;;
	*) return ;;
	esac
	made=$(spare_id "$id") || return
	if spare_is "$made"; then return; fi
	drop_spare
	if printf '%s\n' "$made" > "$spare.id" &&
		copy_ahead "$manifests/$id$manifest_ending" "$manifests/$id$seal_ending" "$releases/$id" "$spare"; then
		return
	fi
	# Cut short (stopped, or the disk full): what was made is renamed out
	# of the way for after_deploy to delete (gone), and takes no room for
	# long.
	gone=$spare_gone-$$
	mv -T -- "$spare" "$gone" 2> /dev/null || gone=''
	drop_spare
}

# emit NAME FILE ABSENT: "NAME <size>" and the file, or "NAME ABSENT".
emit() {
	if [ -f "$2" ] && n=$(wc -c < "$2"); then
		printf '%s %s\n' "$1" "$n"
		cat "$2"
	else
		printf '%s %s\n' "$1" "$3"
	fi
}

echo "locked $$"
snapshot "$@" 2>/dev/null
exec >/dev/null

# Keeps the log, which uploads and this shell append to, to its last lines.
trim_log() {
	if [ "$(wc -l < "$log")" -gt "$keep_log" ]; then
		tail -n "$keep_log" "$log" > "$log.tmp" && mv -f "$log.tmp" "$log"
	fi
}

# Takes the releases the tail names out of releases/ into the trash, so
# each is either whole and listed or gone: one that cannot be deleted
# completely never stays half deleted where a rollback could switch to it.
# Every file of a release in manifests/ is named <id>.<something>
# (Layout.ReleaseFiles). The trash is emptied once the deploy let go
# (after_deploy), so that deleting thousands of files is not waited for.
prune() {
	sed -n '/^--prune--$/,$p' "$tail" | sed '1d;$d' | while IFS= read -r id; do
		if mkdir -p "$trash" && mv "$releases/$id" "$trash/$id-$$"; then
			rm -f "$manifests/$id".*
		else
			echo "could not remove old release $id; it stays as it is" >&2
		fi
	done
}

# left_in_trash names what the last holder could not delete from the trash:
# only then is anything left there when the lock is had.
left_in_trash() {
	for x in "$trash"/*; do
		if [ -e "$x" ]; then
			name=${x##*/}
			echo "old release ${name%-*} is out of releases/, but $x could not be deleted completely (the next deploy tries again)" >&2
		fi
	done
}

# Acts on the tail, if it arrived whole.
finish() {
	if [ "$(tail -n 1 "$tail")" != --end-- ]; then
		if [ -s "$tail" ]; then return 4; fi
		return 0
	fi
	# The records: every line before --prune-- ($q: sed's, not the shell's).
	# shellcheck disable=SC2016
	sed -n '/^--prune--$/q;$q;p' "$tail" >> "$log" || return 3
	trim_log
	left_in_trash
	prune
}

# The input: heartbeats while the deploy runs, then the tail. A heartbeat
# refreshes the time of the identity file, by which waiters judge the
# lock; only this shell, which holds the flock, writes that file, so a
# heartbeat that arrives late never lands on a later holder's identity.
tail=$owner.tail
while IFS= read -r line; do
	case $line in
	--beat--) touch "$owner" 9>&- ;;
	*) printf '%s\n' "$line" ;;
	esac
done > "$tail"
# A last line cut off without its newline (the input broke off).
if [ -n "$line" ]; then printf '%s' "$line" >> "$tail"; fi
finish
status=$?
# No upload switches from here on (switch_now looks for our token), though
# one may still be running where the deploy's connection broke.
rm -f "$owner"
if [ -n "$copying" ]; then
	# What upload.sh did not take (no upload came, or it failed first) is
	# stopped: its running batches end (a thousand files at most a core),
	# not the whole copy, which for a large release could take longer than
	# the deploy waits for this shell to end. It is claimed by a
	# rename before it is deleted (after_deploy): an upload that takes it
	# renames it too, and only one of the two renames can happen.
	touch "$ahead.stop"
	wait
	mv -T -- "$ahead" "$ahead.gone" 2> /dev/null
fi
rm -f "$tail"
(
	exec < /dev/null > /dev/null 2>&1
	after_deploy
) &
exit "$status"
