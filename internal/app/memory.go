package app

import "runtime/debug"

// The process's soft memory limit keeps a deploy of one large release
// near 100 MB (bench/rss.sh: 100,000 files). Each host adds what the
// client holds for it until the end (its snapshot, ~0.35 MB) and, while it
// uploads, its stream's buffers; the limit grows with the hosts, because
// a limit below what is live makes the collector run without pause, up
// to half the CPU: an initial prepare of 100 hosts took 2.4× the CPU
// under a fixed 72 MB (bench/README.md).
const (
	baseMemoryLimit = 72 << 20
	memoryPerHost   = 1 << 20
)

// memoryLimit is the soft memory limit of a run over hosts hosts.
func memoryLimit(hosts int) int64 {
	return baseMemoryLimit + int64(max(hosts-1, 0))*memoryPerHost
}

// LimitMemory sets memoryLimit for a run over hosts hosts, unless
// gomemlimit, the environment's GOMEMLIMIT, sets another.
func LimitMemory(gomemlimit string, hosts int) {
	if gomemlimit == "" {
		debug.SetMemoryLimit(memoryLimit(hosts))
	}
}
