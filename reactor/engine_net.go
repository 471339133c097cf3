package reactor

import (
	"cmp"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// netEngine runs a reactor on package net, on every system Go supports.
// Each connection has a reader and a writer goroutine that block in
// net.Conn's Read and Write and report to the reactor, which runs the
// handlers exactly as the other engines do. A read is started only when
// the reactor wants input (so a paused connection leaves bytes in the
// kernel), into a buffer the reactor owns; it is stopped with a read
// deadline in the past.
type netEngine struct {
	r     *Reactor
	pool  bufPool
	wakeC chan struct{} // capacity 1: a pending wake-up
	timer *time.Timer
	woke  bool
	wg    sync.WaitGroup // reader and writer goroutines

	mu    sync.Mutex
	q     []netEvent
	spare []netEvent
}

// netConn is the net engine's side of a connection.
type netConn struct {
	conn   net.Conn
	fd     int          // the socket, for Conn.Fd (socket options); package net owns it
	reads  chan netRead // capacity 1: the reader's next read
	writes chan []byte  // capacity 1: the writer's next write
	// stopped: a read deadline in the past is set and must be cleared
	// before the next read.
	stopped bool
	closed  bool
}

type netRead struct {
	id  int32
	buf []byte
}

// netEvent is a finished read or write, reported by a connection's
// goroutine.
type netEvent struct {
	c     *Conn
	write bool
	id    int32 // read: the buffer
	n     int
	err   error
}

// longAgo is a deadline in the past: it ends a blocked Read at once.
var longAgo = time.Unix(1, 0)

func newNetEngine(r *Reactor) *netEngine {
	return &netEngine{r: r, wakeC: make(chan struct{}, 1), pool: bufPool{size: cmp.Or(r.cfg.Buffers.Size, DefaultBufferSize)}}
}

func newNetConn(c net.Conn) *netConn {
	if c == nil {
		return nil
	}
	return &netConn{conn: c, fd: rawFD(c), reads: make(chan netRead, 1), writes: make(chan []byte, 1)}
}

// rawFD returns the descriptor behind c, or -1.
func rawFD(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	_ = rc.Control(func(s uintptr) { fd = int(s) })
	return fd
}

func (e *netEngine) kind() Engine { return EngineNet }

func (e *netEngine) setup() error {
	e.timer = time.NewTimer(time.Hour)
	e.timer.Stop()
	return nil
}

func (e *netEngine) teardown() {
	if e.timer != nil {
		e.timer.Stop()
	}
	e.wg.Wait() // every connection is closed: its goroutines are ending
}

// attach starts the connection's reader and writer.
func (e *netEngine) attach(c *Conn) error {
	nc := c.nc
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		for rd := range nc.reads {
			n, err := nc.conn.Read(rd.buf)
			e.post(netEvent{c: c, id: rd.id, n: n, err: err})
		}
	}()
	go func() {
		defer e.wg.Done()
		for p := range nc.writes {
			n, err := nc.conn.Write(p)
			e.post(netEvent{c: c, write: true, n: n, err: err})
		}
	}()
	return nil
}

func (e *netEngine) post(ev netEvent) {
	e.mu.Lock()
	e.q = append(e.q, ev)
	first := len(e.q) == 1
	e.mu.Unlock()
	if first {
		e.wake()
	}
}

func (e *netEngine) wake() {
	select {
	case e.wakeC <- struct{}{}:
	default:
	}
}

func (e *netEngine) wait(block bool, until int64) error {
	if !block {
		select {
		case <-e.wakeC:
			e.woke = true
		default:
		}
		return nil
	}
	if until == 0 {
		<-e.wakeC
		e.woke = true
		return nil
	}
	e.timer.Reset(time.Duration(max(0, until-int64(time.Since(e.r.epoch)))))
	select {
	case <-e.wakeC:
		e.woke = true
	case <-e.timer.C:
	}
	e.timer.Stop()
	return nil
}

func (e *netEngine) dispatch() bool {
	if e.woke {
		e.woke = false
		e.r.woken = true // the inbox may have work; running it empty is cheap
	}
	e.mu.Lock()
	q := e.q
	e.q = e.spare[:0]
	e.mu.Unlock()
	for i := range q {
		ev := &q[i]
		if ev.write {
			e.onWrite(ev)
		} else {
			e.onRead(ev)
		}
		q[i] = netEvent{}
	}
	e.mu.Lock()
	e.spare = q[:0]
	e.mu.Unlock()
	return false
}

func (e *netEngine) onRead(ev *netEvent) {
	c := ev.c
	c.reading = false
	if c.state == stateClosed {
		e.pool.put(ev.id) // closed without waiting (a failed engine)
		return
	}
	if ev.n > 0 {
		e.r.received(c, e.pool.bufs[ev.id][:ev.n], ev.id)
	} else {
		e.pool.put(ev.id)
	}
	switch err := ev.err; {
	case err == nil:
	case err == io.EOF:
		e.r.readEnded(c, io.EOF)
	case errors.Is(err, os.ErrDeadlineExceeded) && c.cancelled:
		// We stopped it: paused or closing.
	case c.state != stateClosed:
		e.r.readEnded(c, unwrapOpError(err))
	}
	e.r.afterRead(c)
}

func (e *netEngine) onWrite(ev *netEvent) {
	c := ev.c
	if c.state == stateClosed {
		return
	}
	if ev.err != nil {
		e.r.sendFailed(c, unwrapOpError(ev.err))
		return
	}
	e.r.sendDone(c, ev.n)
}

// unwrapOpError takes the cause out of package net's *net.OpError, which
// the reactor wraps in its own.
func unwrapOpError(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Err
	}
	return err
}

func (e *netEngine) startRead(c *Conn) bool {
	id, buf, _ := e.pool.get() // no limit: one buffer per reading connection
	nc := c.nc
	if nc.stopped {
		nc.stopped = false
		_ = nc.conn.SetReadDeadline(time.Time{})
	}
	c.reading, c.cancelled = true, false
	nc.reads <- netRead{id: id, buf: buf} // the reader is idle: never blocks
	return true
}

func (e *netEngine) stopRead(c *Conn) {
	if c.reading && !c.cancelled {
		c.cancelled = true
		c.nc.stopped = true
		_ = c.nc.conn.SetReadDeadline(longAgo)
	}
}

func (e *netEngine) send(c *Conn) {
	c.nc.writes <- c.inflight[c.sent:] // the writer is idle: never blocks
}

func (e *netEngine) shutdownWrite(c *Conn) {
	if cw, ok := c.nc.conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// abort closes the connection: a blocked Read or Write returns at once.
func (e *netEngine) abort(c *Conn) { _ = c.nc.conn.Close() }

func (e *netEngine) busy(c *Conn) bool { return c.reading || c.sending }

func (e *netEngine) closeConn(c *Conn) {
	nc := c.nc
	if nc.closed {
		return
	}
	nc.closed = true
	_ = nc.conn.Close()
	close(nc.reads)
	close(nc.writes)
}

func (e *netEngine) releaseBuffer(id int32) { e.pool.put(id) }

func (e *netEngine) bufStats() (int, uint64) { return e.pool.stats() }

func (e *netEngine) overflows() uint64 { return 0 }
