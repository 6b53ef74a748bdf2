#!/usr/bin/env bash
# bench/rss.sh — peak RSS of atomic-deploy (/usr/bin/time -v) deploying a
# 100,000-file release of tiny files over SSH (unshaped link, tmpfs), first
# deploy and a no-op one; target < 100 MB. Writes bench/out/rss.md.
# BENCH_RSS_FILES changes the file count. Needs root (see run.sh).
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=bench/rss_lib.sh
. "$BENCH_DIR/rss_lib.sh"
bench_require
bench_setup cpu
[[ $AD_OK == 1 ]] || die "atomic-deploy does not build"
: >"$OUT_DIR/rss.log"
rss_measure cpu | tee "$OUT_DIR/rss.md"
