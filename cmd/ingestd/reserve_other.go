//go:build !unix

package main

import "net"

// withSpareDescriptor returns ln unchanged: keeping a spare descriptor
// for accepts that run into the descriptor limit (reserve_unix.go) is for
// unix systems.
func withSpareDescriptor(ln net.Listener) net.Listener { return ln }
