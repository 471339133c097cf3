package reactor

import (
	"net"
	"sync/atomic"
	"time"
)

// connState is where a connection is in its life.
type connState uint8

const (
	stateOpen    connState = iota
	stateClosing           // no more reads; flushing output, then closing
	stateLinger            // output sent and FIN queued; discarding input until the peer's EOF
	stateAborted           // closing without flushing; waiting for in-flight ops
	stateClosed            // socket closed, OnClose ran, slot free
)

// Conn is one TCP connection owned by a reactor.
//
// Methods are loop-only (call them from the connection's handler callbacks
// or a function run by Post) unless their comment says "safe for concurrent
// use". A *Conn stays valid after it closes: its methods then return errors
// wrapping net.ErrClosed, and it is never reused for another connection.
type Conn struct {
	r     *Reactor
	fd    int      // the socket (-1 on the net engine: see nc)
	nc    *netConn // the net engine's connection; nil on the others
	index uint32
	gen   uint32
	state connState

	reading   bool // the engine is receiving (io_uring: a multishot recv is in flight)
	starved   bool // waiting for a free buffer to start receiving
	paused    bool // reading stopped by backpressure
	userPause bool // reading stopped by the handler (PauseReading)
	sending   bool // a send is in flight
	inDirty   bool // queued for the end-of-iteration flush
	cancelled bool // a cancel for the receive is in flight
	eof       bool // the peer sent FIN (or the socket failed): nothing more to read
	readable  bool // epoll: input may be waiting (an edge not yet read to EAGAIN)
	inReady   bool // epoll: queued on the ready list
	hup       bool // epoll: the peer's FIN or an error was reported
	// closedFlag: Closed, for other goroutines (fits the padding here).
	closedFlag atomic.Bool

	// Input kept between OnData calls: acc[accOff:] is unconsumed.
	acc    []byte
	accOff int
	// Output: out collects writes of the current iteration; inflight is
	// what the kernel is sending (inflight[sent:] still to go). The two
	// swap, so steady state allocates nothing.
	out      []byte
	inflight []byte
	sent     int

	// During OnData: the buffer behind the view, and whether it was held.
	curBuf  int32 // -1: the view is acc
	held    bool
	inAcc   bool
	handled bool // OnOpen ran; OnClose must run
	finTold bool // a HalfCloseHandler heard of the peer's FIN (peerFIN)

	cause error

	lastActive     int64 // reactor clock, ns
	readTimeoutAt  int64 // SetReadTimeoutAt; 0: none
	writeTimeoutAt int64 // SetWriteTimeoutAt; 0: none
	closeBy        int64 // stateClosing: the flush deadline; stateLinger: the end of lingering
	timerAt        int64 // when this connection's timer entry fires; 0: none

	addrs *connAddrs // looked up when first asked for
	ctx   any
}

// connAddrs is a connection's addresses, kept apart from Conn so that the
// many connections nobody asks about do not carry two empty interfaces.
type connAddrs struct{ local, remote net.Addr }

// ID identifies the connection in logs: unique among the reactor's open
// connections and not reused for a long time. Safe for concurrent use.
func (c *Conn) ID() uint64 { return uint64(c.r.id)<<56 | uint64(c.gen)<<32 | uint64(c.index) }

// Reactor returns the reactor that owns the connection. Safe for
// concurrent use.
func (c *Conn) Reactor() *Reactor { return c.r }

// Fd returns the socket descriptor, for socket options. Do not read,
// write or close it: the reactor (on the net engine, package net) owns
// it. Loop-only.
func (c *Conn) Fd() int {
	if c.nc != nil && c.state != stateClosed {
		return c.nc.fd
	}
	return c.fd
}

// Context returns the value set with SetContext. Loop-only.
func (c *Conn) Context() any { return c.ctx }

// SetContext attaches per-connection state for the handler. Loop-only.
func (c *Conn) SetContext(v any) { c.ctx = v }

// Closed reports whether the connection is closed or closing. Safe for
// concurrent use.
func (c *Conn) Closed() bool { return c.closedFlag.Load() }

// LocalAddr returns the local address (looked up once, then cached).
// Loop-only.
func (c *Conn) LocalAddr() net.Addr {
	if c.addrs == nil {
		c.addrs = &connAddrs{}
	}
	if c.addrs.local == nil {
		c.addrs.local = c.addr(false)
	}
	return c.addrs.local
}

// RemoteAddr returns the peer's address (looked up once, then cached).
// Loop-only.
func (c *Conn) RemoteAddr() net.Addr {
	if c.addrs == nil {
		c.addrs = &connAddrs{}
	}
	if c.addrs.remote == nil {
		c.addrs.remote = c.addr(true)
	}
	return c.addrs.remote
}

func (c *Conn) addr(peer bool) net.Addr {
	switch {
	case c.nc != nil && peer:
		return c.nc.conn.RemoteAddr()
	case c.nc != nil:
		return c.nc.conn.LocalAddr()
	case c.fd >= 0:
		return sockName(c.fd, peer)
	}
	return nil
}

// Write queues p for sending; p may be reused as soon as Write returns.
// Every write of one loop iteration to one connection leaves in one send.
// Write queues all of p or nothing: it returns ErrOutputFull if p would
// take the unsent output over Config.MaxOutput, and an error wrapping
// net.ErrClosed if the connection is closing. Loop-only.
func (c *Conn) Write(p []byte) (int, error) {
	if c.state != stateOpen {
		return 0, ErrConnClosed
	}
	if c.Buffered()+len(p) > c.r.cfg.MaxOutput {
		c.r.stats.outputFull.Add(1)
		return 0, ErrOutputFull
	}
	if cap(c.out) == 0 {
		c.out = c.r.spare.get(len(p))
		c.r.armSweep()
	}
	c.out = append(c.out, p...)
	c.r.markDirty(c)
	return len(p), nil
}

