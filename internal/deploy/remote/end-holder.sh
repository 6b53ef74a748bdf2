# atomic-deploy:end-holder PID META LOCKFILE — ends a lock holder whose
# deploy is gone (its heartbeat stopped; no FIN reached sshd), so the kernel
# frees the lock. Its copy made ahead, if one runs, holds the lock's
# descriptor too: it is told to stop (holder.sh's copy_ahead), whether or
# not the holder still lives. Where /proc tells, a PID that does not hold
# LOCKFILE on descriptor 9, as the holder does (it ended, and its number
# may be another process's by now), is not killed.
if [ -d "$2" ]; then touch -- "$2/.ahead-$1.stop"; fi

# inode FILE: FILE's inode number, following links (ls -i: POSIX).
inode() {
	# shellcheck disable=SC2012 # only the number before the name is read
	ls -iLd -- "$1" 2>/dev/null | { read -r n _ && echo "$n"; }
}

if [ -d /proc/self ]; then
	held=$(inode "/proc/$1/fd/9")
	if [ -z "$held" ] || [ "$held" != "$(inode "$3")" ]; then
		exit 0
	fi
fi
exec kill -9 "$1"
