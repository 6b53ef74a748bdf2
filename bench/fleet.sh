#!/usr/bin/env bash
# Fleet benchmark: one deploy to 1 host vs to 20 hosts (20 real sshd on
# 127.0.0.1, each with its own deploy root) at round-trip times of ~0 ms
# (direct loopback), ~20 ms and ~50 ms (bench/delayproxy in front of every
# sshd), with the switch spread across the hosts and where the CPU went.
# All servers share this machine's cores with the client; the report shows
# how much of them they took. Prints a Markdown report and writes it to
# bench/out/fleet-<timestamp>.md. The benchmark itself is BenchmarkFleet
# in bench/fleetbench.
#
# Knobs: FLEET_RTTS (ms, default 0,20,50), FLEET_RUNS (timed deploys per
# cell, default 5), FLEET_HOSTS (default 20), BENCH_NICE (default -10).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${BENCH_OUT:-bench/out}

log() { printf '[fleet %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# shellcheck source=bench/gobench_lib.sh
. bench/gobench_lib.sh
gobench_start fleet

export FLEET_RTTS=${FLEET_RTTS:-0,20,50}
export FLEET_RUNS=${FLEET_RUNS:-${BENCH_RUNS:-5}}
export FLEET_HOSTS=${FLEET_HOSTS:-20}
export FLEET_PROXY_BIN=$W/delayproxy
export FLEET_REPORT=$W/report.md
log "RTTs ${FLEET_RTTS} ms, ${FLEET_HOSTS} hosts, ${FLEET_RUNS} runs per cell"
start=$SECONDS
if ! ATOMIC_DEPLOY_REQUIRE_SSHD=1 go test -run '^$' -bench '^BenchmarkFleet$' -benchtime 1x -timeout 20m \
	./bench/fleetbench/ >"$W/go.log" 2>&1 || [[ ! -s $FLEET_REPORT ]]; then
	cat "$W/go.log" >&2
	log "the benchmark failed"
	exit 1
fi
grep -E '^Benchmark' "$W/go.log" >&2 || true

ts=$(date +%Y%m%d-%H%M%S)
out=$OUT_DIR/fleet-$ts.md
{
	echo "## Fleet: 1 host vs ${FLEET_HOSTS} hosts (bench/fleet.sh)"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git describe --always --dirty 2>/dev/null || echo unknown)," \
		"$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(/usr/sbin/sshd -V 2>&1 | head -1 | cut -d, -f1)," \
		"$(go env GOVERSION). RTT ~0 ms dials each sshd directly (loopback); ~20/~50 ms go through one bench/delayproxy process" \
		"with a listener per sshd, adding RTT/2 to each direction (the TCP handshake to the proxy is local, so each" \
		"connection is one round trip shorter than on a real link). Took $((SECONDS - start)) s."
	echo
	cat "$FLEET_REPORT"
} | tee "$out"
log "written to $out"
