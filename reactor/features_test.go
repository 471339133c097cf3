package reactor_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gyre-io/gyre/acceptor"
	"github.com/gyre-io/gyre/internal/leakcheck"
	"github.com/gyre-io/gyre/internal/uring"
	"github.com/gyre-io/gyre/reactor"
)

// connGrabber hands each opened connection to the test.
type connGrabber struct {
	reactor.BaseHandler
	opened chan *reactor.Conn
	closed chan error
}

func newGrabber() *connGrabber {
	return &connGrabber{opened: make(chan *reactor.Conn, 16), closed: make(chan error, 16)}
}

func (h *connGrabber) OnOpen(c *reactor.Conn)           { h.opened <- c }
func (h *connGrabber) OnClose(_ *reactor.Conn, e error) { h.closed <- e }

func (h *connGrabber) conn(t *testing.T) *reactor.Conn {
	t.Helper()
	select {
	case c := <-h.opened:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("OnOpen did not run")
		return nil
	}
}

// TestAsyncWriteManyGoroutines: 100 goroutines AsyncWrite framed messages
// to one connection; every message arrives whole and in per-goroutine order.
func TestAsyncWriteManyGoroutines(t *testing.T) {
	h := newGrabber()
	s := start(t, reactor.Config{Reactors: 1, InboxSize: 64}, h)
	client := s.dial(t)
	defer client.Close()
	sc := h.conn(t)

	const writers, perWriter = 100, 50
	var sentBytes atomic.Int64
	var rejected atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for seq := 0; seq < perWriter; seq++ {
				msg := frame(w, seq, 1+rng.IntN(2000))
				for {
					err := sc.AsyncWrite(msg)
					if err == nil {
						break
					}
					if !errors.Is(err, reactor.ErrInboxFull) {
						t.Errorf("AsyncWrite: %v", err)
						return
					}
					rejected.Add(1)
					time.Sleep(50 * time.Microsecond)
				}
				sentBytes.Add(int64(len(msg)))
			}
		}(w)
	}
	next := make([]int, writers)
	_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
	hdr := make([]byte, 8)
	for got := 0; got < writers*perWriter; got++ {
		if _, err := io.ReadFull(client, hdr); err != nil {
			t.Fatalf("after %d messages: %v", got, err)
		}
		w, seq, n := int(binary.BigEndian.Uint16(hdr)), int(binary.BigEndian.Uint32(hdr[2:])), int(binary.BigEndian.Uint16(hdr[6:]))
		body := make([]byte, n)
		if _, err := io.ReadFull(client, body); err != nil {
			t.Fatal(err)
		}
		if w >= writers || seq != next[w] {
			t.Fatalf("message %d: writer %d seq %d, want seq %d", got, w, seq, next[w])
		}
		if !bytes.Equal(append(hdr[:8:8], body...), frame(w, seq, n)) {
			t.Fatalf("writer %d seq %d arrived torn", w, seq)
		}
		next[w]++
	}
	wg.Wait()
	t.Logf("%d bytes in %d messages; %d inbox-full retries", sentBytes.Load(), writers*perWriter, rejected.Load())
}

func frame(w, seq, n int) []byte {
	b := make([]byte, 8+n)
	binary.BigEndian.PutUint16(b, uint16(w))
	binary.BigEndian.PutUint32(b[2:], uint32(seq))
	binary.BigEndian.PutUint16(b[6:], uint16(n))
	for i := 8; i < len(b); i++ {
		b[i] = byte(w*31 + seq*7 + i)
	}
	return b
}

func TestIdleTimeout(t *testing.T) {
	h := newGrabber()
	s := start(t, reactor.Config{Reactors: 1, IdleTimeout: 150 * time.Millisecond}, h)
	c := s.dial(t)
	defer c.Close()
	h.conn(t)
	began := time.Now()
	if cause := waitCause(t, h.closed); !errors.Is(cause, reactor.ErrIdleTimeout) {
		t.Fatalf("cause = %v, want ErrIdleTimeout", cause)
	}
	if d := time.Since(began); d < 100*time.Millisecond {
		t.Errorf("closed after %v, before the idle timeout", d)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("client read = %v, want EOF", err)
	}
}

