package reactor

// closeGraceful stops reading and closes c once its output is sent.
func (r *Reactor) closeGraceful(c *Conn, cause error) {
	if c.state != stateOpen {
		return
	}
	c.state = stateClosing
	c.cause = cause
	c.closedFlag.Store(true)
	r.stopRead(c)
	c.closeBy = r.now + int64(r.cfg.FlushTimeout)
	r.schedule(c)
	if len(c.out) > 0 {
		r.markDirty(c)
	}
	r.maybeFinish(c)
}

// closeNow drops unsent output and closes c as soon as the kernel has
// finished with its in-flight requests.
func (r *Reactor) closeNow(c *Conn, cause error) {
	switch c.state {
	case stateOpen:
		c.cause = cause
	case stateClosing, stateLinger:
		if c.cause == nil {
			c.cause = cause
		}
	default:
		return
	}
	c.state = stateAborted
	c.closedFlag.Store(true)
	c.out = c.out[:0]
	r.stopRead(c)
	if c.sending {
		// Unblock a send stuck on a peer that does not read.
		r.eng.abort(c)
	}
	r.maybeFinish(c)
}

// maybeFinish closes the socket once nothing is in flight and nothing is
// left to send.
func (r *Reactor) maybeFinish(c *Conn) {
	switch c.state {
	case stateOpen, stateClosed:
		return
	case stateClosing:
		if c.sending || len(c.out) > 0 {
			return
		}
		if r.cfg.LingerTimeout > 0 && !c.eof {
			// Everything is sent: queue FIN and read until the peer closes,
			// so unread input does not turn our close into an RST.
			c.state = stateLinger
			c.closeBy = r.now + int64(r.cfg.LingerTimeout)
			r.eng.shutdownWrite(c)
			r.schedule(c)
			r.armLinger(c)
			if c.closeBy > r.now {
				return
			}
		}
	case stateLinger:
		if !c.eof && r.now < c.closeBy {
			return
		}
	}
	if c.reading {
		r.stopRead(c)
	}
	if r.eng.busy(c) {
		return // the engine reports the end of what is in flight
	}
	r.eng.closeConn(c)
	r.finish(c, c.cause)
}

func (r *Reactor) finish(c *Conn, cause error) {
	c.state = stateClosed
	c.closedFlag.Store(true)
	if c.handled {
		r.h.OnClose(c, cause)
	}
	c.fd = -1
	r.spare.put(c.acc)
	r.spare.put(c.out)
	r.spare.put(c.inflight)
	c.acc, c.out, c.inflight = nil, nil, nil
	r.conns[c.index] = nil
	r.free = append(r.free, c.index)
	r.nconns--
	r.stats.flow.Add(^uint64(flowOpen - 1)) // one connection fewer
	r.stats.closed.Add(1)
}

// drain begins a graceful shutdown of every connection.
func (r *Reactor) drain() {
	if r.state != running {
		return
	}
	r.state = draining
	for _, c := range r.conns {
		if c == nil || c.state != stateOpen {
			continue
		}
		if r.sh != nil {
			r.sh.OnShutdown(c)
			// The handler closes it; Shutdown's context bounds the wait.
			continue
		}
		r.closeGraceful(c, ErrServerClosed)
	}
}

// force closes every connection now: the shutdown deadline passed.
func (r *Reactor) force() {
	r.state = forcing
	for _, c := range r.conns {
		if c == nil || c.state == stateClosed {
			continue
		}
		r.closeNow(c, ErrServerClosed)
		if c.state != stateClosed && r.eng.busy(c) {
			// Make a receive that ignores the cancel complete.
			r.eng.abort(c)
		}
	}
}
