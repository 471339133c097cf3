package http1

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/gyre-io/gyre/reactor"
)

// Sizes of a hijacked connection's own buffers (package gyrenet's
// defaults).
const (
	hijackReadBuffer  = 64 << 10
	hijackWriteBuffer = 64 << 10
)

// errHijackStarted is Hijack's answer once the handler has written the
// status or body bytes.
var errHijackStarted = errors.New("http1: Hijack after the response started")

// hijackConn is the net.Conn a net/http handler gets from Hijack: the
// reactor keeps the socket and its buffers, and blocking Read and Write
// exchange bytes with it through two bounded buffers of the conn's own,
// asking the reactor for work through the reactor's hijackLoop Notifier
// (the same design as package gyrenet's Conn). No goroutine runs per
// connection.
type hijackConn struct {
	rc           *reactor.Conn // loop-only
	hl           *hijackLoop
	highWater    int
	laddr, raddr net.Addr

	rmu    sync.Mutex // serializes Reads; guards rtimer
	wmu    sync.Mutex // serializes Writes; guards wtimer
	rtimer *time.Timer
	wtimer *time.Timer

	// One-slot wake-ups for the waiting Read and Write. A state change is
	// made under mu, then signalled; a waiter checks the state under mu
	// before it waits, so no wake-up is lost.
	rwake, wwake chan struct{}

	queued bool // on hl.work: guarded by hl.mu

	mu       sync.Mutex // guards what follows
	in       []byte     // in[inOff:] is received and not yet Read
	inOff    int
	out      []byte // written and not yet handed to the reactor
	rdl, wdl time.Time
	closed   bool  // Close was called
	gone     bool  // the reactor closed the connection (OnClose ran)
	eof      bool  // the peer's FIN came: Read returns io.EOF once in is drained
	cause    error // OnClose's cause, once gone
	shutdown bool  // ended by the server's Shutdown

	readPaused bool // onData paused reading: in is full
	resumeReq  bool // a Read drained in: resume reading
	closeReq   bool // Close: hand over out, then close
	pressured  bool // the reactor's unsent output is over WriteHighWater
}

var _ net.Conn = (*hijackConn)(nil)

// hijackLoop is the hijacked connections' door into one reactor: the
// connections with work for the loop are queued here and the reactor is
// told with one Notifier. A connection is on the list at most once, so
// unlike the inbox it never refuses a request.
type hijackLoop struct {
	n *reactor.Notifier

	mu    sync.Mutex
	work  []*hijackConn
	spare []*hijackConn
}

// hijackLoopFor returns r's hijackLoop, making it at r's first hijack.
func (a *NetHTTP) hijackLoopFor(r *reactor.Reactor) *hijackLoop {
	a.hjMu.Lock()
	defer a.hjMu.Unlock()
	if hl := a.hjLoops[r]; hl != nil {
		return hl
	}
	if a.hjLoops == nil {
		a.hjLoops = make(map[*reactor.Reactor]*hijackLoop)
	}
	hl := &hijackLoop{}
	hl.n = r.NewNotifier(hl.run)
	a.hjLoops[r] = hl
	return hl
}

func (hl *hijackLoop) queue(c *hijackConn) {
	hl.mu.Lock()
	if c.queued {
		hl.mu.Unlock()
		return
	}
	c.queued = true
	hl.work = append(hl.work, c)
	hl.mu.Unlock()
	hl.n.Notify()
}

// run serves every queued connection. Loop-only.
func (hl *hijackLoop) run() {
	hl.mu.Lock()
	work := hl.work
	hl.work, hl.spare = hl.spare[:0], nil
	for _, c := range work {
		c.queued = false
	}
	hl.mu.Unlock()
	for i, c := range work {
		c.serve()
		work[i] = nil
	}
	hl.mu.Lock()
	if hl.spare == nil {
		hl.spare = work[:0]
	}
	hl.mu.Unlock()
}

// takeOver turns cn's connection into a hijackConn: the HTTP state is
// dropped (cn goes back to the pool), the reactor's callbacks go to the
// new conn, and input the server kept unread (bytes past the request) is
// delivered to it before takeOver returns. Loop-only, inside a posted
// function.
func (a *NetHTTP) takeOver(cn *conn) *hijackConn {
	rc := cn.c
	hc := &hijackConn{
		rc:        rc,
		hl:        a.hijackLoopFor(cn.ls.r),
		highWater: cn.ls.lim.highWater,
		laddr:     rc.LocalAddr(),
		raddr:     rc.RemoteAddr(),
		rwake:     make(chan struct{}, 1),
		wwake:     make(chan struct{}, 1),
		pressured: cn.pressured,
	}
	w := &cn.resp
	cn.in = inClosed // runPosted and every later callback leave cn alone
	cn.obs, cn.bh, cn.writable = nil, nil, nil
	cn.pause = 0
	w.active, w.ended = false, true
	w.releaseBuf()
	rc.SetReadTimeoutAt(time.Time{})
	rc.SetWriteTimeoutAt(time.Time{})
	rc.SetContext(hc)
	cn.ls.release(cn)
	// Undo the server's pause, if any (cn.pause may already be clear with
	// the resume still to come, which cn.resume now skips). This presents
	// the kept input to hc.onData at once; a backpressure pause stays
	// until the output drains.
	rc.ResumeReading()
	return hc
}