// TestIdleTimeoutActivity: traffic keeps an idle timeout from firing.
func TestIdleTimeoutActivity(t *testing.T) {
	h := &closeRecorder{Handler: echo{}, ch: make(chan error, 1)}
	s := start(t, reactor.Config{Reactors: 1, IdleTimeout: time.Second}, h)
	c := s.dial(t)
	defer c.Close()
	// 8 x 200 ms of traffic spans well over the timeout; each gap is far
	// under it, even on a loaded machine.
	for i := 0; i < 8; i++ {
		if err := roundTrip(c, []byte("ping")); err != nil {
			t.Fatalf("round trip %d: %v", i, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	select {
	case cause := <-h.ch:
		t.Fatalf("closed while active: %v", cause)
	default:
	}
}

type deadlineHandler struct {
	*connGrabber
	read, write time.Duration
	payload     []byte
}

func (h *deadlineHandler) OnOpen(c *reactor.Conn) {
	if h.read > 0 {
		c.SetReadTimeoutAt(time.Now().Add(h.read))
	}
	if h.write > 0 {
		c.SetWriteTimeoutAt(time.Now().Add(h.write))
		for off := 0; off < len(h.payload); off += 1 << 20 {
			if _, err := c.Write(h.payload[off:min(off+1<<20, len(h.payload))]); err != nil {
				panic(err)
			}
		}
	}
	h.connGrabber.OnOpen(c)
}

func TestReadTimeoutAt(t *testing.T) {
	h := &deadlineHandler{connGrabber: newGrabber(), read: 200 * time.Millisecond}
	s := start(t, reactor.Config{Reactors: 1}, h)
	c := s.dial(t)
	defer c.Close()
	h.conn(t)
	// Traffic does not move a read timeout.
	go func() {
		for i := 0; i < 20; i++ {
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	if cause := waitCause(t, h.closed); !errors.Is(cause, reactor.ErrReadTimeout) {
		t.Fatalf("cause = %v, want ErrReadTimeout", cause)
	}
}

func TestWriteTimeoutAt(t *testing.T) {
	h := &deadlineHandler{connGrabber: newGrabber(), write: 200 * time.Millisecond, payload: make([]byte, 8<<20)}
	cfg := reactor.Config{Reactors: 1, MaxOutput: 16 << 20}
	before := leakcheck.Take(t)
	g, err := reactor.NewGroup(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	// Small socket buffers so the payload cannot hide in the kernel.
	a, err := acceptor.Listen(acceptor.Config{Addrs: []string{"127.0.0.1:0"}, SendBuffer: 16 << 10}, g)
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
	}}
	c, err := d.Dial("tcp", a.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	h.conn(t)
	if cause := waitCause(t, h.closed); !errors.Is(cause, reactor.ErrWriteTimeout) {
		t.Fatalf("cause = %v, want ErrWriteTimeout", cause)
	}
	c.Close()
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	leakcheck.Check(t, before)
}

// TestWriteTimeoutAtMet: a write timeout with output sent in time is
// harmless.
func TestWriteTimeoutAtMet(t *testing.T) {
	h := &deadlineHandler{connGrabber: newGrabber(), write: 100 * time.Millisecond, payload: []byte("small")}
	s := start(t, reactor.Config{Reactors: 1}, h)
	c := s.dial(t)
	defer c.Close()
	h.conn(t)
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond)
	select {
	case cause := <-h.closed:
		t.Fatalf("closed: %v", cause)
	default:
	}
}

// TestShutdown500 holds 500 connections open and shuts down: within the
// deadline, every client sees EOF, and nothing is left behind (checked by
// start's cleanup and goleak).
func TestShutdown500(t *testing.T) {
	h := &closeRecorder{Handler: echo{}, ch: make(chan error, 600)}
	before := leakcheck.Take(t)
	g, a, regions := listen(t, reactor.Config{Reactors: 2}, h)
	conns := make([]net.Conn, 500)
	for i := range conns {
		c, err := net.Dial("tcp", a.Addrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		if err := roundTrip(c, []byte("hi")); err != nil {
			t.Fatal(err)
		}
	}
	if n := g.Stats().Conns; n != 500 {
		t.Fatalf("Conns = %d, want 500", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	t.Logf("shutdown of 500 connections took %v", time.Since(began))
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("conn %d: read after shutdown = %v, want EOF", i, err)
		}
		c.Close()
	}
	for i := 0; i < 500; i++ {
		if cause := <-h.ch; !errors.Is(cause, reactor.ErrServerClosed) || !errors.Is(cause, net.ErrClosed) {
			t.Fatalf("close cause = %v, want ErrServerClosed (a net.ErrClosed)", cause)
		}
	}
	if err := a.Wait(); err != reactor.ErrServerClosed {
		t.Errorf("acceptor Wait = %v", err)
	}
	if _, err := net.DialTimeout("tcp", a.Addrs()[0].String(), time.Second); err == nil {
		t.Error("listener still accepts after Shutdown")
	}
	leakcheck.Check(t, before, regions...)
}

// stubborn never closes on OnShutdown: Shutdown must force-close at the
// deadline.
type stubborn struct {
	echo
	asked atomic.Int32
}

func (h *stubborn) OnShutdown(*reactor.Conn) { h.asked.Add(1) }

func TestShutdownForcesAtDeadline(t *testing.T) {
	h := &stubborn{}
	before := leakcheck.Take(t)
	g, err := reactor.NewGroup(reactor.Config{Reactors: 1}, h)
	if err != nil {
		t.Fatal(err)
	}
	a, err := acceptor.Listen(acceptor.Config{Addrs: []string{"127.0.0.1:0"}}, g)
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	for i := 0; i < 20; i++ {
		c, err := net.Dial("tcp", a.Addrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		if err := roundTrip(c, []byte("x")); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	if err := g.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("forced shutdown took %v", d)
	}
	if n := h.asked.Load(); n != 20 {
		t.Errorf("OnShutdown ran %d times, want 20", n)
	}
	for _, c := range conns {
		c.Close()
	}
	leakcheck.Check(t, before)
}

// TestRingRefused simulates a kernel that refuses io_uring when io_uring
// is asked for explicitly: the error says so clearly, wraps
// errors.ErrUnsupported, and nothing leaks.
func TestRingRefused(t *testing.T) {
	before := leakcheck.Take(t)
	cfg := reactor.WithRingFlags(reactor.Config{Engine: reactor.EngineIOUring, Reactors: 2}, 1<<28)
	g, err := reactor.NewGroup(cfg, echo{})
	if err == nil {
		_ = g.Close()
		t.Fatal("NewGroup succeeded with an unsupported setup flag")
	}
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("error %q does not wrap errors.ErrUnsupported", err)
	}
	if !strings.Contains(err.Error(), "refused setup flags") || !strings.Contains(err.Error(), "io_uring_setup") {
		t.Errorf("error %q does not say what was refused", err)
	}
	leakcheck.Check(t, before)
}

// TestFaultInjection fakes ENOBUFS and EAGAIN on receives and EAGAIN and
// short sends on sends; the echo must still be byte-exact.
func TestFaultInjection(t *testing.T) {
	var n atomic.Int64
	var recvFaults, sendFaults atomic.Int64
	fault := func(kind uring.Kind, length int) uring.Action {
		i := n.Add(1)
		switch {
		case kind == uring.KindRecv && i%3 == 0:
			recvFaults.Add(1)
			return uring.Action{Fake: true, Res: -int32(syscall.ENOBUFS)}
		case kind == uring.KindRecv && i%5 == 0:
			recvFaults.Add(1)
			return uring.Action{Fake: true, Res: -int32(syscall.EAGAIN)}
		case kind == uring.KindSend && i%4 == 0:
			sendFaults.Add(1)
			return uring.Action{Fake: true, Res: -int32(syscall.EAGAIN)}
		case kind == uring.KindSend && length > 100:
			sendFaults.Add(1)
			return uring.Action{Len: 1 + int(i%97)}
		}
		return uring.Action{}
	}
	cfg := reactor.WithRingFault(reactor.Config{Engine: reactor.EngineIOUring, Reactors: 1, Buffers: bufringSmall}, fault)
	s := start(t, cfg, echo{})
	echoConns(t, s, 8, 5, 20<<10)
	if recvFaults.Load() == 0 || sendFaults.Load() == 0 {
		t.Fatalf("faults injected: %d recv, %d send", recvFaults.Load(), sendFaults.Load())
	}
}

// holder keeps each received view past OnData and hands it, with its
// lease, to one goroutine per connection that echoes it with AsyncWrite and
// then releases the lease from that goroutine.
type holder struct {
	reactor.BaseHandler
	wg     sync.WaitGroup
	opened chan struct{}
}

type heldView struct {
	b     []byte
	lease reactor.Lease
}

func (h *holder) OnOpen(c *reactor.Conn) {
	ch := make(chan heldView, 1024)
	c.SetContext(ch)
	h.wg.Add(1)
	h.opened <- struct{}{} // orders Add before the test's Wait
	go func() {
		defer h.wg.Done()
		for v := range ch {
			time.Sleep(50 * time.Microsecond)
			for c.AsyncWrite(v.b) == reactor.ErrInboxFull {
				time.Sleep(time.Millisecond)
			}
			v.lease.Release()
		}
	}()
}

func (h *holder) OnData(c *reactor.Conn, b []byte) int {
	c.Context().(chan heldView) <- heldView{b: b, lease: c.Hold()}
	return len(b)
}

func (h *holder) OnClose(c *reactor.Conn, _ error) { close(c.Context().(chan heldView)) }

func TestHoldAndRelease(t *testing.T) {
	h := &holder{opened: make(chan struct{}, 1)}
	s := start(t, reactor.Config{Reactors: 1, Buffers: bufringSmall}, h)
	c := s.dial(t)
	defer c.Close()
	<-h.opened
	rng := rand.New(rand.NewPCG(9, 9))
	for i := 0; i < 200; i++ {
		if err := roundTrip(c, randomBytes(rng, 1+rng.IntN(200))); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	h.wg.Wait()
	deadline := time.Now().Add(2 * time.Second)
	for s.g.Stats().BufOwned != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if owned := s.g.Stats().BufOwned; owned != 0 {
		t.Errorf("%d buffers still owned after every lease was released", owned)
	}
}

// pressure records backpressure events and answers each byte with 64 KiB.
type pressure struct {
	reactor.BaseHandler
	mu     sync.Mutex
	events []bool
	maxBuf int
}

var chunk = make([]byte, 64<<10)

func (h *pressure) OnData(c *reactor.Conn, b []byte) int {
	for i := range b {
		if _, err := c.Write(chunk); err != nil {
			return i // answered i requests; the rest come again on resume
		}
	}
	h.mu.Lock()
	h.maxBuf = max(h.maxBuf, c.Buffered())
	h.mu.Unlock()
	return len(b)
}

func (h *pressure) OnPressure(_ *reactor.Conn, paused bool) {
	h.mu.Lock()
	h.events = append(h.events, paused)
	h.mu.Unlock()
}

// TestBackpressure: a client that does not read makes the server stop
// reading (paused), memory stays under MaxOutput, and reading resumes once
// the client drains.
func TestBackpressure(t *testing.T) {
	h := &pressure{}
	cfg := reactor.Config{Reactors: 1, WriteHighWater: 256 << 10, WriteLowWater: 64 << 10, MaxOutput: 1 << 20}
	s := start(t, cfg, h)
	c := s.dial(t)
	defer c.Close()
	// 400 requests = 25 MiB of answers; the client reads none yet.
	if _, err := c.Write(make([]byte, 400)); err != nil {
		t.Fatal(err)
	}
	// Wait (bounded) for the pause: on a loaded machine it may take a while.
	var paused bool
	var maxBuf int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		h.mu.Lock()
		paused = len(h.events) > 0 && h.events[0]
		maxBuf = h.maxBuf
		h.mu.Unlock()
		if paused {
			break
		}
	}
	if !paused {
		t.Fatal("the server did not pause reading for a client that reads nothing")
	}
	if maxBuf > cfg.MaxOutput {
		t.Errorf("buffered output reached %d, over MaxOutput %d", maxBuf, cfg.MaxOutput)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.CopyN(io.Discard, c, 400*64<<10); err != nil {
		t.Fatalf("reading the answers: %v", err)
	}
	// The last send's completion may be handled just after the client read
	// its bytes: give the reactor a moment.
	deadline := time.Now().Add(2 * time.Second)
	for {
		h.mu.Lock()
		last := h.events[len(h.events)-1]
		n := len(h.events)
		h.mu.Unlock()
		if !last {
			t.Logf("%d pause/resume events", n)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still paused after the client drained (%d events); stats %+v", n, s.g.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestInputLimit: a handler that never consumes hits MaxInput and the
// connection closes with ErrInputLimit.
func TestInputLimit(t *testing.T) {
	h := &closeRecorder{Handler: reactor.HandlerFunc(func(*reactor.Conn, []byte) int { return 0 }), ch: make(chan error, 1)}
	s := start(t, reactor.Config{Reactors: 1, MaxInput: 4096}, h)
	c := s.dial(t)
	defer c.Close()
	_, _ = c.Write(make([]byte, 10000))
	if cause := waitCause(t, h.ch); !errors.Is(cause, reactor.ErrInputLimit) {
		t.Fatalf("cause = %v, want ErrInputLimit", cause)
	}
	if st := s.g.Stats(); st.InputLimit != 1 {
		t.Errorf("InputLimit = %d, want 1", st.InputLimit)
	}
}

// TestPartialConsumption: a handler that consumes only whole 10-byte
// records gets the remainder again, followed by newer bytes.
func TestPartialConsumption(t *testing.T) {
	var mu sync.Mutex
	var records []string
	h := reactor.HandlerFunc(func(c *reactor.Conn, b []byte) int {
		n := len(b) / 10 * 10
		mu.Lock()
		for i := 0; i < n; i += 10 {
			records = append(records, string(b[i:i+10]))
		}
		mu.Unlock()
		_, _ = c.Write(b[:n])
		return n
	})
	s := start(t, reactor.Config{Reactors: 1, Buffers: bufringSmall}, h)
	c := s.dial(t)
	defer c.Close()
	var all bytes.Buffer
	for i := 0; i < 500; i++ {
		all.WriteString(strings.Repeat(string(rune('a'+i%26)), 10))
	}
	data := all.Bytes()
	// Odd-sized writes split records across receives.
	go func() {
		for off := 0; off < len(data); off += 7 {
			_, _ = c.Write(data[off:min(off+7, len(data))])
		}
	}()
	got := make([]byte, len(data))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("records came back altered")
	}
	mu.Lock()
	defer mu.Unlock()
	for i, r := range records {
		if r != string(data[i*10:i*10+10]) {
			t.Fatalf("record %d = %q", i, r)
		}
	}
}

// TestPost runs functions on the reactor from other goroutines, in order.
func TestPost(t *testing.T) {
	h := newGrabber()
	s := start(t, reactor.Config{Reactors: 1}, h)
	c := s.dial(t)
	defer c.Close()
	sc := h.conn(t)
	for i := 0; i < 10; i++ {
		i := i
		if err := sc.Post(func(c *reactor.Conn) { _, _ = c.Write([]byte{byte('0' + i)}) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := sc.Close(); err != nil { // from another goroutine: queued after the Posts
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "0123456789" {
		t.Fatalf("got %q", got)
	}
	if cause := waitCause(t, h.closed); cause != nil {
		t.Errorf("cause = %v, want nil (closed by us)", cause)
	}
	if err := sc.AsyncWrite([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("AsyncWrite after close = %v, want net.ErrClosed", err)
	}
	done := make(chan struct{})
	if err := s.g.Reactors()[0].Post(func() { close(done) }); err != nil {
		t.Fatal(err)
	}
	<-done
}

// gate pauses reading after each message until the test opens it.
type gate struct {
	reactor.BaseHandler
	opened chan *reactor.Conn
	got    chan string
}

func (h *gate) OnOpen(c *reactor.Conn) { h.opened <- c }

func (h *gate) OnData(c *reactor.Conn, b []byte) int {
	h.got <- string(b)
	c.PauseReading()
	return len(b)
}

// TestPauseReading: while paused, nothing is delivered; on resume the
// bytes that waited in the kernel arrive, intact.
func TestPauseReading(t *testing.T) {
	h := &gate{opened: make(chan *reactor.Conn, 1), got: make(chan string, 16)}
	s := start(t, reactor.Config{Reactors: 1}, h)
	c := s.dial(t)
	defer c.Close()
	sc := <-h.opened
	if _, err := c.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	if got := <-h.got; got != "first" {
		t.Fatalf("got %q", got)
	}
	if _, err := c.Write([]byte("second")); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-h.got:
		t.Fatalf("delivered %q while paused", got)
	case <-time.After(200 * time.Millisecond):
	}
	paused := make(chan bool, 1)
	if err := sc.Post(func(c *reactor.Conn) { paused <- c.ReadingPaused(); c.ResumeReading() }); err != nil {
		t.Fatal(err)
	}
	if !<-paused {
		t.Error("ReadingPaused = false while paused")
	}
	select {
	case got := <-h.got:
		if got != "second" {
			t.Fatalf("got %q after resume", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing delivered after ResumeReading")
	}
}

// ticker counts OnTick calls per reactor and stops after five.
type ticker struct {
	echo
	mu    sync.Mutex
	ticks map[int]int
	at    map[int][]time.Time
}

func (h *ticker) OnTick(r *reactor.Reactor) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ticks[r.ID()]++
	h.at[r.ID()] = append(h.at[r.ID()], r.Now())
	if h.ticks[r.ID()] >= 5 {
		return 0
	}
	return 20 * time.Millisecond
}

// TestTicker: OnTick runs on every reactor, at the delay it returns, and
// stops when it returns 0.
func TestTicker(t *testing.T) {
	h := &ticker{ticks: map[int]int{}, at: map[int][]time.Time{}}
	start(t, reactor.Config{Reactors: 2}, h)
	time.Sleep(400 * time.Millisecond)
	h.mu.Lock()
	defer h.mu.Unlock()
	for id := 0; id < 2; id++ {
		if h.ticks[id] != 5 {
			t.Errorf("reactor %d ticked %d times, want 5", id, h.ticks[id])
		}
		at := h.at[id]
		for i := 1; i < len(at); i++ {
			if d := at[i].Sub(at[i-1]); d < 15*time.Millisecond {
				t.Errorf("reactor %d: ticks %v apart, want about 20ms", id, d)
			}
		}
	}
}

// TestStatsCount: the counters match the traffic.
func TestStatsCount(t *testing.T) {
	s := start(t, reactor.Config{Reactors: 1}, echo{})
	c := s.dial(t)
	msg := make([]byte, 10000)
	for i := 0; i < 10; i++ {
		if err := roundTrip(c, msg); err != nil {
			t.Fatal(err)
		}
	}
	// The client can read the last echo before the reactor has handled
	// that send's completion: give the counter a moment.
	deadline0 := time.Now().Add(2 * time.Second)
	for s.g.Stats().BytesOut < 100000 && time.Now().Before(deadline0) {
		time.Sleep(time.Millisecond)
	}
	st := s.g.Stats()
	if st.BytesIn != 100000 || st.BytesOut != 100000 {
		t.Errorf("BytesIn %d BytesOut %d, want 100000 each", st.BytesIn, st.BytesOut)
	}
	if st.Conns != 1 || st.Accepted != 1 || st.Recvs == 0 || st.Sends == 0 {
		t.Errorf("stats %+v", st)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for s.g.Stats().Conns != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := s.g.Stats(); st.Conns != 0 || st.Closed != 1 || st.BufOwned != 0 {
		t.Errorf("after close: %+v", st)
	}
}

// TestLingeringClose: the server writes a goodbye and closes while the
// client is still sending. The client must read the goodbye and then a
// clean EOF: closing with unread input would make the kernel send RST and
// drop the goodbye.
func TestLingeringClose(t *testing.T) {
	goodbye := bytes.Repeat([]byte("goodbye "), 64<<10) // 512 KiB, more than one send
	h := reactor.HandlerFunc(func(c *reactor.Conn, b []byte) int {
		if !c.Closed() {
			_, _ = c.Write(goodbye)
			_ = c.Close()
		}
		return len(b)
	})
	s := start(t, reactor.Config{Reactors: 1}, h)
	for i := 0; i < 5; i++ {
		c := s.dial(t)
		stop := make(chan struct{})
		go func() {
			buf := make([]byte, 32<<10)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		close(stop)
		c.Close()
		if err != nil {
			t.Fatalf("round %d: reading the goodbye: %v (after %d bytes)", i, err, len(got))
		}
		if !bytes.Equal(got, goodbye) {
			t.Fatalf("round %d: got %d bytes, want the %d-byte goodbye", i, len(got), len(goodbye))
		}
	}
}

func TestEnsureGOMAXPROCS(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(1)
	if prev := reactor.EnsureGOMAXPROCS(2); prev != 1 || runtime.GOMAXPROCS(0) != 4 {
		t.Fatalf("EnsureGOMAXPROCS(2) = %d, GOMAXPROCS now %d; want 1 and 4", prev, runtime.GOMAXPROCS(0))
	}
	if prev := reactor.EnsureGOMAXPROCS(1); prev != 0 || runtime.GOMAXPROCS(0) != 4 {
		t.Fatalf("second call = %d, GOMAXPROCS %d; want 0 and unchanged 4", prev, runtime.GOMAXPROCS(0))
	}
}

// A server pinned to one CPU gets GOMAXPROCS 1 from Go; NewGroup raises it
// so waiting reactors keep their Ps, unless told to keep it. The net
// engine's reactors wait in the scheduler, holding no P: it is left alone.
func TestNewGroupGOMAXPROCS(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	t.Setenv("GOMAXPROCS", "") // as when it is not set
	runtime.GOMAXPROCS(1)
	g, err := reactor.NewGroup(reactor.Config{Engine: reactor.EngineNet, Reactors: 1}, reactor.BaseHandler{})
	if err != nil {
		t.Fatal(err)
	}
	got := runtime.GOMAXPROCS(0)
	_ = g.Close()
	if got != 1 {
		t.Errorf("net engine: GOMAXPROCS %d after NewGroup, want 1 (left alone)", got)
	}
	for _, keep := range []bool{true, false} {
		runtime.GOMAXPROCS(1)
		g, err := reactor.NewGroup(reactor.Config{Engine: reactor.EngineEpoll, Reactors: 1, KeepGOMAXPROCS: keep}, reactor.BaseHandler{})
		if err != nil {
			t.Fatal(err)
		}
		got := runtime.GOMAXPROCS(0)
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		want := 3
		if keep {
			want = 1
		}
		if got != want {
			t.Errorf("KeepGOMAXPROCS %v: GOMAXPROCS %d after NewGroup, want %d", keep, got, want)
		}
	}
}

// An explicit GOMAXPROCS in the environment is the operator's choice:
// NewGroup leaves it alone.
func TestNewGroupGOMAXPROCSFromEnv(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	t.Setenv("GOMAXPROCS", "1")
	runtime.GOMAXPROCS(1)
	g, err := reactor.NewGroup(reactor.Config{Reactors: 1}, reactor.BaseHandler{})
	if err != nil {
		t.Fatal(err)
	}
	got := runtime.GOMAXPROCS(0)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if got != 1 {
		t.Fatalf("GOMAXPROCS %d after NewGroup with GOMAXPROCS=1 in the environment, want 1", got)
	}
}
