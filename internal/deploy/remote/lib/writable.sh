# Sourced into the scripts that make writable-dirs writable (writable.sh,
# and upload.sh, which does it once the stream is in); it defines one
# function and runs nothing.

# make_writable [acl USER | chgrp GROUP] DIR... makes writable-dirs
# writable, recursively (writable-mode), creating those missing (with
# their parents).
#
# No mode (chmod): owner and group get read and write (ug+rwX).
# acl: USER (the web server's) and the deploy user get rwX in an access ACL
# on every directory and file, and in a default ACL on every directory, so
# what either of them creates later is writable by the other (Deployer's
# writable_mode acl). chgrp: the group becomes GROUP, with rwX (Deployer's
# chgrp). Both touch only what the deploy user owns: a file the web server
# made in a shared directory is the web server's, and setfacl or chgrp on it
# would fail (Deployer's most reported writable error). A DIR that is a
# symlink (a shared directory) is followed; symlinks inside are not.
make_writable() {
	mode='chmod' who=''
	case $1 in
	acl | chgrp)
		mode=$1 who=$2
		shift 2
		;;
	esac
	mkdir -p -- "$@" || return 1
	if [ "$mode" = chmod ]; then
		chmod -R ug+rwX -- "$@"
		return
	fi
	me=$(id -u) && name=$(id -un) || return 1
	if [ "$mode" = acl ]; then
		if ! command -v setfacl >/dev/null 2>&1; then
			echo "writable-mode acl needs setfacl on the server: apt-get install acl (Debian, Ubuntu), dnf install acl, apk add acl" >&2
			return 1
		fi
		if ! id -u "$who" >/dev/null 2>&1; then
			echo "writable-user $who: no such user on the server (the web server's user, e.g. www-data or nginx)" >&2
			return 1
		fi
		file="u:$who:rwX,u:$me:rwX"
		dir="$file,d:u:$who:rwX,d:u:$me:rwX"
		# setfacl exits with the status of its last file only (acl 2.3): a batch
		# failed when setfacl said anything. (The sh that find starts expands it.)
		# shellcheck disable=SC2016
		apply='out=$(setfacl -m "$0" "$@" 2>&1) && [ -z "$out" ] || { printf "%s\n" "$out" >&2; exit 1; }'
		find -H "$@" -user "$me" \( \
			-type d -exec sh -c "$apply" "$dir" {} + -o \
			-type f -exec sh -c "$apply" "$file" {} + \)
		return
	fi
	if [ "$me" != 0 ]; then
		case " $(id -G) $(id -Gn) " in
		*" $who "*) ;;
		*)
			echo "writable-mode chgrp: the deploy user $name is not in group $who, so it cannot give its files to that group (as root: usermod -aG $who $name; it applies from the next login)" >&2
			return 1
			;;
		esac
	fi
	find -H "$@" -user "$me" \( -type d -o -type f \) -exec chgrp "$who" {} + -exec chmod g+rwX {} +
}
