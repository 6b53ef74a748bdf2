# Sourced into the scripts that copy files of a release (upload.sh, and
# holder.sh, which copies ahead); it defines functions and runs nothing.

# copy_listed FROM TO LIST [STOP]: private copies in TO of the files of
# FROM that LIST names (relative, NUL-terminated), with their directories:
# cp -p --reflink=auto, a reflink where the filesystem has them, so no two
# releases share an inode. cp --parents copies them in few processes, one
# per core at a time (a copy is mostly system calls, thousands per second
# per core; twice as fast on two cores), in batches of equal size, so
# that no core copies alone at the end. TO and LIST are absolute. Once the
# file STOP exists, no process starts copying (or making directories) and
# the copy fails: the lock holder stops a copy made ahead that no upload
# will take.
copy_listed() {
	[ -s "$3" ] || return 0
	cores=$(nproc 2>/dev/null) || cores=2
	files=$(tr -cd '\000' < "$3" | wc -c) || return
	# Each core the same number of batches of at most a thousand files
	# (how often a process looks for STOP).
	rounds=$(((files + cores * 1000 - 1) / (cores * 1000)))
	batch=$(((files + cores * rounds - 1) / (cores * rounds)))
	# The directories first, in one process: two cp --parents making one
	# at once, one of them fails ("cannot make directory: File exists").
	# The tar stream that follows gives them their modes and times.
	stopped "${4:-}" && return 1
	xargs -0 -r dirname -z -- < "$3" | LC_ALL=C sort -z -u | (cd "$2" && xargs -0 -r mkdir -p --) &&
		(cd "$1" && copy_in "$cores" "$batch" "$2" "$3" "${4:-}") && ! stopped "${4:-}"
}

# stopped STOP: whether the file STOP ("" for none) exists.
stopped() {
	[ -n "$1" ] && [ -e "$1" ]
}

# copy_in PROCESSES BATCH TO LIST STOP: cp --parents -p of LIST's files
# into TO, BATCH a process, PROCESSES at a time. A process that starts
# once STOP exists copies nothing and ends well: xargs stops launching
# only on a status of 255, and then leaves those still running behind.
copy_in() {
	# shellcheck disable=SC2016 # the inner sh expands them
	xargs -0 -r -P "$1" -n "$2" sh -c 'if [ -n "$1" ] && [ -e "$1" ]; then exit 0; fi; to=$2; shift 2; exec cp --parents -p --reflink=auto -t "$to" -- "$@"' copy "$5" "$3" < "$4"
}
