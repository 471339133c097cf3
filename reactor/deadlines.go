package reactor

import "time"

// schedule makes sure the connection's earliest deadline has a timer entry.
func (r *Reactor) schedule(c *Conn) {
	when := r.nextDeadline(c)
	if when == 0 {
		return
	}
	if when <= r.now {
		// Due already but not acted on (e.g. waiting for a cancel): look
		// again shortly rather than spin in runTimers.
		when = r.now + int64(time.Millisecond)
	}
	if c.timerAt == 0 || when < c.timerAt {
		c.timerAt = when
		r.timers.add(timerEntry{when: when, index: c.index, gen: c.gen})
	}
}

func (r *Reactor) nextDeadline(c *Conn) int64 {
	var when int64
	consider := func(t int64) {
		if t != 0 && (when == 0 || t < when) {
			when = t
		}
	}
	if c.state == stateOpen {
		consider(c.readTimeoutAt)
		if r.cfg.IdleTimeout > 0 {
			consider(c.lastActive + int64(r.cfg.IdleTimeout))
		}
	}
	consider(c.writeTimeoutAt)
	switch c.state {
	case stateClosing:
		consider(c.closeBy)
	case stateLinger:
		if !c.eof {
			consider(c.closeBy)
		}
	}
	return when
}

func (r *Reactor) runTimers() {
	for {
		e, ok := r.timers.popDue(r.now)
		if !ok {
			return
		}
		if e.index == sweepIndex {
			r.sweepSpares()
			continue
		}
		if e.index == tickIndex {
			if d := r.tk.OnTick(r); d > 0 {
				r.timers.add(timerEntry{when: r.now + int64(d), index: tickIndex})
			}
			continue
		}
		c := r.conn(e.gen, e.index)
		if c == nil || c.timerAt != e.when {
			continue // stale entry
		}
		c.timerAt = 0
		r.expire(c)
		if c.state != stateClosed {
			r.schedule(c)
		}
	}
}

// expire acts on whichever of c's deadlines have passed.
func (r *Reactor) expire(c *Conn) {
	now := r.now
	if c.writeTimeoutAt != 0 && now >= c.writeTimeoutAt {
		c.writeTimeoutAt = 0
		if c.Buffered() > 0 {
			r.closeNow(c, ErrWriteTimeout)
			return
		}
	}
	switch c.state {
	case stateOpen:
		if c.readTimeoutAt != 0 && now >= c.readTimeoutAt {
			r.closeGraceful(c, ErrReadTimeout)
		} else if r.cfg.IdleTimeout > 0 && now-c.lastActive >= int64(r.cfg.IdleTimeout) {
			r.closeGraceful(c, ErrIdleTimeout)
		}
	case stateClosing:
		if now >= c.closeBy {
			r.closeNow(c, ErrFlushTimeout)
		}
	case stateLinger:
		c.eof = true // the linger time is over: stop reading, cancel, close
		r.maybeFinish(c)
	}
}
