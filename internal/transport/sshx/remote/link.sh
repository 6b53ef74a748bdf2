# atomic-deploy:link OLD NEW — NEW as a hard link to OLD, for servers without
# the hardlink@openssh.com extension. ln given an existing directory would
# link inside it, so an existing NEW exits 17 (reported as fs.ErrExist).
if [ -e "$2" ] || [ -h "$2" ]; then exit 17; fi
exec ln -- "$1" "$2"
