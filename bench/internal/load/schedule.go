package load

import "time"

// schedule gives the planned send time of each message of one connection
// under an open-loop load: interval apart, starting at phase, and with
// bursts only inside the ON part of each ON+OFF period (the average rate
// stays the configured one, so the rate while ON is higher by
// (on+off)/on).
type schedule struct {
	phase    int64 // ns
	interval int64 // ns between messages while sending (ON)
	on, off  int64 // ns; on == 0: steady
}

// newSchedule: perConnRate messages/s on average; the first message is
// due phase (a fraction in [0, 1)) of an interval after the start, so
// connections with phases i/n interleave evenly, bursty or not.
func newSchedule(perConnRate float64, on, off time.Duration, phase float64) schedule {
	iv := 1e9 / perConnRate
	if on > 0 {
		iv = iv * float64(on) / float64(on+off)
	}
	return schedule{phase: int64(phase * iv), interval: max(int64(iv), 1), on: int64(on), off: int64(off)}
}

// at is the planned send time of message k (0-based), ns since the start.
func (s schedule) at(k uint64) int64 {
	t := s.phase + int64(k)*s.interval // time measured in ON time
	if s.on == 0 {
		return t
	}
	periods := t / s.on
	return periods*(s.on+s.off) + t%s.on
}