// onPeerFIN: the peer shut down its sending side; Read returns io.EOF
// after the bytes before it, Write goes on until Close. Loop-only.
func (c *hijackConn) onPeerFIN() bool {
	c.mu.Lock()
	c.eof = true
	c.mu.Unlock()
	signal(c.rwake)
	return true
}

// buffered returns how many received bytes wait to be Read.
func (c *hijackConn) buffered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.in) - c.inOff
}

// Read reads up to len(p) received bytes, waiting until at least one is
// there, the read deadline passes (os.ErrDeadlineExceeded), the peer's
// FIN has been read to the end (io.EOF), the connection fails, or Close
// is called (net.ErrClosed).
func (c *hijackConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.mu.Lock()
	for {
		switch {
		case c.closed:
			c.mu.Unlock()
			return 0, c.opError("read", net.ErrClosed)
		case expired(c.rdl):
			c.mu.Unlock()
			return 0, c.opError("read", os.ErrDeadlineExceeded)
		case len(p) == 0:
			c.mu.Unlock()
			return 0, nil
		}
		if avail := len(c.in) - c.inOff; avail > 0 {
			n := copy(p, c.in[c.inOff:])
			c.inOff += n
			if avail -= n; avail == 0 {
				c.in, c.inOff = c.in[:0], 0
			}
			resume := c.readPaused && !c.resumeReq && avail <= hijackReadBuffer/2
			if resume {
				c.resumeReq = true
			}
			c.mu.Unlock()
			if resume {
				c.hl.queue(c)
			}
			return n, nil
		}
		if c.eof {
			c.mu.Unlock()
			return 0, io.EOF // the connection stays writable until Close
		}
		if c.gone {
			err := c.endError("read")
			c.mu.Unlock()
			return 0, err
		}
		dl := c.rdl
		c.mu.Unlock()
		wait(c.rwake, dl, &c.rtimer)
		c.mu.Lock()
	}
}

// Write copies p into the connection's write buffer for the reactor to
// send, waiting while the buffer is full and the reactor's unsent output
// is over its WriteHighWater. It fails when the write deadline passes
// (os.ErrDeadlineExceeded), the connection has ended, or Close is called.
func (c *hijackConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n := 0
	c.mu.Lock()
	for {
		switch {
		case c.closed:
			c.mu.Unlock()
			return n, c.opError("write", net.ErrClosed)
		case c.gone:
			err := c.endError("write")
			c.mu.Unlock()
			return n, err
		case expired(c.wdl):
			c.mu.Unlock()
			return n, c.opError("write", os.ErrDeadlineExceeded)
		case len(p) == 0:
			c.mu.Unlock()
			return n, nil
		}
		if room := hijackWriteBuffer - len(c.out); room > 0 {
			k := min(room, len(p))
			c.out = append(c.out, p[:k]...)
			p, n = p[k:], n+k
			if len(p) == 0 {
				c.mu.Unlock()
				c.hl.queue(c)
				return n, nil
			}
		}
		dl := c.wdl
		c.mu.Unlock()
		c.hl.queue(c)
		wait(c.wwake, dl, &c.wtimer)
		c.mu.Lock()
	}
}

// Close closes the TCP connection after the bytes written so far are
// sent (bounded by the reactor's FlushTimeout); a waiting Read or Write
// fails with net.ErrClosed. A second Close returns net.ErrClosed.
func (c *hijackConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.opError("close", net.ErrClosed)
	}
	c.closed = true
	c.closeReq = !c.gone
	c.in, c.inOff = nil, 0
	req := c.closeReq
	c.mu.Unlock()
	signal(c.rwake)
	signal(c.wwake)
	if req {
		c.hl.queue(c)
	}
	return nil
}

func (c *hijackConn) LocalAddr() net.Addr  { return c.laddr }
func (c *hijackConn) RemoteAddr() net.Addr { return c.raddr }

