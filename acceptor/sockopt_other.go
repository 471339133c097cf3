//go:build !unix

package acceptor

import "syscall"

// socketControl: Config.ReusePort is not applied on this system.
func socketControl(Config) func(network, address string, c syscall.RawConn) error { return nil }
