// Package framemem is the ingest node's memory for frames that arrive in
// pieces: one byte budget that every TCP connection and QUIC stream of a
// process draws from while it reassembles a frame too big for its receive
// buffer, and the buffers that budget pays for.
//
// Without it, each connection that announces a large frame and stalls
// holds up to the largest frame in the heap: a thousand such connections
// cost a gigabyte, and the heap keeps it after they leave. With it, the
// sum is bounded, and the buffers live outside the Go heap (see Alloc), so
// the memory goes back to the operating system as soon as a frame is done.
//
// The package is wiring between ingest (which owns the budget, through its
// dispatcher) and quicbridge; it is not public API.
package framemem

import (
	"context"
	"slices"
	"sync"
)

// Budget is a byte semaphore with first-come-first-served waiters:
// Acquire blocks a goroutine (a QUIC stream) until its bytes fit, TryTake
// takes them only if they fit now (a reactor, which must never block).
// Safe for concurrent use.
type Budget struct {
	size int64

	mu      sync.Mutex
	used    int64
	waiters []*waiter // FIFO
	// peak is the most bytes held at once, for metrics and tests.
	peak  int64
	cache bufCache
}

// waiter is an Acquire whose bytes did not fit when it was made.
type waiter struct {
	n       int64
	ready   chan struct{} // closed once the bytes are granted
	granted bool          // (mu)
}

// New returns a budget of size bytes.
func New(size int64) *Budget { return &Budget{size: size} }

// Size returns the budget's size in bytes.
func (b *Budget) Size() int64 { return b.size }

// Held returns the bytes held now.
func (b *Budget) Held() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// Peak returns the most bytes held at once so far.
func (b *Budget) Peak() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak
}

// Waiting returns the number of requests waiting for bytes.
func (b *Budget) Waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.waiters)
}

// takeLocked takes n bytes if they fit and nobody waits ahead.
func (b *Budget) takeLocked(n int64) bool {
	if len(b.waiters) > 0 || b.used+n > b.size {
		return false
	}
	b.used += n
	b.peak = max(b.peak, b.used)
	return true
}

// Acquire takes n bytes, waiting behind earlier waiters while they do not
// fit. It reports whether it had to wait; on ctx's end it returns ctx's
// error and holds nothing. n must not exceed Size.
func (b *Budget) Acquire(ctx context.Context, n int64) (waited bool, err error) {
	b.mu.Lock()
	if b.takeLocked(n) {
		b.mu.Unlock()
		return false, nil
	}
	w := &waiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return true, nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	if w.granted { // granted just as ctx ended: give it back
		b.used -= n
	} else {
		b.waiters = slices.DeleteFunc(b.waiters, func(x *waiter) bool { return x == w })
	}
	b.grantLocked() // the head may have changed
	b.mu.Unlock()
	return true, ctx.Err()
}

// TryTake takes n bytes if they fit now and nobody waits ahead (it does
// not overtake an Acquire), and reports whether it did.
func (b *Budget) TryTake(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.takeLocked(n)
}

// Release returns n bytes and grants the waiters that now fit.
func (b *Budget) Release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.grantLocked()
	b.mu.Unlock()
}

// grantLocked grants waiters in order while they fit.
func (b *Budget) grantLocked() {
	for len(b.waiters) > 0 {
		w := b.waiters[0]
		if b.used+w.n > b.size {
			break
		}
		b.used += w.n
		b.peak = max(b.peak, b.used)
		w.granted = true
		close(w.ready)
		b.waiters[0] = nil
		b.waiters = b.waiters[1:]
	}
}
