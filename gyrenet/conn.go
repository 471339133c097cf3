package gyrenet

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/gyre-io/gyre/reactor"
)

// Conn is a TCP connection served by a reactor, with net.Conn's blocking
// methods. Multiple goroutines may invoke methods on a Conn simultaneously;
// Reads are served one at a time, and so are Writes (as in package net).
//
// The reactor owns the socket and its buffers. Read and Write exchange
// bytes with it through two bounded buffers of the Conn's own (see
// Config.ReadBuffer and WriteBuffer), and ask it for work through a
// reactor.Notifier, so no goroutine runs per connection and the reactor's
// buffers are never touched off its goroutine.
type Conn struct {
	rc           *reactor.Conn // loop-only, except Closed
	rs           *reactorState
	l            *Listener
	laddr, raddr net.Addr // fixed at open

	rmu    sync.Mutex  // serializes Reads; guards rtimer
	wmu    sync.Mutex  // serializes Writes; guards wtimer
	rtimer *time.Timer // made at the first Read that waits with a deadline
	wtimer *time.Timer

	// One-slot wake-ups for the Read and the Write waiting, if any. A
	// state change is made under mu, then signalled; a waiter checks the
	// state under mu before it waits, so no wake-up is lost.
	rwake, wwake chan struct{}

	queued bool // on rs.work: guarded by rs.mu

	mu sync.Mutex // guards what follows
	// in[inOff:] is received and not yet Read.
	in    []byte
	inOff int
	// out is written and not yet handed to the reactor.
	out      []byte
	rdl, wdl time.Time // deadlines; zero: none
	closed   bool      // Close was called
	gone     bool      // the reactor closed the connection (OnClose ran)
	eof      bool      // the peer's FIN came: Read returns io.EOF once in is drained
	cause    error     // OnClose's cause, once gone
	shutdown bool      // ended by Listener.Shutdown
	// Requests for the loop and what it told us.
	readPaused bool // OnData paused reading: in is full
	resumeReq  bool // a Read drained in: resume reading
	closeReq   bool // Close: hand over out, then close
	pressured  bool // the reactor's unsent output is over WriteHighWater
	// A Read or a Write is waiting (tests synchronise on it).
	readWaiting, writeWaiting bool
}

var _ net.Conn = (*Conn)(nil)

// Read reads up to len(p) received bytes, waiting until at least one is
// there, the read deadline passes (an error matching
// os.ErrDeadlineExceeded), the peer's FIN has been read to the end
// (io.EOF), the connection fails, or Close is called (net.ErrClosed).
// Safe for concurrent use.
func (c *Conn) Read(p []byte) (int, error) {
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
			resume := c.readPaused && !c.resumeReq && avail <= c.l.cfg.ReadBuffer/2
			if resume {
				c.resumeReq = true
			}
			c.mu.Unlock()
			if resume {
				c.rs.queue(c)
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
		c.readWaiting = true
		c.mu.Unlock()
		wait(c.rwake, dl, &c.rtimer)
		c.mu.Lock()
		c.readWaiting = false
	}
}

// Write copies p into the connection's write buffer and returns once all
// of it is there, for the reactor to send. It waits while the buffer is
// full and the reactor's unsent output is over Config.WriteHighWater, and
// fails when the write deadline passes (an error matching
// os.ErrDeadlineExceeded; n bytes were taken), when the connection has
// ended, or when Close is called (net.ErrClosed). Safe for concurrent use.
func (c *Conn) Write(p []byte) (int, error) {
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
		if room := c.l.cfg.WriteBuffer - len(c.out); room > 0 {
			k := min(room, len(p))
			c.out = append(c.out, p[:k]...)
			p, n = p[k:], n+k
			if len(p) == 0 {
				c.mu.Unlock()
				c.rs.queue(c)
				return n, nil
			}
		}
		dl := c.wdl
		c.writeWaiting = true
		c.mu.Unlock()
		c.rs.queue(c) // the reactor takes out as soon as it may
		wait(c.wwake, dl, &c.wtimer)
		c.mu.Lock()
		c.writeWaiting = false
	}
}

