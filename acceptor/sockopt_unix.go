//go:build unix

package acceptor

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// socketControl sets the listener options package net has no field for.
func socketControl(cfg Config) func(network, address string, c syscall.RawConn) error {
	if !cfg.ReusePort {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}
}
