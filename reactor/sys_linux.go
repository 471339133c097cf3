//go:build linux

package reactor

import (
	"net"
	"os"

	"github.com/gyre-io/gyre/internal/uring"
	"golang.org/x/sys/unix"
)

const (
	pollIn   = unix.POLLIN
	shutRDWR = unix.SHUT_RDWR
	shutWR   = unix.SHUT_WR
)

func gettid() int { return unix.Gettid() }

func pinCPU(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return os.NewSyscallError("sched_setaffinity", err)
	}
	return nil
}

func newEventfd() (int, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return -1, os.NewSyscallError("eventfd", err)
	}
	return fd, nil
}

func wakeEventfd(fd int) {
	var one = [8]byte{1}
	_, _ = unix.Write(fd, one[:])
}

func drainEventfd(fd int) {
	var buf [8]byte
	_, _ = unix.Read(fd, buf[:])
}

func closeFd(fd int) { _ = unix.Close(fd) }

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

func overflowCount(r *Reactor) uint64 {
	if r.ring == nil {
		return 0
	}
	return r.ring.Overflows()
}

var _ = uring.Pack
