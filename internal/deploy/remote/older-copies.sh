# atomic-deploy:older-copies RELEASES NEW INODE... — prints "<inode> <path>\0"
# for every file of a release other than NEW (a path in RELEASES) that
# holds one of the inodes: the older copies of files a hook changed in
# place. Releases are compared as strings, never as patterns, whatever
# characters the deploy root's path holds.
releases=$1 new=$2
shift 2
n=$#
for inode; do
	set -- "$@" -o -inum "$inode"
done
shift "$n"
shift # the first -o
for dir in "$releases"/* "$releases"/.[!.]* "$releases"/..?*; do
	if [ -d "$dir" ] && [ ! -L "$dir" ] && [ "$dir" != "$new" ]; then
		find "$dir" -type f \( "$@" \) -printf '%i %p\0' || exit
	fi
done
