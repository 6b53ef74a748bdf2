# atomic-deploy:probe — does the server run our commands, and with GNU find
# and GNU cp? (cp parses the options before --version, so only a cp that
# takes them prints gnu-cp.)
# A forced command (internal-sftp, a restricted shell) runs in its place, so
# only a shell that really ran this prints "ok".
echo ok
find / -maxdepth 0 -printf 'gnu-find\n' 2>/dev/null
cp --reflink=auto --preserve=mode --version >/dev/null 2>&1 && echo gnu-cp
exit 0
