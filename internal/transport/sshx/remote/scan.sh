# atomic-deploy:scan ROOT — the listing of ROOT (list_tree, defined before
# this text), gzip-compressed where the server has gzip: 5,000 files list
# as ~600 kB raw, ~100 kB compressed. The first byte says which.
if command -v gzip >/dev/null 2>&1; then
	printf z
	list_tree "$1" | gzip -1
else
	printf p
	list_tree "$1"
fi
