# atomic-deploy:writable DIR... — opens writable-dirs to owner and group,
# recursively.
exec chmod -R ug+rwX -- "$@"
