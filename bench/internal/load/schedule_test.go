package load

import (
	"testing"
	"time"
)

func TestScheduleSteady(t *testing.T) {
	s := newSchedule(1000, 0, 0, 0.25)
	for k, want := range []int64{250e3, 1250e3, 2250e3} {
		if got := s.at(uint64(k)); got != want {
			t.Errorf("at(%d) = %d, want %d", k, got, want)
		}
	}
}

func TestScheduleBurst(t *testing.T) {
	// 100 msg/s on average, 100ms ON / 300ms OFF: 400 msg/s while ON, so
	// 40 messages in each ON window and none in the OFF part.
	s := newSchedule(100, 100*time.Millisecond, 300*time.Millisecond, 0)
	if s.interval != int64(2500*time.Microsecond) {
		t.Fatalf("interval %d", s.interval)
	}
	for k := uint64(0); k < 200; k++ {
		at := s.at(k)
		if at%int64(400*time.Millisecond) >= int64(100*time.Millisecond) {
			t.Fatalf("message %d planned at %v, in an OFF part", k, time.Duration(at))
		}
	}
	if got := s.at(40); got != int64(400*time.Millisecond) {
		t.Fatalf("message 40 at %v, want the start of the second period", time.Duration(got))
	}
	// Average over whole periods is the configured rate.
	n := 0
	for k := uint64(0); s.at(k) < int64(4*time.Second); k++ {
		n++
	}
	if n != 400 {
		t.Fatalf("%d messages in 4s, want 400", n)
	}
}

// Connections with phases i/n interleave evenly in the ON part too: the
// phase is a fraction of the interval while ON, not of the average one.
func TestScheduleBurstPhases(t *testing.T) {
	const n = 4
	var firsts []int64
	for i := range n {
		s := newSchedule(100, 100*time.Millisecond, 300*time.Millisecond, float64(i)/n)
		firsts = append(firsts, s.at(0))
		if s.at(39) >= int64(100*time.Millisecond) {
			t.Fatalf("conn %d: message 39 at %v, after the first ON part", i, time.Duration(s.at(39)))
		}
	}
	for i, want := range []time.Duration{0, 625 * time.Microsecond, 1250 * time.Microsecond, 1875 * time.Microsecond} {
		if firsts[i] != int64(want) {
			t.Errorf("conn %d starts at %v, want %v", i, time.Duration(firsts[i]), want)
		}
	}
}
