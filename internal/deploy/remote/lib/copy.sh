# Sourced into the scripts that copy files of a release (upload.sh, and
# holder.sh, which copies ahead); it defines one function and runs nothing.

# copy_listed FROM TO LIST [STOP]: private copies in TO of the files of
# FROM that LIST names (relative, NUL-terminated), with their directories:
# cp -p --reflink=auto, a reflink where the filesystem has them, so no two
# releases share an inode. cp --parents copies them in few processes, one
# per core at a time (a copy is mostly system calls, thousands per second
# per core; twice as fast on two cores). TO and LIST are absolute. Once
# the file STOP exists, no further process starts and the copy fails: the
# lock holder stops a copy made ahead that no upload will take.
copy_listed() {
	[ -s "$3" ] || return 0
	cores=$(nproc 2>/dev/null) || cores=2
	stop=${4:-}
	# Two of those processes may make one parent directory at once, and
	# one of them then fails ("cannot make directory: File exists"): the
	# list is copied again in one process, over what is there (-f), and
	# only what fails then is an error. A status of 255 stops xargs.
	# shellcheck disable=SC2016 # the inner sh expands them
	(cd "$1" && {
		xargs -0 -r -P "$cores" -n 1000 sh -c 'if [ -n "$1" ] && [ -e "$1" ]; then exit 255; fi; to=$2; shift 2; exec cp --parents -p --reflink=auto -t "$to" -- "$@"' copy "$stop" "$2" < "$3" 2>/dev/null ||
			{ { [ -z "$stop" ] || [ ! -e "$stop" ]; } && xargs -0 -r -n 1000 cp --parents -p -f --reflink=auto -t "$2" -- < "$3"; }
	})
}
