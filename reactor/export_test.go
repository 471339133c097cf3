package reactor

import "github.com/gyre-io/gyre/internal/uring"

// Test hooks for the external test package.

// WithRingFlags makes every ring setup request extra flags, to simulate a
// kernel that refuses io_uring.
func WithRingFlags(c Config, flags uint32) Config { c.ringExtraFlags = flags; return c }

// WithRingFault installs a fault injector on every reactor ring.
func WithRingFault(c Config, f uring.Fault) Config { c.ringFault = f; return c }

// BufferRegion returns the address of reactor i's receive buffers, to check
// that shutdown unmapped them.
func BufferRegion(g *Group, i int) uintptr { return g.reactors[i].bufs.Addr() }
