package reactor_test

import (
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gyre-io/gyre/reactor"
)

// TestNotifierSeesEveryUpdate: 50 goroutines each publish 200 updates and
// call Notify after each; the reactor's function, which reads the
// published total, finally sees all of them, runs on the reactor, and runs
// no more often than it was notified.
func TestNotifierSeesEveryUpdate(t *testing.T) {
	s := start(t, reactor.Config{Reactors: 1}, reactor.BaseHandler{})
	r := s.g.Reactors()[0]
	var published atomic.Int64
	var seen, runs atomic.Int64
	var offLoop atomic.Bool
	n := r.NewNotifier(func() {
		runs.Add(1)
		seen.Store(published.Load())
		if err := r.Post(func() {}); err != nil { // Post works from the loop too
			offLoop.Store(true)
		}
	})
	const writers, each = 50, 200
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				published.Add(1)
				n.Notify()
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for seen.Load() != writers*each {
		if time.Now().After(deadline) {
			t.Fatalf("the reactor saw %d of %d updates after 5 s (%d runs)", seen.Load(), writers*each, runs.Load())
		}
		time.Sleep(time.Millisecond)
	}
	if got := runs.Load(); got < 1 || got > writers*each {
		t.Fatalf("%d runs for %d notifications", got, writers*each)
	}
	if offLoop.Load() {
		t.Fatal("Post from the notified function failed")
	}
}

// TestNotifierWakesIdleReactor: a reactor with nothing to do sleeps in
// io_uring_enter; one Notify wakes it, every time.
func TestNotifierWakesIdleReactor(t *testing.T) {
	s := start(t, reactor.Config{Reactors: 1}, reactor.BaseHandler{})
	r := s.g.Reactors()[0]
	ran := make(chan struct{}, 1)
	n := r.NewNotifier(func() { ran <- struct{}{} })
	for i := 0; i < 20; i++ {
		time.Sleep(2 * time.Millisecond) // let it fall asleep
		n.Notify()
		select {
		case <-ran:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: Notify did not wake the idle reactor", i)
		}
	}
}

// TestNotifierAfterClose: Notify on a stopped reactor does nothing, and
// does not panic or block.
func TestNotifierAfterClose(t *testing.T) {
	g, err := reactor.NewGroup(reactor.Config{Reactors: 1}, reactor.BaseHandler{})
	if err != nil {
		t.Fatal(err)
	}
	n := g.Reactors()[0].NewNotifier(func() {})
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	n.Notify()
	n.Notify()
}

// laterHandler answers each receive from a Later function: the reply is
// written after the handler returned and still leaves in the same flush.
type laterHandler struct {
	reactor.BaseHandler
	calls atomic.Int64
}

func (h *laterHandler) OnData(c *reactor.Conn, b []byte) int {
	n := len(b)
	r := c.Reactor()
	h.calls.Add(1)
	r.Later(func() {
		// Runs on the reactor, after OnData, before the flush.
		_, _ = c.Write([]byte{byte(n)})
		r.Later(func() { _, _ = c.Write([]byte{'!'}) }) // Later from Later runs too
	})
	return n
}

func TestLater(t *testing.T) {
	h := &laterHandler{}
	s := start(t, reactor.Config{Reactors: 1}, h)
	c := s.dial(t)
	defer c.Close()
	for i := 1; i <= 5; i++ {
		if _, err := c.Write(make([]byte, i)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 2)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if got[0] != byte(i) || got[1] != '!' {
			t.Fatalf("round %d: got %q, want [%d '!']", i, got, i)
		}
	}
}
