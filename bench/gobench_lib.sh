# shellcheck shell=bash
# Sourced by bench/fleet.sh and bench/scale.sh, whose benchmarks are Go
# benchmarks behind bench/delayproxy. Needs OUT_DIR and a log function.

# gobench_start NAME: waits for the benchmark lock (the one bench/lib.sh
# takes: two benchmarks at once would time each other), raises this
# shell's priority (the machine may be shared with niced work; sshd and
# the proxy inherit it) and makes the work directory $W, removed on exit,
# with the delay proxy built in it.
gobench_start() {
	mkdir -p "$OUT_DIR" /run/sshd
	exec 8>"$OUT_DIR/.lock"
	if ! flock -n 8; then
		log "another benchmark holds $OUT_DIR/.lock; waiting (at most ${BENCH_LOCK_WAIT:-1800} s)"
		flock -w "${BENCH_LOCK_WAIT:-1800}" 8 || { log "another benchmark is still running"; exit 1; }
	fi
	renice -n "${BENCH_NICE:--10}" -p $$ >/dev/null 2>&1 || true
	W=$(mktemp -d "/tmp/ad$1.XXXXXX")
	trap 'rm -rf "$W"' EXIT
	go build -o "$W/delayproxy" ./bench/delayproxy
}
