package acceptor

import (
	"net"

	"github.com/gyre-io/gyre/internal/sys"
)

// newLinuxLoop binds the listeners and builds the io_uring or epoll loop.
func newLinuxLoop(a *Acceptor, engine string) (acceptLoop, error) {
	var lns []listener
	for _, addr := range a.cfg.Addrs {
		ln, err := listen(addr, a.cfg)
		if err != nil {
			closeListeners(lns)
			return nil, err
		}
		lns = append(lns, ln)
	}
	if engine == "epoll" {
		l, err := newEpollLoop(a, lns)
		if err != nil {
			closeListeners(lns)
			return nil, err
		}
		return l, nil
	}
	return &uringLoop{a: a, lns: lns, efd: -1, extraFlags: a.cfg.ringExtraFlags}, nil
}

func listenerAddrs(lns []listener) []net.Addr {
	out := make([]net.Addr, len(lns))
	for i := range lns {
		out[i] = lns[i].addr // fixed at Listen
	}
	return out
}

func closeListeners(lns []listener) {
	for i := range lns {
		if lns[i].fd >= 0 {
			sys.CloseFd(lns[i].fd)
			lns[i].fd = -1
		}
	}
}
