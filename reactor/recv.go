package reactor

import (
	"fmt"
	"io"
)

// armRecv starts receiving on c unless it is already, or reading is
// stopped. Without a free receive buffer it waits on the starved list.
func (r *Reactor) armRecv(c *Conn) {
	if c.reading || c.state != stateOpen || c.readStopped() || c.eof {
		return
	}
	if !r.eng.startRead(c) {
		if !c.starved {
			c.starved = true
			r.starved = append(r.starved, c)
		}
	}
}

// armLinger keeps a receive going while lingering, so the peer's EOF is
// seen and its late bytes are discarded. Without a free buffer it gives
// up: lingering is a courtesy, not worth starving open connections.
func (r *Reactor) armLinger(c *Conn) {
	if c.reading {
		return
	}
	if !r.eng.startRead(c) {
		c.closeBy = r.now
	}
}

// stopRead stops receiving on c (pause, close).
func (r *Reactor) stopRead(c *Conn) {
	if c.reading {
		r.eng.stopRead(c)
	}
}

// received is how an engine hands over n received bytes in buffer id.
// The reactor owns the buffer from here and releases it (or a Lease does).
func (r *Reactor) received(c *Conn, view []byte, id int32) {
	r.stats.recvs.Add(1)
	r.stats.bytesIn.Add(uint64(len(view)))
	c.lastActive = r.now
	r.deliver(c, view, id)
}

// readEnded is how an engine reports that receiving on c stopped for good
// (cause io.EOF: the peer's FIN; another error: the socket failed).
func (r *Reactor) readEnded(c *Conn, cause error) {
	c.eof = true
	switch {
	case cause == io.EOF:
		if c.state == stateOpen && c.readStopped() && len(c.acc) > c.accOff {
			// Bytes received after reading stopped wait for the resume:
			// restart presents them, then closes.
			return
		}
		if c.state == stateOpen {
			r.peerFIN(c)
		}
	case c.state == stateOpen || c.state == stateClosing:
		r.closeNow(c, opError("read", c, cause))
	}
}

// peerFIN handles the peer's FIN once the handler has been presented
// every byte before it: a HalfCloseHandler may keep the connection open
// for writing (it is told once; it closes the connection itself later);
// otherwise c closes gracefully.
func (r *Reactor) peerFIN(c *Conn) {
	if c.finTold {
		return // half-closed: the handler closes it
	}
	if hc, ok := r.h.(HalfCloseHandler); ok {
		c.finTold = true
		if hc.OnPeerFIN(c) || c.state != stateOpen {
			return
		}
	}
	r.closeGraceful(c, io.EOF)
}

// afterRead runs when an engine's receive on c has ended (it is no longer
// reading): it starts another if c should still read, and finishes a
// closing connection.
func (r *Reactor) afterRead(c *Conn) {
	if !c.reading && c.state == stateOpen && !c.readStopped() {
		// The receive ended (ENOBUFS, a cancel that raced a resume, the
		// kernel's own choice): start again now, or when buffers return.
		r.stats.rearms.Add(1)
		r.armRecv(c)
	}
	if !c.reading && c.state == stateLinger && !c.eof && r.now < c.closeBy {
		r.armLinger(c)
	}
	r.maybeFinish(c)
}

// deliver hands received bytes to the handler, accumulating what it
// leaves unconsumed.
func (r *Reactor) deliver(c *Conn, view []byte, id int32) {
	if c.state != stateOpen {
		r.eng.releaseBuffer(id) // reading has stopped: late bytes are dropped
		return
	}
	if c.readStopped() {
		// Received before the pause took effect: keep it for the resume,
		// without calling the handler. Bounded by the receives already in
		// flight when the stop landed, so MaxInput is not applied here.
		r.appendInput(c, view)
		r.eng.releaseBuffer(id)
		return
	}
	if len(c.acc) == c.accOff {
		// Fast path: the handler reads straight from the receive buffer.
		r.dropInput(c)
		c.curBuf, c.held, c.inAcc = id, false, false
		n := r.callData(c, view)
		c.curBuf = -1
		if n < len(view) && c.state == stateOpen {
			r.keep(c, view[n:])
		}
		if !c.held {
			r.eng.releaseBuffer(id)
		}
		return
	}
	// The handler sees the new bytes before MaxInput is judged: the limit
	// is on what it leaves, whatever the size of a read.
	r.appendInput(c, view)
	r.eng.releaseBuffer(id)
	r.redeliver(c)
	if c.state == stateOpen && len(c.acc)-c.accOff > r.cfg.MaxInput {
		r.stats.inputMax.Add(1)
		r.closeNow(c, ErrInputLimit)
	}
}

