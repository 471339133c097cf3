package reactor

func (r *Reactor) markDirty(c *Conn) {
	if !c.inDirty {
		c.inDirty = true
		r.dirty = append(r.dirty, c)
	}
}

// flush starts sends for connections written to in this iteration,
// applies backpressure, and restarts receives starved of buffers.
//
// Backpressure is judged before the send: on epoll the send is a write
// that may complete at once, and a handler that left input unconsumed
// because its output was full relies on the pause and resume to see it
// again. A send that completes at once may resume the connection and run
// its handler, which may mark more connections dirty: the loop takes them
// in the same flush.
func (r *Reactor) flush() {
	for i := 0; i < len(r.dirty); i++ {
		c := r.dirty[i]
		r.dirty[i] = nil
		c.inDirty = false
		if c.state == stateClosed || c.state == stateAborted {
			continue
		}
		if !c.paused && c.state == stateOpen && c.Buffered() > r.cfg.WriteHighWater {
			r.pause(c)
		}
		if !c.sending && len(c.out) > 0 {
			r.startSend(c)
		}
		if c.writeTimeoutAt != 0 {
			r.schedule(c)
		}
	}
	r.dirty = r.dirty[:0]
	if len(r.starved) > 0 {
		s := r.starved
		r.starved = r.starved[len(s):]
		for i, c := range s {
			s[i] = nil
			c.starved = false
			if c.state == stateOpen {
				r.armRecv(c)
			}
		}
		// armRecv may have re-queued some: keep the slice's backing array.
		r.starved = append(s[:0], r.starved...)
	}
}

// startSend moves the iteration's output into flight: out and inflight
// swap, so steady state allocates nothing.
func (r *Reactor) startSend(c *Conn) {
	c.inflight, c.out = c.out, c.inflight[:0]
	c.sent = 0
	c.sending = true
	r.eng.send(c)
}

// sendDone is how an engine reports that n bytes of c.inflight[c.sent:]
// left. It sends the rest, then whatever was written meanwhile.
func (r *Reactor) sendDone(c *Conn, n int) {
	c.sending = false
	r.stats.sends.Add(1)
	r.stats.bytesOut.Add(uint64(n))
	c.lastActive = r.now
	c.sent += n
	if c.state == stateAborted {
		r.maybeFinish(c)
		return
	}
	switch {
	case c.sent < len(c.inflight):
		// Partial send: the rest goes next, before anything newer.
		c.sending = true
		r.eng.send(c)
	case len(c.out) > 0:
		c.inflight = c.inflight[:0]
		r.startSend(c)
	default:
		// Everything is out. Buffers of a spare's size go back at once,
		// so a request-response connection holds none between requests
		// and a burst over many connections needs few. Larger ones, grown
		// by a stream, stay while the connection is busy (it would regrow
		// them on every burst); sweepSpares takes them back once it has
		// been quiet for a while.
		c.sent = 0
		if cap(c.inflight) <= spareSize && cap(c.out) <= spareSize {
			r.spare.put(c.inflight)
			r.spare.put(c.out)
			c.inflight, c.out = nil, nil
		} else {
			c.inflight = c.inflight[:0]
		}
	}
	if c.state == stateClosed {
		return // a send that completed at once failed and closed c (epoll)
	}
	if c.paused && c.Buffered() <= r.cfg.WriteLowWater {
		r.resume(c)
	}
	r.maybeFinish(c)
}

// sendFailed is how an engine reports that sending on c failed: the
// connection is closed and its unsent output dropped.
func (r *Reactor) sendFailed(c *Conn, err error) {
	c.sending = false
	r.spare.put(c.inflight)
	c.inflight, c.sent = nil, 0
	if c.state == stateOpen || c.state == stateClosing {
		r.closeNow(c, opError("write", c, err))
	}
	r.maybeFinish(c)
}
