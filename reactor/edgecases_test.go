package reactor_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gyre-io/gyre/internal/leakcheck"
	"github.com/gyre-io/gyre/reactor"
	"go.uber.org/goleak"
)

// laterPerData asks Reactor.Later for a function on every OnData, writes
// more than WriteHighWater and consumes one byte, so that the rest of the
// input is presented again when backpressure ends.
type laterPerData struct {
	reactor.BaseHandler
	calls int // loop-only
	ran   chan int
	big   []byte
}

func (h *laterPerData) OnData(c *reactor.Conn, b []byte) int {
	h.calls++
	n := h.calls
	c.Reactor().Later(func() { h.ran <- n })
	if _, err := c.Write(h.big); err != nil {
		return 0
	}
	return 1
}

// TestLaterFromResumeInFlush: every Later asked for by a handler
// runs, without waiting for an unrelated event. On epoll a send completes
// inside flush, after runLater: backpressure ends there, the kept input is
// presented again and the handler's Later work stays queued while the
// reactor sleeps.
func TestLaterFromResumeInFlush(t *testing.T) {
	h := &laterPerData{ran: make(chan int, 16), big: make([]byte, 2000)}
	cfg := reactor.Config{Reactors: 1, WriteHighWater: 1024, WriteLowWater: 512, MaxOutput: 1 << 20}
	s := start(t, cfg, h)
	c := s.dial(t)
	defer c.Close()
	if _, err := c.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(3 * time.Second)
	for got := 0; got < 3; {
		select {
		case <-h.ran:
			got++
		case <-deadline:
			t.Fatalf("%d of 3 Later functions ran (engine %v): the rest wait for the next event", got, s.g.Engine())
		}
	}
}

// TestLaterFromNotifier: a Notifier served in the loop's second
// notifier pass (after runLater) that asks for Later work must not leave it
// queued while the reactor sleeps.
func TestLaterFromNotifier(t *testing.T) {
	s := start(t, reactor.Config{Reactors: 1}, echo{})
	r := s.g.Reactors()[0]
	ran := make(chan struct{}, 1)
	later := func() { ran <- struct{}{} }
	n := r.NewNotifier(func() { r.Later(later) })
	if err := r.Post(func() { r.Later(n.Notify) }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ran:
	case <-time.After(3 * time.Second):
		t.Fatalf("Later work asked for by a Notifier did not run (engine %v)", s.g.Engine())
	}
}

// TestHeldBuffersStarveAndRecover: two receive buffers shared by 16
// busy connections, every view held until another goroutine has echoed
// it. Receiving starves constantly; no byte may be lost or reordered and
// no buffer may stay owned.
func TestHeldBuffersStarveAndRecover(t *testing.T) {
	h := &holder{opened: make(chan struct{}, 16)} // echoes from a goroutine, then releases
	cfg := reactor.Config{Reactors: 1, Buffers: reactor.BufferConfig{Count: 2, Size: 64}}
	s := start(t, cfg, h)
	echoConns(t, s, 16, 10, 4<<10)
	deadline := time.Now().Add(5 * time.Second)
	for s.g.Stats().BufOwned != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if st := s.g.Stats(); st.BufOwned != 0 {
		t.Errorf("%d buffers still owned", st.BufOwned)
	} else {
		t.Logf("exhausted %d times, %d re-arms", st.BufExhausted, st.Rearms)
	}
}

// pauseEcho echoes, then pauses reading; another goroutine resumes it
// through Post. Each resume must find the input that arrived meanwhile
// (epoll: the edge was spent while reading was stopped).
type pauseEcho struct {
	reactor.BaseHandler
}

func (pauseEcho) OnOpen(c *reactor.Conn) {
	ch := make(chan struct{}, 1)
	c.SetContext(ch)
	go func() {
		for range ch {
			for {
				err := c.Post(func(c *reactor.Conn) { c.ResumeReading() })
				if err != reactor.ErrInboxFull {
					break
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
}

func (pauseEcho) OnData(c *reactor.Conn, b []byte) int {
	if _, err := c.Write(b); err != nil {
		return 0
	}
	c.PauseReading()
	select {
	case c.Context().(chan struct{}) <- struct{}{}:
	default:
	}
	return len(b)
}

func (pauseEcho) OnClose(c *reactor.Conn, _ error) { close(c.Context().(chan struct{})) }

func TestPauseResumeChurn(t *testing.T) {
	s := start(t, reactor.Config{Reactors: 1, Buffers: reactor.BufferConfig{Size: 256}}, pauseEcho{})
	echoConns(t, s, 16, 10, 16<<10)
}

// TestBackpressureChurn: watermarks so low that nearly every write
// pauses reading and every send resumes it (on epoll inside flush, where
// the echo's kept input is presented again).
func TestBackpressureChurn(t *testing.T) {
	cfg := reactor.Config{Reactors: 1, WriteHighWater: 1024, WriteLowWater: 256}
	s := start(t, cfg, echo{})
	echoConns(t, s, 16, 10, 64<<10)
	if st := s.g.Stats(); st.Paused == 0 {
		t.Errorf("never paused")
	}
}

// TestForcedShutdownUnderLoad: clients that send without reading
// leave the server paused with sends stuck; Shutdown's deadline closes
// everything at once, and every goroutine, descriptor and mapping the group
// made is gone when it returns.
func TestForcedShutdownUnderLoad(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	before := leakcheck.Take(t)
	g, a, regions := listen(t, reactor.Config{Reactors: 2, FlushTimeout: time.Minute}, echo{})
	var wg sync.WaitGroup
	var conns []net.Conn
	for i := 0; i < 16; i++ {
		c, err := net.Dial("tcp", a.Addrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			for {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for g.Stats().Paused < 16 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if p := g.Stats().Paused; p < 16 {
		t.Fatalf("only %d pauses", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	if err := g.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("forced Shutdown took %v", d)
	}
	for _, c := range conns {
		_ = c.Close()
	}
	wg.Wait()
	leakcheck.Check(t, before, regions...)
	goleak.VerifyNone(t, ignore)
}

var _ = net.ErrClosed

// TestMaxInputWithLargeReads: MaxInput caps the input a handler
// leaves unconsumed. A handler that always consumes every whole 10-byte
// record never leaves more than 9 bytes, so no MaxInput of a few KiB should
// close it. But keep() counts the next receive before the handler sees it
// (pending + len(view) > MaxInput): with epoll's default 64 KiB reads, a
// burst from the client closes the connection with ErrInputLimit under a
// MaxInput that io_uring's 4 KiB buffers never reach.
func TestMaxInputWithLargeReads(t *testing.T) {
	closed := make(chan error, 1)
	h := &closeRecorder{Handler: reactor.HandlerFunc(func(c *reactor.Conn, b []byte) int {
		n := len(b) / 10 * 10
		_, _ = c.Write(b[:n])
		return n
	}), ch: closed}
	s := start(t, reactor.Config{Reactors: 1, MaxInput: 16 << 10}, h)
	c := s.dial(t)
	defer c.Close()
	data := make([]byte, 1<<20/10*10)
	for i := range data {
		data[i] = byte('a' + i/10%26)
	}
	go func() {
		// 7 bytes first: from then on every receive leaves a partial record.
		_, _ = c.Write(data[:7])
		_, _ = c.Write(data[7:])
	}()
	got := make([]byte, len(data))
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		select {
		case cause := <-closed:
			t.Fatalf("engine %v: connection closed with %v after a handler that never keeps more than 9 bytes", s.g.Engine(), cause)
		case <-time.After(2 * time.Second):
		}
		t.Fatal(err)
	}
}
