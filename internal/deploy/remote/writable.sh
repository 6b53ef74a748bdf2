# atomic-deploy:writable [acl USER | chgrp GROUP] DIR... — makes
# writable-dirs writable after an upload that could not (one over SFTP):
# make_writable, lib/writable.sh.
make_writable "$@"
