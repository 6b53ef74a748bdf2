# atomic-deploy:remove-all PATH — PATH and everything below it.
exec rm -rf -- "$1"
