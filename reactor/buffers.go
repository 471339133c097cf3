package reactor

import (
	"sync/atomic"
	"time"
)

// bufPool hands out the receive buffers of the engines that read with
// read(2) or package net (epoll, net), by ID so that a Lease works the same
// on every engine. A buffer is in the pool or owned (by the engine reading
// into it, by the handler during OnData, or by a Lease); limit bounds the
// owned ones (0: no bound). Loop-only, except the counters.
type bufPool struct {
	size  int
	limit int
	bufs  [][]byte // by ID
	taken []bool   // by ID: owned
	free  []int32

	owned     atomic.Int64
	exhausted atomic.Uint64
}

// get takes a buffer, allocating one while under the limit. ok is false
// when every buffer is owned.
func (p *bufPool) get() (id int32, b []byte, ok bool) {
	if n := len(p.free); n > 0 {
		id = p.free[n-1]
		p.free = p.free[:n-1]
		p.taken[id] = true
		p.owned.Add(1)
		return id, p.bufs[id], true
	}
	if !p.available() {
		p.exhausted.Add(1)
		return -1, nil, false
	}
	id = int32(len(p.bufs))
	p.bufs = append(p.bufs, make([]byte, p.size))
	p.taken = append(p.taken, true)
	p.owned.Add(1)
	return id, p.bufs[id], true
}

// put returns buffer id. Returning a buffer that is not owned panics, as
// bufring does: somebody could still be reading it.
func (p *bufPool) put(id int32) {
	if id < 0 || int(id) >= len(p.bufs) {
		panic("reactor: release of an unknown receive buffer")
	}
	if !p.taken[id] {
		panic("reactor: receive buffer released twice")
	}
	p.taken[id] = false
	p.free = append(p.free, id)
	p.owned.Add(-1)
}

func (p *bufPool) stats() (int, uint64) { return int(p.owned.Load()), p.exhausted.Load() }

// available reports whether get would succeed.
func (p *bufPool) available() bool {
	return len(p.free) > 0 || p.limit == 0 || len(p.bufs) < p.limit
}

// The output buffers (Conn.out, Conn.inflight) and the accumulation buffer
// (Conn.acc) of a connection are taken from the reactor's spares when the
// connection first has something to hold, kept while it is busy, and given
// back once it has been quiet for sweepQuiet (sweepSpares, every
// sweepEvery while any connection holds buffers): an idle connection holds
// no buffer, however large its last burst was, and a busy one neither
// allocates nor regrows its buffers.
const (
	spareSize     = 2 << 10  // a fresh spare's capacity: most replies fit
	spareMaxCap   = 64 << 10 // larger buffers are left to the collector
	spareMaxBytes = 4 << 20  // the most the spares hold, per reactor
	sweepEvery    = 500 * time.Millisecond
	sweepQuiet    = 500 * time.Millisecond
)

// armSweep schedules a sweep if none is: a connection now holds buffers.
func (r *Reactor) armSweep() {
	if !r.sweeping {
		r.sweeping = true
		r.timers.add(timerEntry{when: r.now + int64(sweepEvery), index: sweepIndex})
	}
}

// sweepSpares takes back the buffers of connections that have nothing
// buffered, nothing in flight and no activity for sweepQuiet, and schedules
// the next sweep while some connection still holds buffers. It visits
// every connection: a few nanoseconds each, twice a second.
func (r *Reactor) sweepSpares() {
	r.sweeping = false
	holding := false
	quietSince := r.now - int64(sweepQuiet)
	for _, c := range r.conns {
		if c == nil || cap(c.acc)+cap(c.out)+cap(c.inflight) == 0 {
			continue
		}
		if c.sending || len(c.out) > 0 || len(c.acc) > c.accOff || c.lastActive > quietSince {
			holding = true
			continue
		}
		r.spare.put(c.acc)
		r.spare.put(c.out)
		r.spare.put(c.inflight)
		c.acc, c.accOff, c.out, c.inflight, c.sent = nil, 0, nil, nil, 0
	}
	if holding {
		r.armSweep()
	}
}

// spares is a reactor's free list of byte buffers. Loop-only.
type spares struct {
	free  [][]byte
	bytes int
}

// get returns an empty buffer with room for at least n bytes.
func (s *spares) get(n int) []byte {
	for i := len(s.free) - 1; i >= 0 && i >= len(s.free)-4; i-- {
		if b := s.free[i]; cap(b) >= n {
			last := len(s.free) - 1
			s.free[i] = s.free[last]
			s.free[last] = nil
			s.free = s.free[:last]
			s.bytes -= cap(b)
			return b
		}
	}
	return make([]byte, 0, max(n, spareSize))
}

// put keeps b for reuse if it is not too large and the spares have room.
func (s *spares) put(b []byte) {
	if cap(b) == 0 || cap(b) > spareMaxCap || s.bytes+cap(b) > spareMaxBytes {
		return
	}
	s.free = append(s.free, b[:0])
	s.bytes += cap(b)
}
