#!/usr/bin/env bash
# Scale benchmark (issue 15): mode activate over 100 real sshd on 127.0.0.1
# with a 5,000-file release prepared on every host (switch spread, the
# client's wall time, CPU and peak RSS, its CPU per extra host for activate
# and for a deploy at 1, 20 and 100 hosts), then the time from the start of
# mode activate to live on 1 host and on 9 at ~20 ms RTT (bench/delayproxy
# in front of every sshd) against the connection time + 3 round trips.
# Every run is a client process of its own, as a job's would be. Prints a
# Markdown report and writes it to bench/out/scale-<timestamp>.md. The
# benchmarks are BenchmarkActivate and BenchmarkTimeToLive in
# bench/fleetbench.
#
# Knobs: FLEET_HOSTS (default 100), FLEET_RUNS (default 3 for the scale
# runs), FLEET_CONCURRENCY (default 10), FLEET_PROFILE (a directory for CPU
# profiles of the 100-host client runs), SCALE_TTL_HOSTS (default 9), SCALE_TTL_RTTS (ms, default 20),
# SCALE_TTL_RUNS (default 5), SCALE_PARTS ("activate ttl", the default, or
# either; "storm" adds BenchmarkRenameStorm: the renames alone over idle and
# just-used connections, STORM_REPS), BENCH_NICE (default -10).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${BENCH_OUT:-bench/out}

log() { printf '[scale %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# shellcheck source=bench/gobench_lib.sh
. bench/gobench_lib.sh
gobench_start scale
# 100 sshd, each connection a few descriptors and processes.
ulimit -n 65536 2>/dev/null || true
go test -c -o "$W/fleetbench.test" ./bench/fleetbench/

HOSTS=${FLEET_HOSTS:-100}
PARTS=${SCALE_PARTS:-activate ttl}
export ATOMIC_DEPLOY_REQUIRE_SSHD=1 FLEET_PROXY_BIN=$W/delayproxy

# bench NAME REPORT ENV...: runs benchmark NAME with the environment given,
# its report written to REPORT.
bench() {
	local name=$1 report=$2
	shift 2
	if ! env "$@" FLEET_REPORT="$report" "$W/fleetbench.test" -test.run '^$' -test.bench "^$name\$" \
		-test.benchtime 1x -test.timeout 60m >"$W/$name.log" 2>&1 || [[ ! -s $report ]]; then
		cat "$W/$name.log" >&2
		log "$name failed"
		exit 1
	fi
	grep -E '^Benchmark' "$W/$name.log" >&2 || true
}

start=$SECONDS
if [[ " $PARTS " == *" activate "* ]]; then
	log "activate over $HOSTS hosts, ${FLEET_RUNS:-3} runs of each kind"
	bench BenchmarkActivate "$W/activate.md" FLEET_HOSTS="$HOSTS" FLEET_RUNS="${FLEET_RUNS:-3}"
fi
if [[ " $PARTS " == *" ttl "* ]]; then
	log "time to live on 1 and ${SCALE_TTL_HOSTS:-9} hosts at ${SCALE_TTL_RTTS:-20} ms"
	bench BenchmarkTimeToLive "$W/ttl.md" FLEET_HOSTS="${SCALE_TTL_HOSTS:-9}" FLEET_RTTS="${SCALE_TTL_RTTS:-20}" \
		FLEET_RUNS="${SCALE_TTL_RUNS:-5}"
fi

if [[ " $PARTS " == *" storm "* ]]; then
	log "renames alone on $HOSTS hosts, ${STORM_REPS:-3} repetitions"
	bench BenchmarkRenameStorm "$W/storm.md" FLEET_HOSTS="$HOSTS" STORM_REPS="${STORM_REPS:-3}"
fi

ts=$(date +%Y%m%d-%H%M%S)
out=$OUT_DIR/scale-$ts.md
{
	echo "## Scale: mode activate over $HOSTS hosts, and the time to live (bench/scale.sh)"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git describe --always --dirty 2>/dev/null || echo unknown)," \
		"$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(/usr/sbin/sshd -V 2>&1 | head -1 | cut -d, -f1)," \
		"$(go env GOVERSION). Took $((SECONDS - start)) s."
	if [[ -s $W/activate.md ]]; then
		echo
		echo "### Activate at scale"
		echo
		cat "$W/activate.md"
	fi
	if [[ -s $W/ttl.md ]]; then
		echo
		echo "### Time to live"
		echo
		cat "$W/ttl.md"
	fi
	if [[ -s $W/storm.md ]]; then
		echo
		echo "### The renames alone"
		echo
		cat "$W/storm.md"
	fi
} | tee "$out"
log "written to $out"