func (r *Reactor) callData(c *Conn, b []byte) int {
	n := r.h.OnData(c, b)
	if n < 0 || n > len(b) {
		r.log.Error("handler returned an out-of-range consumed count; closing", "reactor", r.id, "conn", c.ID(), "consumed", n, "len", len(b))
		r.closeNow(c, fmt.Errorf("reactor: OnData consumed %d of %d bytes", n, len(b)))
		return len(b)
	}
	return n
}

// keep appends unconsumed input to the accumulation buffer, compacting
// first, and closes the connection if it would exceed MaxInput.
func (r *Reactor) keep(c *Conn, b []byte) bool {
	pending := len(c.acc) - c.accOff
	if pending+len(b) > r.cfg.MaxInput {
		r.stats.inputMax.Add(1)
		r.closeNow(c, ErrInputLimit)
		return false
	}
	r.appendInput(c, b)
	return true
}

// dropInput empties the accumulation buffer; sweepSpares takes it back
// once the connection has been quiet for a while.
func (r *Reactor) dropInput(c *Conn) {
	c.acc, c.accOff = c.acc[:0], 0
}

// appendInput appends b to the accumulation buffer, compacting first.
func (r *Reactor) appendInput(c *Conn, b []byte) {
	if cap(c.acc) == 0 {
		c.acc = r.spare.get(len(b))
		r.armSweep()
	}
	if c.accOff > 0 && len(c.acc)+len(b) > cap(c.acc) {
		n := copy(c.acc, c.acc[c.accOff:])
		c.acc, c.accOff = c.acc[:n], 0
	}
	c.acc = append(c.acc, b...)
}

// redeliver presents the kept input (with whatever keep just appended).
// If the handler holds it, the bytes move to the lease and accumulation
// starts afresh.
func (r *Reactor) redeliver(c *Conn) {
	in := c.acc[c.accOff:]
	c.held, c.inAcc = false, true
	n := r.callData(c, in)
	c.inAcc = false
	if c.held {
		rest := in[n:]
		c.acc, c.accOff = nil, 0
		if len(rest) > 0 && c.state == stateOpen {
			r.keep(c, rest)
		}
		return
	}
	c.accOff += n
	if c.accOff == len(c.acc) {
		r.dropInput(c)
	}
}

// pause stops reading from c until its output drains (backpressure).
func (r *Reactor) pause(c *Conn) {
	c.paused = true
	r.stats.paused.Add(1)
	r.stopRead(c)
	if r.ph != nil {
		r.ph.OnPressure(c, true)
	}
}

func (r *Reactor) resume(c *Conn) {
	c.paused = false
	if r.ph != nil {
		r.ph.OnPressure(c, false)
	}
	r.restart(c)
}

// restart presents kept input again and restarts receiving, after
// backpressure or a handler pause ends.
func (r *Reactor) restart(c *Conn) {
	if c.readStopped() || c.state != stateOpen {
		return
	}
	if len(c.acc) > c.accOff {
		// Input the handler left while it could not take it gets another
		// look now; nothing else would present it if the peer sends no more.
		r.redeliver(c)
	}
	if c.eof {
		// The peer's FIN came while reading was stopped.
		if c.state == stateOpen && !c.readStopped() {
			r.peerFIN(c)
		}
		return
	}
	if c.state == stateOpen && !c.readStopped() {
		r.stats.rearms.Add(1)
		r.armRecv(c)
	}
}
