# Sourced into the scripts that copy files of a release (upload.sh, and
# holder.sh, which copies ahead); it defines functions and runs nothing.

# copy_listed FROM TO LIST [STOP]: private copies in TO of the files of
# FROM that LIST names (relative, NUL-terminated), with their directories:
# cp -p --reflink=auto, a reflink where the filesystem has them, so no two
# releases share an inode. cp --parents copies them in few processes, one
# per core at a time (a copy is mostly system calls, thousands per second
# per core; twice as fast on two cores). TO and LIST are absolute. Once
# the file STOP exists, no process copies any more and the copy fails: the
# lock holder stops a copy made ahead that no upload will take.
copy_listed() {
	[ -s "$3" ] || return 0
	cores=$(nproc 2>/dev/null) || cores=2
	# Two of those processes may make one parent directory at once, and
	# one of them then fails ("cannot make directory: File exists"): the
	# list is copied again in one process, over what is there (-f), and
	# only what fails then is an error.
	(cd "$1" && {
		copy_in "$cores" "$2" "$3" "${4:-}" -p 2>/dev/null ||
			copy_in 1 "$2" "$3" "${4:-}" -pf
	}) && ! { [ -n "${4:-}" ] && [ -e "$4" ]; }
}

# copy_in PROCESSES TO LIST STOP FLAGS: cp --parents FLAGS of LIST's files
# into TO, a thousand a process, PROCESSES at a time. A process that starts
# once STOP exists copies nothing and ends well: xargs stops launching only
# on a status of 255, and then leaves those still running behind.
copy_in() {
	# shellcheck disable=SC2016 # the inner sh expands them
	xargs -0 -r -P "$1" -n 1000 sh -c 'if [ -n "$1" ] && [ -e "$1" ]; then exit 0; fi; to=$2 flags=$3; shift 3; exec cp --parents "$flags" --reflink=auto -t "$to" -- "$@"' copy "$4" "$2" "$5" < "$3"
}