// Buffered returns how many bytes are queued or in flight and not yet
// confirmed sent. Loop-only.
func (c *Conn) Buffered() int { return len(c.out) + len(c.inflight) - c.sent }

// Close closes the connection after its queued output is sent (bounded by
// Config.FlushTimeout). No more OnData runs for it. OnClose runs with a
// nil cause. Safe for concurrent use: from another goroutine it is queued
// behind earlier AsyncWrites and Posts, and may return ErrInboxFull.
func (c *Conn) Close() error {
	if !c.r.onLoop() {
		return c.r.inbox.push(task{kind: taskClose, c: c, gen: c.gen})
	}
	if c.state != stateOpen {
		return ErrConnClosed
	}
	c.r.closeGraceful(c, nil)
	return nil
}

// Abort closes the connection at once, dropping unsent output. OnClose runs
// with a nil cause. Loop-only.
func (c *Conn) Abort() {
	if c.state == stateOpen || c.state == stateClosing {
		c.r.closeNow(c, nil)
	}
}

// AsyncWrite copies p and queues it on the reactor's inbox; the reactor
// writes it whole, in the order AsyncWrite was called, as if by Write. It
// never blocks: it returns ErrInboxFull when the inbox is full (nothing
// queued) and an error wrapping net.ErrClosed when the connection is
// closed. If the data would take unsent output over MaxOutput when it
// reaches the reactor, the connection is closed with ErrOutputFull rather
// than silently dropping it. Safe for concurrent use.
func (c *Conn) AsyncWrite(p []byte) error {
	if c.closedFlag.Load() {
		return ErrConnClosed
	}
	return c.r.inbox.push(task{kind: taskWrite, c: c, gen: c.gen, data: append([]byte(nil), p...)})
}

// Post runs fn on the connection's reactor, in order with AsyncWrite and
// Close calls made before it, unless the connection has closed by then
// (fn is then not run). It never blocks: it returns ErrInboxFull when the
// inbox is full. Safe for concurrent use.
func (c *Conn) Post(fn func(c *Conn)) error {
	if c.closedFlag.Load() {
		return ErrConnClosed
	}
	return c.r.inbox.push(task{kind: taskConnFunc, c: c, gen: c.gen, cfn: fn})
}

// PauseReading stops receiving from the connection until ResumeReading:
// unread bytes wait in the kernel and TCP flow control slows the peer. Use
// it when the handler cannot take more input for now (a full queue).
// OnData does not run while reading is paused; bytes the kernel had
// already received when the pause took effect are kept and presented at
// resume. Loop-only.
func (c *Conn) PauseReading() {
	if c.state != stateOpen || c.userPause {
		return
	}
	c.userPause = true
	c.r.stopRead(c)
}

// ResumeReading undoes PauseReading. Input the handler left unconsumed is
// presented again at once, then receiving restarts. Loop-only.
func (c *Conn) ResumeReading() {
	if !c.userPause {
		return
	}
	c.userPause = false
	c.r.restart(c)
}

// ReadingPaused reports whether receiving is stopped, by PauseReading or by
// backpressure. Loop-only.
func (c *Conn) ReadingPaused() bool { return c.readStopped() }

func (c *Conn) readStopped() bool { return c.paused || c.userPause }

// SetReadTimeoutAt closes the connection at t, gracefully (queued output
// is flushed first) and with the cause ErrReadTimeout, unless it is called
// again with another time first. Traffic does not move it. The zero time
// clears it. Loop-only.
//
// It ends the connection. That is unlike net.Conn's SetReadDeadline, which
// only fails a blocked Read and leaves the connection open (package gyrenet
// serves net.Conns with those semantics over the reactors).
func (c *Conn) SetReadTimeoutAt(t time.Time) {
	c.readTimeoutAt = c.r.clockAt(t)
	c.r.schedule(c)
}

// SetWriteTimeoutAt closes the connection at t with the cause
// ErrWriteTimeout, at once and dropping the rest, if output is still
// unsent then; with nothing unsent at t it does nothing. The zero time
// clears it. Loop-only.
//
// It ends the connection. That is unlike net.Conn's SetWriteDeadline,
// which only fails a blocked Write and leaves the connection open.
func (c *Conn) SetWriteTimeoutAt(t time.Time) {
	c.writeTimeoutAt = c.r.clockAt(t)
	c.r.schedule(c)
}

// Hold keeps the bytes passed to the current OnData valid after OnData
// returns, without copying, until the returned Lease is released. Only
// valid inside OnData. The receive buffer behind a held view is out of
// the kernel's reach until then: hold briefly, or copy. A held view is
// valid at the latest until the reactor stops: Group.Shutdown and Close
// unmap the receive buffers, so release (or copy) before shutting down.
// Loop-only.
func (c *Conn) Hold() Lease {
	if c.held {
		panic("reactor: Hold called twice in one OnData")
	}
	c.held = true
	if c.inAcc {
		// The accumulated input moves to the lease; the connection starts
		// a new accumulation buffer.
		l := Lease{r: c.r, buf: -1}
		return l
	}
	return Lease{r: c.r, buf: c.curBuf}
}

// Lease keeps a received view valid past OnData. See Conn.Hold.
type Lease struct {
	r   *Reactor
	buf int32 // -1: the accumulated input, which the garbage collector frees
}

// Release returns the held buffer to the kernel. Call it exactly once;
// a second release of the same buffer panics. Safe for concurrent use.
func (l Lease) Release() {
	if l.buf < 0 || l.r == nil {
		return
	}
	l.r.releaseBuffer(l.buf)
}
