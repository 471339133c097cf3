//go:build unix

package ingest

import "syscall"

// DefaultMaxConns is ServerConfig.MaxConns's default: the process's
// descriptor limit (RLIMIT_NOFILE, which Go raises to the hard limit at
// start) less ConnsReserve, so that when clients take every connection
// the node may hold, descriptors are still left for the sink's segments,
// the metrics listener, the QUIC socket and recovery. 0 when the limit
// cannot be read (no bound).
func DefaultMaxConns() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == 0 {
		return 0
	}
	if lim.Cur > 1<<30 {
		lim.Cur = 1 << 30
	}
	return max(1, int(lim.Cur)-ConnsReserve)
}
