#!/usr/bin/env bash
# make demo: build the binary, release examples/hello twice to a local path
# (no server needed), and show the layout the second release left.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 2>&1 # the tool logs to stderr; keep it in order with the listings below

bin=${BIN:-bin/atomic-deploy}
root=$PWD/.demo/site

say() { printf '\n==> %s\n' "$*"; }

say "build $bin"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin" .

rm -rf "$root"
mkdir -p "$(dirname "$root")"
deploy() {
  "$bin" deploy --source examples/hello --path "$root" \
    --shared-dirs storage --after-activate 'sh bin-release.sh'
}

say "first deploy: every file is uploaded"
deploy
sleep 1 # release ids are UTC seconds; a second apart reads better
say "second deploy of the same source: files are reused from the live release"
deploy

say "ls -lA $root"
ls -lA "$root"
say "readlink $root/current"
readlink "$root/current"
say "$bin releases --path $root"
"$bin" releases --path "$root"
say "rollback with: $bin rollback --path $root"
