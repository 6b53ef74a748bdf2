#!/usr/bin/env bash
# Fleet benchmark: one deploy to 1 host vs to 20 hosts (20 real sshd
# instances on 127.0.0.1, each with its own deploy root), and the spread of
# the switch across the 20 hosts. All servers share this machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p /run/sshd
ATOMIC_DEPLOY_REQUIRE_SSHD=1 go test -run '^$' -bench '^BenchmarkFleet$' -benchtime "${BENCH_RUNS:-3}x" ./internal/deploy/ 2>&1 |
	grep -E '^(Benchmark|    fleet_bench_test|ok|FAIL|PASS)'
