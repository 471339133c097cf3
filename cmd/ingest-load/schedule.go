package main

import (
	"math"
	"time"
)

// schedule decides when a connection may send, from --rate and --burst.
// Times are nanoseconds since the start of the run, so every connection
// shares the same ON/OFF phases. It is immutable and holds no state: the
// caller passes how many messages it has sent so far.
type schedule struct {
	// perConn is the target rate of one connection in messages per
	// second (0: unlimited).
	perConn float64
	// on and off are the burst phases in nanoseconds (on == 0: no bursts).
	on, off int64
}

func newSchedule(cfg config) schedule {
	s := schedule{on: int64(cfg.BurstOn), off: int64(cfg.BurstOff)}
	if cfg.Rate > 0 {
		s.perConn = cfg.Rate / float64(cfg.loadStreams())
	}
	return s
}

// active returns the ON time elapsed by t, and, if t falls in an OFF
// phase, how long until the next ON phase starts (0 otherwise).
func (s schedule) active(t int64) (act, offWait int64) {
	if s.on == 0 {
		return t, 0
	}
	period := s.on + s.off
	k, ph := t/period, t%period
	if ph >= s.on {
		return (k + 1) * s.on, period - ph
	}
	return k*s.on + ph, 0
}

// allowance returns how many messages a connection that has sent sent
// messages may send at time t (math.MaxInt64: no limit), or, when that is
// 0, how long to wait before asking again.
func (s schedule) allowance(t int64, sent uint64) (n int64, wait time.Duration) {
	act, offWait := s.active(t)
	if offWait > 0 {
		return 0, time.Duration(offWait)
	}
	if s.perConn == 0 {
		return math.MaxInt64, 0
	}
	// Message i (0-based) is due at active time i/perConn: the first one
	// at once, so due = floor(act*perConn) + 1.
	due := uint64(float64(act)*s.perConn/1e9) + 1
	if due > sent {
		return int64(due - sent), 0
	}
	next := int64(math.Ceil(float64(sent) * 1e9 / s.perConn))
	return 0, time.Duration(max(next-act, int64(minPace)))
}

// minPace is the shortest pause between paced sends. Waking every
// connection's writer once per message costs a timer wake-up and a small
// write each; at high rates over many connections that keeps the Go
// scheduler so busy that readers are found late (the netpoller runs when a
// P has nothing else to do) and the measured latency is the client's own.
// Pausing at least 1 ms sends what fell due meanwhile in one batch.
const minPace = time.Millisecond
