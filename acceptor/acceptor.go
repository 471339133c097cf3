// Package acceptor accepts TCP connections and hands each socket to a
// reactor of a group, with the group's engine:
//
//   - io_uring: one goroutine, locked to its OS thread, runs a multishot
//     accept per listener on its own ring and posts each accepted socket
//     into the chosen reactor's ring with IORING_OP_MSG_RING, which also
//     wakes that reactor: no lock, no channel, no eventfd on the hot path.
//   - epoll: one goroutine, locked to its OS thread, waits on its own epoll
//     set of listeners, accepts until the backlog is empty and queues each
//     socket on the chosen reactor's inbox (one wake-up per batch).
//   - net: a goroutine per listener blocks in net.Listener.Accept and
//     queues each connection on the chosen reactor's inbox.
package acceptor

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gyre-io/gyre/internal/link"
	"github.com/gyre-io/gyre/reactor"
)

// Stats is a snapshot of an acceptor's counters.
type Stats struct {
	Accepted       uint64 // sockets accepted and handed to a reactor
	AcceptErrors   uint64 // accepts that failed (EMFILE, ...)
	HandoffsFailed uint64 // sockets closed because their reactor was gone
}

// acceptLoop is one engine's way of accepting.
type acceptLoop interface {
	// addrs returns the bound addresses, in the order of Config.Addrs.
	addrs() []net.Addr
	// run accepts until stop; it closes the listeners before it returns.
	run(ready chan<- error)
	// stop makes run return soon. Safe for concurrent use.
	stop()
	// closeListeners closes listeners bound but never run.
	closeListeners()
}

// Acceptor owns the listeners and the accept loop. Its methods are safe
// for concurrent use.
type Acceptor struct {
	cfg     Config
	targets []link.Target
	loads   []int
	sent    []uint32 // sockets handed to each reactor, wrapping (loop-only)
	loop    acceptLoop

	backoff  time.Duration // loop-only
	lastWarn time.Time     // loop-only

	accepted, acceptErrs, handoffFails atomic.Uint64

	mu        sync.Mutex // guards loop, running and closing against Close racing Listen
	running   bool       // the loop was started: it closes done; else Close does
	closing   bool
	closeOnce sync.Once
	done      chan struct{}
	err       error
}

// Listen binds every address in cfg.Addrs, starts accepting and registers
// the acceptor with g, so g.Shutdown stops accepting first. It returns once
// the listeners are bound and accepting has started.
func Listen(cfg Config, g *reactor.Group) (*Acceptor, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var w *link.Group
	if g != nil {
		w = link.Of(g)
	}
	if w == nil || len(w.Targets) == 0 {
		return nil, fmt.Errorf("%w: no reactors to hand connections to", ErrConfig)
	}
	a := &Acceptor{
		cfg:     cfg,
		targets: w.Targets,
		loads:   make([]int, len(w.Targets)),
		sent:    make([]uint32, len(w.Targets)),
		done:    make(chan struct{}),
	}
	// Handlers may read state the caller set up after NewGroup: order it
	// before the first connection.
	if err := w.Sync(); err != nil {
		return nil, err
	}
	// Register before binding: a group that is stopping refuses here, so
	// no socket is ever accepted for reactors that are about to exit.
	if err := w.AddSource(a); err != nil {
		return nil, err
	}
	loop, err := newLoop(a, w.Engine)
	if err != nil {
		_ = a.Close() // registered above: mark it done
		return nil, err
	}
	a.mu.Lock()
	if a.closing { // the group stopped meanwhile
		a.mu.Unlock()
		loop.closeListeners()
		return nil, reactor.ErrServerClosed
	}
	a.loop, a.running = loop, true
	a.mu.Unlock()
	ready := make(chan error, 1)
	go func() {
		defer close(a.done)
		loop.run(ready)
	}()
	if err := <-ready; err != nil {
		<-a.done
		return nil, err
	}
	return a, nil
}

// newLoop binds the listeners for the group's engine.
func newLoop(a *Acceptor, engine string) (acceptLoop, error) {
	switch engine {
	case "net":
		return newNetLoop(a)
	default:
		return newLinuxLoop(a, engine)
	}
}

// Addrs returns the bound addresses, in the order of Config.Addrs.
func (a *Acceptor) Addrs() []net.Addr { return a.loop.addrs() }

// Stats returns a snapshot of the acceptor's counters.
func (a *Acceptor) Stats() Stats {
	return Stats{
		Accepted:       a.accepted.Load(),
		AcceptErrors:   a.acceptErrs.Load(),
		HandoffsFailed: a.handoffFails.Load(),
	}
}

// Close stops accepting, closes the listeners and waits until every socket
// already accepted has reached its reactor. Idempotent.
func (a *Acceptor) Close() error {
	a.closeOnce.Do(func() {
		a.mu.Lock()
		a.closing = true
		loop, running := a.loop, a.running
		a.mu.Unlock()
		if running {
			loop.stop()
		} else {
			close(a.done) // Listen failed or the group refused it: nothing runs
		}
	})
	<-a.done
	return nil
}

// Wait blocks until the acceptor stops and returns reactor.ErrServerClosed
// after Close, or the error that stopped it.
func (a *Acceptor) Wait() error {
	<-a.done
	if a.err != nil {
		return a.err
	}
	return reactor.ErrServerClosed
}

// pick chooses the reactor for the next socket. Loop-only.
func (a *Acceptor) pick() int {
	for i, t := range a.targets {
		// Count sockets handed over but not yet opened by the reactor, or a
		// burst of accepts would all see the same loads.
		handed, conns := t.Load()
		inFlight := int(int32(a.sent[i] - handed))
		a.loads[i] = conns + max(inFlight, 0)
	}
	t := a.cfg.Balancer.Pick(a.loads)
	if t < 0 || t >= len(a.targets) {
		t = ((t % len(a.targets)) + len(a.targets)) % len(a.targets)
	}
	a.sent[t]++
	return t
}

// handedOff records the outcome of one hand-off.
func (a *Acceptor) handedOff(ok bool) {
	if ok {
		a.accepted.Add(1)
	} else {
		a.handoffFails.Add(1)
	}
}

// acceptFailed counts and logs an accept failure and reports whether the
// loop should pause before accepting again on that listener. Running out
// of descriptors (EMFILE, ENFILE) or memory is not fatal: the loop pauses,
// with a doubling back-off, and tries again; the backlog holds new
// connections meanwhile. Loop-only.
func (a *Acceptor) acceptFailed(addr net.Addr, err error) (pause bool) {
	a.acceptErrs.Add(1)
	switch {
	case isErrno(err, syscall.ECONNABORTED), isErrno(err, syscall.EAGAIN), isErrno(err, syscall.EINTR):
		return false // the peer gave up, or a spurious wake-up: try again at once
	}
	if a.backoff == 0 {
		a.backoff = minBackoff
	} else {
		a.backoff = min(2*a.backoff, maxBackoff)
	}
	if now := time.Now(); now.Sub(a.lastWarn) >= time.Second {
		a.lastWarn = now
		a.cfg.Logger.Warn("accept failed; backing off", "addr", addr.String(),
			"err", err.Error(), "backoff", a.backoff, "errors", a.acceptErrs.Load())
	}
	return true
}