// Close closes the connection: a Read or Write waiting, and every later
// call, fails with an error matching net.ErrClosed. Bytes written before
// Close are still sent (bounded by Config.FlushTimeout); bytes received and
// not read are dropped. Close does not wait for the reactor. A second Close
// returns an error matching net.ErrClosed. Safe for concurrent use.
func (c *Conn) Close() error {
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
		c.rs.queue(c)
	}
	return nil
}

// LocalAddr returns the local address. Safe for concurrent use.
func (c *Conn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr returns the peer's address. Safe for concurrent use.
func (c *Conn) RemoteAddr() net.Addr { return c.raddr }

// SetDeadline sets the read and write deadlines (see SetReadDeadline and
// SetWriteDeadline). Safe for concurrent use.
func (c *Conn) SetDeadline(t time.Time) error {
	return c.setDeadlines(t, true, true)
}

// SetReadDeadline sets the time after which Read fails, at once or while it
// waits, with an error matching os.ErrDeadlineExceeded (and whose
// Timeout method reports true); the connection stays open, and a later
// deadline makes Read work again. The zero time means no deadline. As in
// package net, a deadline passed fails Read even when bytes are waiting.
// Safe for concurrent use.
func (c *Conn) SetReadDeadline(t time.Time) error {
	return c.setDeadlines(t, true, false)
}

// SetWriteDeadline sets the time after which Write fails, at once or while
// it waits for room, with an error matching os.ErrDeadlineExceeded; the
// connection stays open. Bytes Write already took are still sent. The zero
// time means no deadline. Safe for concurrent use.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	return c.setDeadlines(t, false, true)
}

func (c *Conn) setDeadlines(t time.Time, read, write bool) error {
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
	// A waiting call looks at its deadline again.
	if read {
		signal(c.rwake)
	}
	if write {
		signal(c.wwake)
	}
	return nil
}

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.laddr, Addr: c.raddr, Err: err}
}

// endError is what Read (after the buffered bytes) and Write return once
// the reactor has closed the connection. c.mu held.
func (c *Conn) endError(op string) error {
	cause := c.cause
	var oe *net.OpError
	switch {
	case c.shutdown || errors.Is(cause, reactor.ErrServerClosed):
		return c.opError(op, reactor.ErrServerClosed)
	case cause == io.EOF && op == "read":
		return io.EOF
	case errors.As(cause, &oe):
		return c.opError(op, oe.Err)
	case cause == nil:
		return c.opError(op, net.ErrClosed)
	}
	return c.opError(op, cause)
}

func expired(dl time.Time) bool { return !dl.IsZero() && !time.Now().Before(dl) }

// wait blocks until ch is signalled or the deadline dl (if any) passes.
// *t is the caller's reusable timer.
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

// The loop side: these run on the connection's reactor.

// serve carries out what Read, Write and Close asked for. Loop-only.
func (c *Conn) serve() {
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
		_ = c.rc.Close() // flushes what moveOut handed over, then closes
	case resume:
		c.rc.ResumeReading() // may run OnData at once
	}
}

// moveOut hands what Write buffered to the reactor, which copies it into
// the connection's output. Unless force (closing), only while the
// reactor's unsent output is at most WriteHighWater: it then never grows
// past WriteHighWater + WriteBuffer (+ WriteBuffer at Close), under the
// reactor's MaxOutput. Over WriteHighWater the reactor pauses the
// connection and OnPressure(false) calls moveOut again. Loop-only; c.mu
// held.
func (c *Conn) moveOut(force bool) bool {
	if len(c.out) == 0 {
		return false
	}
	if !force && (c.pressured || c.rc.Buffered() > c.l.cfg.WriteHighWater) {
		return false
	}
	// An error means the connection is closing (the peer's FIN, a reset):
	// OnClose follows and fails the writer; the bytes are dropped.
	_, _ = c.rc.Write(c.out)
	c.out = c.out[:0]
	return true
}
