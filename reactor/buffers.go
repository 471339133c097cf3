package reactor

import "sync/atomic"

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
// connection has something to hold and given back as soon as it has
// nothing: an idle connection holds no buffer, however large its last
// burst was, and a busy one allocates nothing in steady state.
const (
	spareSize     = 2 << 10  // a fresh spare's capacity: most replies fit
	spareMaxCap   = 64 << 10 // larger buffers are left to the collector
	spareMaxBytes = 4 << 20  // the most the spares hold, per reactor
)

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
