# atomic-deploy:seal RELEASE SEAL LINK TARGET — finishes a release whose
# last step ran no command of its own: seals it (lib/finish.sh) and makes
# the link the switch renames ("" for LINK when it exists already).
seal "$1" "$2" && link_next "$3" "$4"
