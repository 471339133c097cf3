package quicbridge

import (
	"context"
	"sync"
	"sync/atomic"
)

// budget is a byte semaphore with first-come-first-served waiters: the
// bound on the stream buffers of the whole bridge. Safe for concurrent use.
//
// The bridge uses two budgets and one rule that keeps them deadlock-free:
// a stream waits for a read buffer (the small budget) only while it holds
// nothing, and waits for a large-frame buffer only while holding at most a
// read buffer. Holders of a large-frame buffer wait for nothing but client
// bytes and queue room, so every wait ends once clients send or the sink
// drains, and no cycle of holders can form.
type budget struct {
	size int64

	mu      sync.Mutex
	used    int64
	waiters []*budgetWaiter // FIFO

	inUse atomic.Int64 // mirror of used for lock-free reading
}

type budgetWaiter struct {
	n     int64
	ready chan struct{} // closed once the bytes are granted
}

func newBudget(size int64) *budget { return &budget{size: size} }

// acquire takes n bytes, waiting behind earlier waiters while they do not
// fit. It reports whether it had to wait; on ctx's end it returns ctx's
// error and holds nothing. n must not exceed the budget's size.
func (b *budget) acquire(ctx context.Context, n int64) (waited bool, err error) {
	b.mu.Lock()
	if len(b.waiters) == 0 && b.used+n <= b.size {
		b.used += n
		b.inUse.Store(b.used)
		b.mu.Unlock()
		return false, nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return true, nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	select {
	case <-w.ready: // granted just as ctx ended: give it back
		b.used -= n
	default:
		for i, x := range b.waiters {
			if x == w {
				b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
				break
			}
		}
	}
	b.grantLocked() // the head may have changed
	b.mu.Unlock()
	return true, ctx.Err()
}

// release returns n bytes and wakes the waiters that now fit.
func (b *budget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.grantLocked()
	b.mu.Unlock()
}

func (b *budget) grantLocked() {
	for len(b.waiters) > 0 {
		w := b.waiters[0]
		if b.used+w.n > b.size {
			break
		}
		b.used += w.n
		close(w.ready)
		b.waiters[0] = nil
		b.waiters = b.waiters[1:]
	}
	b.inUse.Store(b.used)
}

// used returns the bytes held now.
func (b *budget) held() int64 { return b.inUse.Load() }