func (c *hijackConn) SetDeadline(t time.Time) error      { return c.setDeadlines(t, true, true) }
func (c *hijackConn) SetReadDeadline(t time.Time) error  { return c.setDeadlines(t, true, false) }
func (c *hijackConn) SetWriteDeadline(t time.Time) error { return c.setDeadlines(t, false, true) }

func (c *hijackConn) setDeadlines(t time.Time, read, write bool) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.opError("set", net.ErrClosed)
	}
	if read {
		c.rdl = t
	}
	if write {
		c.wdl = t
	}
	c.mu.Unlock()
	if read {
		signal(c.rwake)
	}
	if write {
		signal(c.wwake)
	}
	return nil
}

func (c *hijackConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.laddr, Addr: c.raddr, Err: err}
}

// endError is what Read (after the buffered bytes) and Write return once
// the reactor has closed the connection. c.mu held.
func (c *hijackConn) endError(op string) error {
	cause := c.cause
	var oe *net.OpError
	switch {
	case c.shutdown || errors.Is(cause, reactor.ErrServerClosed):
		return c.opError(op, ErrServerClosed)
	case cause == io.EOF && op == "read":
		return io.EOF
	case cause == io.EOF:
		return c.opError(op, io.ErrClosedPipe)
	case errors.As(cause, &oe):
		return c.opError(op, oe.Err)
	case cause == nil:
		return c.opError(op, net.ErrClosed)
	}
	return c.opError(op, cause)
}

func expired(dl time.Time) bool { return !dl.IsZero() && !time.Now().Before(dl) }

// wait blocks until ch is signalled or the deadline dl (if any) passes.
func wait(ch chan struct{}, dl time.Time, t **time.Timer) {
	if dl.IsZero() {
		<-ch
		return
	}
	d := time.Until(dl)
	if d <= 0 {
		return
	}
	if *t == nil {
		*t = time.NewTimer(d)
	} else {
		(*t).Reset(d)
	}
	select {
	case <-ch:
		(*t).Stop()
	case <-(*t).C:
	}
}

// signal wakes the waiter on ch, or the next one to wait.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// The loop side.

// serve carries out what Read, Write and Close asked for. Loop-only.
func (c *hijackConn) serve() {
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return
	}
	closing := c.closeReq
	c.closeReq = false
	resume := c.resumeReq && !closing
	if resume {
		c.resumeReq, c.readPaused = false, false
	}
	moved := c.moveOut(closing)
	c.mu.Unlock()
	if moved {
		signal(c.wwake)
	}
	switch {
	case closing:
		_ = c.rc.Close()
	case resume:
		c.rc.ResumeReading()
	}
}

// moveOut hands what Write buffered to the reactor while its unsent
// output is at most WriteHighWater (always when force). Loop-only; c.mu
// held.
func (c *hijackConn) moveOut(force bool) bool {
	if len(c.out) == 0 {
		return false
	}
	if !force && (c.pressured || c.rc.Buffered() > c.highWater) {
		return false
	}
	// An error means the connection is closing: OnClose follows and
	// fails the writer.
	_, _ = c.rc.Write(c.out)
	c.out = c.out[:0]
	return true
}

// onData takes every byte into the read buffer and pauses reading once
// hijackReadBuffer bytes wait there. Loop-only.
func (c *hijackConn) onData(b []byte) int {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return len(b)
	}
	if c.inOff > 0 && len(c.in)+len(b) > cap(c.in) {
		n := copy(c.in, c.in[c.inOff:])
		c.in, c.inOff = c.in[:n], 0
	}
	c.in = append(c.in, b...)
	full := len(c.in)-c.inOff >= hijackReadBuffer
	if full {
		c.readPaused = true
	}
	c.mu.Unlock()
	signal(c.rwake)
	if full {
		c.rc.PauseReading()
	}
	return len(b)
}

func (c *hijackConn) onClose(cause error) {
	c.mu.Lock()
	c.gone, c.cause = true, cause
	c.out = nil
	c.mu.Unlock()
	signal(c.rwake)
	signal(c.wwake)
}

func (c *hijackConn) onPressure(paused bool) {
	c.mu.Lock()
	c.pressured = paused
	moved := !paused && c.moveOut(false)
	c.mu.Unlock()
	if moved {
		signal(c.wwake)
	}
}

// onShutdown: the server is shutting down; hijacked connections are not
// waited for (as in net/http) but the reactors must stop, so what was
// written is sent and the connection closed.
func (c *hijackConn) onShutdown() {
	c.mu.Lock()
	c.shutdown = true
	c.moveOut(true)
	c.mu.Unlock()
	_ = c.rc.Close()
}
