package reactor

import "github.com/gyre-io/gyre/internal/uring"

// engineHooks are test hooks (see export_test.go): extra ring setup flags
// and a fault injector for every ring, and refusals for the io_uring probe.
type engineHooks struct {
	ringExtraFlags uint32
	ringFault      uring.Fault
	probe          *uring.Injection
}

// probeFault makes EngineAuto's io_uring probe fail as a kernel would.
type probeFault = uring.Injection

// probeIOUring asks whether this process may use io_uring as gyre does:
// ring setup with gyre's flags, every opcode, a provided-buffer ring.
func probeIOUring(inject *probeFault) error { return uring.ProbeWith(inject) }

// newLinuxEngine builds a reactor's io_uring or epoll engine.
func newLinuxEngine(r *Reactor, e Engine) (engine, error) {
	if e == EngineEpoll {
		return newEpollEngine(r), nil
	}
	return newUringEngine(r), nil
}
