#!/usr/bin/env bash
# make lint: gofmt, go vet, actionlint over the workflows (ours and the
# examples), shellcheck over scripts/ and .ci/ when it is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

actionlint_version=v1.7.12
status=0
say() { printf '==> %s\n' "$*"; }

say "gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  printf 'gofmt would change:\n%s\n' "$unformatted"
  status=1
fi

say "go vet ./..."
go vet ./... || status=1

say "actionlint"
actionlint=$(command -v actionlint || true)
if [ -z "$actionlint" ] || [ "$("$actionlint" -version 2>/dev/null | sed -n 1p)" != "$actionlint_version" ]; then
  # Installed into GOBIN, not added to go.mod.
  go install "github.com/rhysd/actionlint/cmd/actionlint@$actionlint_version"
  actionlint="$(go env GOPATH)/bin/actionlint"
  [ -z "$(go env GOBIN)" ] || actionlint="$(go env GOBIN)/actionlint"
fi
"$actionlint" .github/workflows/*.yml examples/workflows/*.yml || status=1

if command -v shellcheck >/dev/null 2>&1; then
  say "shellcheck"
  shellcheck scripts/*.sh .ci/run || status=1
  # What runs on servers is read as POSIX sh, whatever a file says.
  shellcheck -s sh internal/deploy/remote/*.sh internal/deploy/remote/lib/*.sh internal/transport/*.sh internal/transport/sshx/remote/*.sh internal/config/*.sh || status=1
else
  say "shellcheck not installed: skipped (apt-get install shellcheck)"
fi

if [ "$status" -eq 0 ]; then say "lint: clean"; else say "lint: problems above"; fi
exit "$status"
