package reactor

import "sync/atomic"

// counters are written by the loop and read by Stats at any time.
type counters struct {
	// flow packs the sockets handed to the reactor so far (high 32 bits,
	// wrapping) and the connections open now (low 32 bits) into one word,
	// so the acceptor's balancer reads both in one load: a socket being
	// opened is never in neither count, nor in both.
	flow                         atomic.Uint64
	accepted, closed             atomic.Int64
	bytesIn, bytesOut            atomic.Uint64
	recvs, sends                 atomic.Uint64
	paused, outputFull, inputMax atomic.Uint64
	rearms                       atomic.Uint64
}

// flow increments (see counters.flow).
const (
	flowHandoff = 1 << 32
	flowOpen    = 1
)

// load reports the sockets handed over so far and the connections open.
func (c *counters) load() (handedOff uint32, conns int) {
	f := c.flow.Load()
	return uint32(f >> 32), int(uint32(f))
}

// Stats is a snapshot of a reactor's (or a group's) counters. The buffer
// and completion-queue counters describe io_uring's provided-buffer ring
// and completion queue; the epoll and net engines report the receive
// buffers they hand out in BufOwned and BufExhausted, and 0 for CQOverflow.
type Stats struct {
	Conns         int64  // open now
	Accepted      int64  // since start
	Closed        int64  // since start
	BytesIn       uint64 // received
	BytesOut      uint64 // confirmed sent
	Recvs         uint64 // receive completions with data
	Sends         uint64 // send completions
	BufExhausted  uint64 // receives that found no free buffer
	BufOwned      int    // receive buffers out of the kernel's reach now
	Rearms        uint64 // receives re-armed (ENOBUFS, end of multishot, resume)
	Paused        uint64 // times reading stopped for backpressure
	OutputFull    uint64 // writes refused with ErrOutputFull
	InputLimit    uint64 // connections closed with ErrInputLimit
	CQOverflow    uint64 // waits that found completions overflowed (io_uring)
	InboxDepth    int64  // tasks waiting in the inbox now
	InboxRejected uint64 // pushes refused with ErrInboxFull
}

func (s *Stats) add(o Stats) {
	s.Conns += o.Conns
	s.Accepted += o.Accepted
	s.Closed += o.Closed
	s.BytesIn += o.BytesIn
	s.BytesOut += o.BytesOut
	s.Recvs += o.Recvs
	s.Sends += o.Sends
	s.BufExhausted += o.BufExhausted
	s.BufOwned += o.BufOwned
	s.Rearms += o.Rearms
	s.Paused += o.Paused
	s.OutputFull += o.OutputFull
	s.InputLimit += o.InputLimit
	s.CQOverflow += o.CQOverflow
	s.InboxDepth += o.InboxDepth
	s.InboxRejected += o.InboxRejected
}

// Stats returns a snapshot of the reactor's counters without stopping it.
// Safe for concurrent use.
func (r *Reactor) Stats() Stats {
	s := Stats{
		Conns:         int64(uint32(r.stats.flow.Load())),
		Accepted:      r.stats.accepted.Load(),
		Closed:        r.stats.closed.Load(),
		BytesIn:       r.stats.bytesIn.Load(),
		BytesOut:      r.stats.bytesOut.Load(),
		Recvs:         r.stats.recvs.Load(),
		Sends:         r.stats.sends.Load(),
		Rearms:        r.stats.rearms.Load(),
		Paused:        r.stats.paused.Load(),
		OutputFull:    r.stats.outputFull.Load(),
		InputLimit:    r.stats.inputMax.Load(),
		InboxDepth:    r.inbox.depth.Load(),
		InboxRejected: r.inbox.full.Load(),
	}
	if r.ready.Load() {
		s.BufOwned, s.BufExhausted = r.eng.bufStats()
		s.CQOverflow = r.eng.overflows()
	}
	return s
}
