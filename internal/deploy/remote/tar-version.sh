# atomic-deploy:tar-version — the first line of tar --version: the upload
# stream needs GNU tar (hard links relative to -C, PAX headers).
tar --version 2>/dev/null | head -n 1
