# atomic-deploy:rename OLD NEW — rename(2) of OLD over NEW, for servers
# without posix-rename@openssh.com: mv -T never moves OLD into a directory NEW.
exec mv -T -- "$1" "$2"
