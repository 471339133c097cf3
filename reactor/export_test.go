package reactor

import (
	"unsafe"

	"github.com/gyre-io/gyre/internal/uring"
)

// Test hooks for the external test package.

// WithRingFlags makes every ring setup request extra flags, to simulate a
// kernel that refuses io_uring.
func WithRingFlags(c Config, flags uint32) Config { c.hooks.ringExtraFlags = flags; return c }

// WithRingFault installs a fault injector on every reactor ring.
func WithRingFault(c Config, f uring.Fault) Config { c.hooks.ringFault = f; return c }

// WithProbeRefusal makes EngineAuto's io_uring probe fail as the kernel
// would, bypassing the process-wide decision.
func WithProbeRefusal(c Config, inj *uring.Injection) Config { c.hooks.probe = inj; return c }

// BufferRegion returns the address of reactor i's io_uring receive
// buffers, to check that shutdown unmapped them; 0 on other engines.
func BufferRegion(g *Group, i int) uintptr {
	if u, ok := g.reactors[i].eng.(*uringEngine); ok && u.bufs != nil {
		return u.bufs.Addr()
	}
	return 0
}

// HeldBuffers returns the bytes of buffer capacity c holds for input and
// output (loop-only: call it from a Post).
func HeldBuffers(c *Conn) int { return cap(c.acc) + cap(c.out) + cap(c.inflight) }

// ConnSize is the size of a Conn: the bulk of what an idle connection
// costs the reactor.
const ConnSize = unsafe.Sizeof(Conn{})

// ReadSettled reports whether c's receiving has stopped for now: the
// engine has no receive in flight, or the peer's FIN was seen. Loop-only:
// call it from a Post.
func ReadSettled(c *Conn) bool { return c.eof || !c.reading }
