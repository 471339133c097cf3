// Package link is the wiring between package reactor and package acceptor:
// what an acceptor needs from a group of reactors to hand them sockets.
// It lives here so that neither package has to make it public API.
//
// A *reactor.Group embeds an Embed (under an unexported name), which gives
// it this package's unexported link method; Of finds the wiring through
// that method. No other type can have it, so nothing outside gyre can
// reach a group's wiring.
package link

import (
	"io"
	"net"
)

// Group is a reactor group as an acceptor sees it. Fixed after NewGroup.
type Group struct {
	// Engine is the group's engine: "io_uring", "epoll" or "net".
	Engine string
	// Targets are the reactors, in ID order.
	Targets []Target
	// AddSource registers something that feeds the group connections: the
	// group closes every source first when it stops. When the group is
	// already stopping, it closes s and returns an error.
	AddSource func(s io.Closer) error
	// Sync returns once every reactor has run a task queued now, so what
	// the caller wrote before is visible to every later handler callback.
	Sync func() error
}

// Target is one reactor.
type Target struct {
	// RingFD is the io_uring engine's ring: accepted sockets are posted to
	// it with MSG_RING. -1 on other engines.
	RingFD int
	// Load reports, read together, the sockets the reactor has taken so
	// far (wrapping at 2^32; the acceptor compares it with what it sent to
	// count those in flight) and its open connections.
	Load func() (handedOff uint32, conns int)
	// HandoffFD queues an accepted socket for the reactor (epoll engine).
	// The reactor owns fd once it returns nil; on error the caller does.
	HandoffFD func(fd int) error
	// HandoffConn queues an accepted connection (net engine), with the
	// same ownership rule.
	HandoffConn func(c net.Conn) error
}

// Embed carries a group's wiring. reactor.Group embeds it through an
// unexported alias, so the wiring is neither a field nor a method users
// can name. It has no exported methods: they would be promoted to
// reactor.Group's public API.
type Embed struct{ g *Group }

// New wraps a group's wiring for embedding.
func New(g *Group) Embed { return Embed{g: g} }

func (e *Embed) link() *Group { return e.g }

type linked interface{ link() *Group }

// Of returns the wiring of a *reactor.Group, or nil for anything else.
func Of(g any) *Group {
	if l, ok := g.(linked); ok {
		return l.link()
	}
	return nil
}
