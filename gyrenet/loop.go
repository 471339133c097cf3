package gyrenet

import (
	"sync"

	"github.com/gyre-io/gyre/reactor"
)

// reactorState is gyrenet's door into one reactor: connections with work
// for the loop (bytes to hand over, reading to resume, a Close) are queued
// here and the reactor is told with one Notifier. Each connection is on the
// list at most once, so the list is bounded by the reactor's connections
// and, unlike the reactor's inbox, never refuses a request.
type reactorState struct {
	n *reactor.Notifier

	mu    sync.Mutex
	work  []*Conn
	spare []*Conn
}

// queue asks the reactor to serve c. Safe for concurrent use; after the
// reactor has stopped it does nothing.
func (rs *reactorState) queue(c *Conn) {
	rs.mu.Lock()
	if c.queued {
		rs.mu.Unlock()
		return // a Notify is under way and covers this request
	}
	c.queued = true
	rs.work = append(rs.work, c)
	rs.mu.Unlock()
	rs.n.Notify()
}

// run serves every queued connection. Loop-only (the Notifier's function).
func (rs *reactorState) run() {
	rs.mu.Lock()
	work := rs.work
	rs.work, rs.spare = rs.spare[:0], nil
	for _, c := range work {
		c.queued = false
	}
	rs.mu.Unlock()
	for i, c := range work {
		c.serve()
		work[i] = nil
	}
	rs.mu.Lock()
	if rs.spare == nil {
		rs.spare = work[:0]
	}
	rs.mu.Unlock()
}

// handler is the reactors' Handler: it moves bytes between the reactor and
// the Conns. Every method runs on the connection's reactor and none
// blocks (the locks it takes are held by Read and Write only for copies).
type handler struct{ l *Listener }

var (
	_ reactor.Handler          = (*handler)(nil)
	_ reactor.PressureHandler  = (*handler)(nil)
	_ reactor.ShutdownHandler  = (*handler)(nil)
	_ reactor.HalfCloseHandler = (*handler)(nil)
)

func (h *handler) OnOpen(rc *reactor.Conn) {
	l := h.l
	c := &Conn{
		rc:    rc,
		rs:    l.rs[rc.Reactor().ID()],
		l:     l,
		laddr: rc.LocalAddr(),
		raddr: rc.RemoteAddr(),
		rwake: make(chan struct{}, 1),
		wwake: make(chan struct{}, 1),
	}
	rc.SetContext(c)
	if !l.opened(c) {
		rc.Abort() // runs OnClose
	}
}

// OnData copies every byte into the Conn's read buffer and pauses reading
// once ReadBuffer bytes wait there; a Read that takes it down to half asks
// for the resume. Taking every byte means no input is left in the
// reactor's keeping, whatever the reactor does with it on a FIN.
func (h *handler) OnData(rc *reactor.Conn, b []byte) int {
	c := rc.Context().(*Conn)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return len(b) // nobody will read it
	}
	if c.inOff > 0 && len(c.in)+len(b) > cap(c.in) {
		n := copy(c.in, c.in[c.inOff:])
		c.in, c.inOff = c.in[:n], 0
	}
	c.in = append(c.in, b...)
	full := len(c.in)-c.inOff >= h.l.cfg.ReadBuffer
	if full {
		c.readPaused = true
	}
	c.mu.Unlock()
	signal(c.rwake)
	if full {
		rc.PauseReading()
	}
	return len(b)
}

func (h *handler) OnClose(rc *reactor.Conn, cause error) {
	c := rc.Context().(*Conn)
	c.mu.Lock()
	c.gone, c.cause = true, cause
	c.out = nil
	c.mu.Unlock()
	signal(c.rwake)
	signal(c.wwake)
	h.l.closedConn()
}

// OnPeerFIN: the peer shut down its sending side. Read returns io.EOF
// once the bytes before it are read; Write goes on until Close, as on a
// TCP connection of package net.
func (h *handler) OnPeerFIN(rc *reactor.Conn) bool {
	c := rc.Context().(*Conn)
	c.mu.Lock()
	c.eof = true
	c.mu.Unlock()
	signal(c.rwake)
	return true
}

// OnPressure: over WriteHighWater the reactor has stopped sending what
// Write buffers (and receiving); back at WriteLowWater, hand it over.
func (h *handler) OnPressure(rc *reactor.Conn, paused bool) {
	c := rc.Context().(*Conn)
	c.mu.Lock()
	c.pressured = paused
	moved := !paused && c.moveOut(false)
	c.mu.Unlock()
	if moved {
		signal(c.wwake)
	}
}

// OnShutdown (Listener.Shutdown, or the reactors stopping) sends what was
// written and closes, so a Write that returned is not lost.
func (h *handler) OnShutdown(rc *reactor.Conn) {
	c := rc.Context().(*Conn)
	c.mu.Lock()
	c.shutdown = true
	c.moveOut(true)
	c.mu.Unlock()
	_ = rc.Close()
}
