# atomic-deploy:end-holder PID META — ends a lock holder whose deploy is
# gone (its heartbeat stopped; no FIN reached sshd), so the kernel frees the
# lock. Its copy made ahead, if one runs, holds the lock's descriptor too:
# it is told to stop first (holder.sh's copy_ahead). Where /proc tells, a
# PID that is no longer a holder's (its number taken by another process
# since) is left alone.
if [ -d /proc/self ] && ! grep -qsF atomic-deploy:holder "/proc/$1/cmdline"; then
	exit 0
fi
if [ -d "$2" ]; then touch -- "$2/.ahead-$1.stop"; fi
exec kill -9 "$1"
