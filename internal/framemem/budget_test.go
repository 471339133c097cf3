package framemem

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestBudgetOrder: blocked Acquires are granted in arrival order, a later
// small one does not overtake an earlier large one, and TryTake does not
// overtake any.
func TestBudgetOrder(t *testing.T) {
	b := New(100)
	if !b.TryTake(80) {
		t.Fatal("80 of 100 free bytes were not taken")
	}
	order := make(chan string, 2)
	acquire := func(name string, n int64) {
		if _, err := b.Acquire(context.Background(), n); err != nil {
			t.Error(err)
		}
		order <- name
	}
	go acquire("big", 60)
	waitWaiting(t, b, 1)
	go acquire("small", 10) // fits, but big came first
	waitWaiting(t, b, 2)
	if b.TryTake(5) {
		t.Fatal("TryTake overtook waiting Acquires")
	}
	b.Release(40) // room for big (60) only: small must not go first
	if got := <-order; got != "big" {
		t.Fatalf("first grant went to %s, want big", got)
	}
	if b.Waiting() != 1 {
		t.Fatalf("%d waiting after the first grant, want 1 (small)", b.Waiting())
	}
	b.Release(40)
	if got := <-order; got != "small" {
		t.Fatalf("second grant went to %s, want small", got)
	}
	b.Release(70)
	if b.Held() != 0 || b.Peak() != 100 {
		t.Fatalf("held %d peak %d, want 0 and 100", b.Held(), b.Peak())
	}
}

// TestBudgetAcquireCancelled: an Acquire whose context ends holds nothing
// and lets the requests behind it through.
func TestBudgetAcquireCancelled(t *testing.T) {
	b := New(10)
	b.TryTake(10)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { _, err := b.Acquire(ctx, 8); errc <- err }()
	waitWaiting(t, b, 1)
	done := make(chan struct{})
	go func() { _, _ = b.Acquire(context.Background(), 2); close(done) }()
	waitWaiting(t, b, 2)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire after its context ended: %v", err)
	}
	b.Release(2) // room for the second, now at the head
	<-done
	if b.Waiting() != 0 || b.Held() != 10 {
		t.Fatalf("%d waiting, %d held; want 0 and 10", b.Waiting(), b.Held())
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := b.Acquire(ctx2, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire past its deadline: %v", err)
	}
}

// TestBuffers: Alloc gives writable buffers of the size asked for, Free
// keeps a few for reuse (up to the cache's share of the budget), and after
// Close freed buffers are not kept.
func TestBuffers(t *testing.T) {
	b := New(64 << 20)
	x := b.Alloc(100 << 10)
	if len(x) != 100<<10 {
		t.Fatalf("len %d", len(x))
	}
	for i := range x {
		x[i] = byte(i)
	}
	b.Free(x)
	y := b.Alloc(50 << 10) // reuses the cached one
	if &y[0] != &x[0] {
		t.Error("a freed buffer was not reused")
	}
	b.Free(y)
	var many [][]byte
	for range 20 { // 20 MiB: more than the cache keeps
		many = append(many, b.Alloc(1<<20))
	}
	for _, m := range many {
		b.Free(m)
	}
	if b.cache.bytes > cacheMax {
		t.Fatalf("the cache keeps %d bytes, over %d", b.cache.bytes, cacheMax)
	}
	b.Close()
	z := b.Alloc(1 << 20)
	b.Free(z)
	if len(b.cache.free) != 0 {
		t.Fatal("a buffer freed after Close was cached")
	}
}

func waitWaiting(t *testing.T, b *Budget, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for b.Waiting() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d waiting, want %d", b.Waiting(), n)
		}
		time.Sleep(time.Millisecond)
	}
}
