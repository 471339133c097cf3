package reactor

import (
	"net"
	"os"

	"github.com/gyre-io/gyre/internal/sys"
	"golang.org/x/sys/unix"
)

// linuxEngines: io_uring and epoll exist here.
const linuxEngines = true

// threadID identifies the calling OS thread (see Reactor.onLoop).
func threadID() int64 { return int64(unix.Gettid()) }

func pinCPU(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return os.NewSyscallError("sched_setaffinity", err)
	}
	return nil
}

// closeFd closes a socket the reactor owns (the engine-neutral code's
// only descriptor operation).
func closeFd(fd int) { sys.CloseFd(fd) }

func sockName(fd int, peer bool) net.Addr {
	var sa unix.Sockaddr
	var err error
	if peer {
		sa, err = unix.Getpeername(fd)
	} else {
		sa, err = unix.Getsockname(fd)
	}
	if err != nil {
		return nil
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: append(net.IP(nil), a.Addr[:]...), Port: a.Port}
	case *unix.SockaddrInet6:
		ta := &net.TCPAddr{IP: append(net.IP(nil), a.Addr[:]...), Port: a.Port}
		if a.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(a.ZoneId)); err == nil {
				ta.Zone = ifi.Name
			}
		}
		return ta
	case *unix.SockaddrUnix:
		return &net.UnixAddr{Name: a.Name, Net: "unix"}
	}
	return nil
}
