# atomic-deploy:copy OLD NEW — NEW as a private copy of OLD (same content and
# permission bits, a new inode), for servers without SFTP's copy-data: GNU cp,
# which shares the blocks where the filesystem can. NEW is first created
# empty with noclobber (O_EXCL), so an existing NEW exits 17 (reported as
# fs.ErrExist) and is never written; a missing OLD or directory exits 2
# (fs.ErrNotExist); a failed copy leaves no NEW behind.
set -C
if [ -e "$2" ] || [ -h "$2" ]; then exit 17; fi
if [ ! -e "$1" ] || [ ! -d "${2%/*}/" ]; then exit 2; fi
if [ ! -f "$1" ]; then
	echo "$1 is not a regular file" >&2
	exit 1
fi
if ! true >"$2"; then
	if [ -e "$2" ] || [ -h "$2" ]; then exit 17; fi
	exit 1
fi
cp --reflink=auto --preserve=mode -- "$1" "$2" && exit 0
status=$?
rm -f -- "$2"
exit "$status"
