//go:build linux

package acceptor

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

const pollIn = unix.POLLIN

// listener is a bound, listening socket.
type listener struct {
	fd   int
	addr *net.TCPAddr
}

// listen creates a listening TCP socket with cfg's options. The options
// that matter per connection (TCP_NODELAY, keep-alive, buffer sizes) are
// inherited by accepted sockets.
func listen(address string, cfg Config) (listener, error) {
	ta, err := net.ResolveTCPAddr("tcp", address)
	if err != nil {
		return listener{fd: -1}, fmt.Errorf("acceptor: resolving %q: %w", address, err)
	}
	family, sa := unix.AF_INET6, unix.Sockaddr(nil)
	if ip4 := ta.IP.To4(); ip4 != nil {
		family = unix.AF_INET
		s4 := &unix.SockaddrInet4{Port: ta.Port}
		copy(s4.Addr[:], ip4)
		sa = s4
	} else {
		s6 := &unix.SockaddrInet6{Port: ta.Port}
		if ta.IP != nil {
			copy(s6.Addr[:], ta.IP.To16())
		}
		if ta.Zone != "" {
			if ifi, err := net.InterfaceByName(ta.Zone); err == nil {
				s6.ZoneId = uint32(ifi.Index)
			}
		}
		sa = s6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return listener{fd: -1}, fmt.Errorf("acceptor: socket for %s: %w", address, os.NewSyscallError("socket", err))
	}
	fail := func(op string, err error) (listener, error) {
		_ = unix.Close(fd)
		return listener{fd: -1}, &net.OpError{Op: "listen", Net: "tcp", Addr: ta, Err: os.NewSyscallError(op, err)}
	}
	keepSecs := max(1, int(cfg.KeepAlive.Seconds()))
	opts := []struct {
		level, opt, val int
		on              bool
	}{
		{unix.SOL_SOCKET, unix.SO_REUSEADDR, 1, true},
		{unix.SOL_SOCKET, unix.SO_REUSEPORT, 1, cfg.ReusePort},
		{unix.IPPROTO_TCP, unix.TCP_NODELAY, 1, !cfg.Delay},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1, cfg.KeepAlive > 0},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepSecs, cfg.KeepAlive > 0},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, keepSecs, cfg.KeepAlive > 0},
		{unix.SOL_SOCKET, unix.SO_RCVBUF, cfg.RecvBuffer, cfg.RecvBuffer > 0},
		{unix.SOL_SOCKET, unix.SO_SNDBUF, cfg.SendBuffer, cfg.SendBuffer > 0},
	}
	if family == unix.AF_INET6 && ta.IP == nil {
		// "[::]:port" or ":port": accept IPv4 too, as package net does.
		opts = append(opts, struct {
			level, opt, val int
			on              bool
		}{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0, true})
	}
	for _, o := range opts {
		if o.on {
			if err := unix.SetsockoptInt(fd, o.level, o.opt, o.val); err != nil {
				return fail("setsockopt", err)
			}
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(fd, cfg.Backlog); err != nil {
		return fail("listen", err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	out := &net.TCPAddr{IP: ta.IP, Port: ta.Port, Zone: ta.Zone}
	switch b := bound.(type) {
	case *unix.SockaddrInet4:
		out = &net.TCPAddr{IP: net.IP(append([]byte(nil), b.Addr[:]...)), Port: b.Port}
	case *unix.SockaddrInet6:
		out = &net.TCPAddr{IP: net.IP(append([]byte(nil), b.Addr[:]...)), Port: b.Port, Zone: ta.Zone}
	}
	return listener{fd: fd, addr: out}, nil
}
