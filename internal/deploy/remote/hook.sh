# atomic-deploy:hook DIR END [SEAL LINK TARGET [PID TOKEN OWNER NEXT
# CURRENT LOG SUCCESS]] — runs a hook (before-activate, after-activate ...)
# in DIR, so that neither its text nor its environment is in any process's
# arguments and it cannot outlive its deploy. With SEAL, the last step of a
# release before its switch (a before-activate that went well) also
# finishes it: seal and link_next (lib/finish.sh), no round trip of their
# own. With PID, the lock holder's, it then switches too, as the upload's
# command does when nothing comes between it and the switch (switch_now,
# lib/finish.sh): the exit status is then 87 or 88 only for what
# switch_now says, and a hook that exits with either is reported as 1.
#
# Standard input brings the script, up to a line holding only END (random,
# so no script holds it): the exports of its environment, then the user's
# text. It goes into a 0600 temporary file whose first line removes it as
# soon as the shell running it has it open. A script that arrived without
# END (the connection dropped) is not run.
#
# The rest of standard input stays open while the deploy waits: a watcher
# reads it, and when it ends early (the deploy died, the connection
# dropped) while the hook still runs, the watcher sends SIGTERM to the
# whole process group (sshd makes each session its own; the local
# transport too), which ends the hook and what it started, and SIGKILL ten
# seconds later. A hook that finished keeps whatever it left running in
# the background on purpose.

dir=$1 end=$2 seal_file=${3:-} link=${4:-} target=${5:-}
holder=${6:-} token=${7:-} owner=${8:-} next=${9:-} current=${10:-} log=${11:-} success=${12:-}
script=$(mktemp) || exit 1
whole=
while IFS= read -r line; do
	if [ "$line" = "$end" ]; then
		whole=1
		break
	fi
	printf '%s\n' "$line"
done > "$script"
if [ -z "$whole" ] || ! cd "$dir"; then
	rm -f "$script"
	exit 1
fi
exec 3<&0
/bin/sh -e "$script" </dev/null 3<&- &
hook=$!
{
	cat <&3
	if kill -0 "$hook"; then
		trap '' TERM
		kill -TERM 0
		sleep 10
		kill -KILL 0
	fi
} >/dev/null 2>&1 &
exec 3<&-
wait "$hook"
status=$?
# The script's first line removed it; a process less where it did.
[ ! -e "$script" ] || rm -f "$script"
if [ "$status" = 0 ] && [ -n "$seal_file" ]; then
	seal "$dir" "$seal_file" || status=$?
fi
if [ "$status" = 0 ]; then
	link_next "$link" "$target" || status=$?
fi
if [ -n "$holder" ]; then
	case $status in
	0) switch_now "$holder" "$token" "$owner" "$next" "$current" "$log" "$success" || status=$? ;;
	87 | 88) status=1 ;;
	esac
fi
exit "$status"
