// Package sys holds the operating-system helpers that gyre's event loops
// (the reactors and the acceptor) share, so each exists once: the
// eventfd that wakes a loop, descriptor closing, and the loop's yield to
// the Go scheduler.
package sys

import (
	"runtime"
	"time"
)

// YieldEvery is how often a busy event loop yields to the Go scheduler.
// The runtime's sysmon treats a goroutine that has not passed through the
// scheduler for 10 ms as running too long; when it finds that goroutine in
// a system call (a loop waiting in io_uring_enter or epoll_wait), it takes
// its P away, wakes another thread to run it, and goes back to polling
// every 20 µs. A loop goroutine never passes through the scheduler on its
// own, so without this that happened every 10 ms, costing several percent
// of a core in thread wake-ups. A yield of a locked goroutine costs two
// thread switches; every 5 ms that is a few hundred a second.
const YieldEvery = 5 * time.Millisecond

// Yielder yields to the scheduler at most every YieldEvery. Loop-only.
type Yielder struct{ last int64 }

// Maybe yields if YieldEvery has passed since the last yield; now is the
// loop's clock in nanoseconds.
func (y *Yielder) Maybe(now int64) {
	if now-y.last > int64(YieldEvery) {
		y.last = now
		runtime.Gosched()
	}
}
