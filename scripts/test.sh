#!/usr/bin/env bash
# make test: everything the test suite needs, from a fresh Debian 12 or
# Ubuntu 24.04 machine (the GitHub-hosted ubuntu-latest runner).
#
#   1. installs the distribution's packages the integration tests use (only
#      when one is missing: a prepared machine never touches apt) and makes
#      sshd's /run/sshd;
#   2. go vet ./...;
#   3. every fuzz target for a few seconds (scripts/fuzz.sh, FUZZTIME);
#   4. go test ./... with ATOMIC_DEPLOY_REQUIRE_SSHD=1, so a missing sshd
#      fails the run instead of skipping the SSH tests. The tests start their
#      own servers (sshd, nginx, php-fpm) on 127.0.0.1 and stop them.
#
# `scripts/test.sh --deps-only` does step 1 alone.
#
# Runs as root, as CI does (or through sudo for apt): as root the tests log
# in as a user they create, start sshd in private mount namespaces (unshare
# --mount, bind and tmpfs mounts) and run php-fpm as another user. Ends with
# one line:
#   test: N passed, N failed, N skipped
set -euo pipefail
cd "$(dirname "$0")/.."

# The same on Debian 12 and Ubuntu 24.04 (php-fpm is PHP 8.2 on one, 8.3 on
# the other; the tests find either). busybox and shellcheck: the remote
# scripts run under dash, bash and busybox sh in the tests, and shellcheck
# reads them.
packages=(openssh-server openssh-client rsync nginx php-fpm php-cli php-sqlite3
  wrk iproute2 util-linux acl git busybox shellcheck)
commands=(/usr/sbin/sshd ssh rsync nginx php wrk ip unshare setfacl git busybox shellcheck dash bash)

say() { printf '==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "need root (or sudo) to run: $*" >&2; return 1
  fi
}

distro=$(sed -n 's/^ID=//p' /etc/os-release 2>/dev/null | tr -d '"')
distro=${distro:-unknown}
case "$distro" in
  debian)
    # Laravel for test/laravel: Debian packages the framework (Laravel 8).
    packages+=(php-laravel-framework) ;;
  *)
    # Ubuntu has no php-laravel-framework; test/laravel skips and says why
    # (it fails instead only on Debian, where apt can install it).
    say "$distro: php-laravel-framework is packaged by Debian only; the Laravel tests (test/laravel) will be skipped" ;;
esac

install_packages() {
  local missing=() p c
  if ! command -v dpkg-query >/dev/null 2>&1; then
    say "not a Debian or Ubuntu system: skipping package installation (tests that need ${packages[*]} may fail)"
    return 0
  fi
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  for c in "${commands[@]}"; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    say "system packages: all present"
    return 0
  fi
  say "missing: ${missing[*]}; installing with apt"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get -o DPkg::Lock::Timeout=600 update -q
  as_root apt-get -o DPkg::Lock::Timeout=600 install -y "${packages[@]}"
}

install_packages
as_root mkdir -p /run/sshd # sshd refuses to start without its privilege separation directory
if [ "${1:-}" = --deps-only ]; then
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "go is not on PATH: install Go $(sed -n 's/^go //p' go.mod) or newer first (under sudo, keep PATH: sudo env \"PATH=\$PATH\" make test)" >&2
  exit 1
fi

say "go vet ./..."
go vet ./...

say "fuzz targets, ${FUZZTIME:-5s} each (scripts/fuzz.sh)"
FUZZTIME=${FUZZTIME:-5s} scripts/fuzz.sh

say "go test ./... (integration tests start their own servers on 127.0.0.1)"
# The report tool is built before the tests start so its compile output
# cannot mix with theirs.
report=$(mktemp -d)/testreport
trap 'rm -rf "$(dirname "$report")"' EXIT
go build -o "$report" ./scripts/testreport
set +e
ATOMIC_DEPLOY_REQUIRE_SSHD=1 go test -count=1 -timeout 15m -json ./... 2>&1 | "$report"
status=("${PIPESTATUS[@]}")
set -e
if [ "${status[0]}" -ne 0 ] || [ "${status[1]}" -ne 0 ]; then
  exit 1
fi
