#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a bounded time each.
#
#   FUZZTIME   time per target (default 10s; any -fuzztime value, e.g. 30s or 5000x)
#   FUZZ_MATCH only targets whose name matches this extended regexp (default: all)
#
# Targets are found by their `func FuzzXxx(f *testing.F)` declarations, so a
# new one is picked up without editing this file. Each runs as
#   go test -run '^$' -fuzz '^FuzzXxx$' -fuzztime $FUZZTIME ./pkg
# and prints one line with its execution count, then a total:
#   fuzz: FuzzQuoteRoundTrip ./internal/shell: 12345 execs in 10s (ok)
#   fuzz executions: 67890 over 4 targets, 0 failed
# A failing input is saved by Go under the package's testdata/fuzz/FuzzXxx/;
# commit it once fixed so it stays a regression test. Exits 1 if any target failed.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FUZZTIME:-10s}
match=${FUZZ_MATCH:-.}
total=0 ran=0 failed=0

mapfile -t targets < <(
  grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . |
    sed -E 's#^\./(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\($#./\1 \2#' |
    sort -u
)
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no fuzz targets found" >&2
  exit 1
fi

for t in "${targets[@]}"; do
  pkg=${t% *} name=${t#* }
  [[ $name =~ $match ]] || continue
  log=$(mktemp)
  status=ok
  for attempt in 1 2; do
    if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" >"$log" 2>&1; then
      status=ok
      break
    fi
    status=FAILED
    # Go's fuzzing engine sometimes ends a run that found nothing with
    # "context deadline exceeded" (a worker slow to stop at -fuzztime):
    # no input is saved, so run the target once more. A real failure
    # saves its input and names it; that one counts at once.
    if grep -q 'Failing input written' "$log" || ! grep -q 'context deadline exceeded' "$log"; then
      break
    fi
    [ "$attempt" = 1 ] && echo "fuzz: $name $pkg: the engine stopped with 'context deadline exceeded' and saved no input; running it again"
  done
  [ "$status" = ok ] || failed=$((failed + 1))
  execs=$(grep -Eo 'execs: [0-9]+' "$log" | tail -n 1 | grep -Eo '[0-9]+' || true)
  execs=${execs:-0}
  total=$((total + execs))
  ran=$((ran + 1))
  echo "fuzz: $name $pkg: $execs execs in $fuzztime ($status)"
  if [ "$status" != ok ]; then
    sed 's/^/    /' "$log"
  fi
  rm -f "$log"
done

echo "fuzz executions: $total over $ran targets, $failed failed"
[ "$failed" -eq 0 ]
