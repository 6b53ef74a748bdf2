# atomic-deploy:gnu-tools — the first lines of tar --version and cp --version:
# the upload stream needs GNU tar (PAX headers, names relative to -C), and
# copies reused files with GNU cp (--parents, --reflink).
tar --version 2>/dev/null | head -n 1
cp --version 2>/dev/null | head -n 1
