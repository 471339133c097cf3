package quicbridge

import (
	"net"

	"golang.org/x/sys/unix"
)

// setReceiveBuffer asks for a receive buffer of n bytes on c: SO_RCVBUF
// first, which the kernel caps at net.core.rmem_max, then SO_RCVBUFFORCE,
// which only a process with CAP_NET_ADMIN may use. It returns the usable
// size it got (the kernel reports twice the usable size, for its own
// bookkeeping). Asking for at least 7 MiB also keeps quic-go from
// replacing the size with its own.
func setReceiveBuffer(c *net.UDPConn, n int) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	got := 0
	var serr error
	err = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n)
		if v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF); err == nil && v/2 >= n {
			got = v / 2
			return
		}
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) // fails without CAP_NET_ADMIN
		got, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		got /= 2
	})
	if err != nil {
		return 0, err
	}
	return got, serr
}
