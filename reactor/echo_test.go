package reactor_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gyre-io/gyre/reactor"
)

// echo sends every byte back. When output is full it consumes nothing, so
// the bytes stay queued and reading pauses until output drains.
type echo struct{ reactor.BaseHandler }

func (echo) OnData(c *reactor.Conn, b []byte) int {
	if _, err := c.Write(b); err != nil {
		return 0
	}
	return len(b)
}

// roundTrip writes msg and reads back len(msg) bytes concurrently, and
// checks the echo by hash.
func roundTrip(c net.Conn, msg []byte) error {
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		errc <- err
	}()
	h := sha256.New()
	if _, err := io.CopyN(h, c, int64(len(msg))); err != nil {
		return err
	}
	if err := <-errc; err != nil {
		return err
	}
	want := sha256.Sum256(msg)
	if !bytes.Equal(h.Sum(nil), want[:]) {
		return errors.New("echoed bytes differ from sent bytes")
	}
	return nil
}

func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestEchoSizes(t *testing.T) {
	s := start(t, reactor.Config{Reactors: 2}, echo{})
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{1, 2, 100, 4095, 4096, 4097, 65536, 1<<20 + 7, 4 << 20}
	c := s.dial(t)
	defer c.Close()
	for _, n := range sizes {
		if err := roundTrip(c, randomBytes(rng, n)); err != nil {
			t.Fatalf("%d-byte message: %v", n, err)
		}
	}
}

// echoConns runs n connections at once, each round-tripping msgs messages
// of random sizes up to maxSize.
func echoConns(t *testing.T, s *server, n, msgs, maxSize int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", s.addr, 10*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for m := 0; m < msgs; m++ {
				if err := roundTrip(c, randomBytes(rng, 1+rng.IntN(maxSize))); err != nil {
					errs <- err
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestEchoOneConnection(t *testing.T) {
	s := start(t, reactor.Config{Reactors: 1}, echo{})
	echoConns(t, s, 1, 50, 64<<10)
}

func TestEcho100Connections(t *testing.T) {
	s := start(t, reactor.Config{Reactors: 2}, echo{})
	echoConns(t, s, 100, 20, 32<<10)
	if st := s.g.Stats(); st.Accepted != 100 {
		t.Errorf("Accepted = %d, want 100", st.Accepted)
	}
}

func TestEcho2000Connections(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	s := start(t, reactor.Config{Reactors: 2}, echo{})
	echoConns(t, s, 2000, 3, 2048)
}

// TestPipelinedSmallWrites sends many tiny writes without waiting and
// checks the concatenation comes back intact and in order.
func TestPipelinedSmallWrites(t *testing.T) {
	s := start(t, reactor.Config{Reactors: 1}, echo{})
	c := s.dial(t)
	defer c.Close()
	const writes = 20000
	var sent bytes.Buffer
	go func() {
		for i := 0; i < writes; i++ {
			msg := []byte{byte(i), byte(i >> 8), byte(i >> 16), '\n'}
			sent.Write(msg)
			if _, err := c.Write(msg); err != nil {
				return
			}
		}
	}()
	got := make([]byte, writes*4)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < writes; i++ {
		want := []byte{byte(i), byte(i >> 8), byte(i >> 16), '\n'}
		if !bytes.Equal(got[i*4:i*4+4], want) {
			t.Fatalf("write %d arrived as %v, want %v", i, got[i*4:i*4+4], want)
		}
	}
}

// TestHalfClose: the client sends, shuts down its write side, and still
// gets every byte back before the server closes.
func TestHalfClose(t *testing.T) {
	closed := make(chan error, 1)
	h := &closeRecorder{Handler: echo{}, ch: closed}
	s := start(t, reactor.Config{Reactors: 1}, h)
	c := s.dial(t).(*net.TCPConn)
	defer c.Close()
	msg := randomBytes(rand.New(rand.NewPCG(3, 3)), 300<<10)
	go func() {
		_, _ = c.Write(msg)
		_ = c.CloseWrite()
	}()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("got %d bytes back, want %d intact", len(got), len(msg))
	}
	if cause := waitCause(t, closed); cause != io.EOF {
		t.Errorf("close cause = %v, want io.EOF", cause)
	}
}

// TestClientReset: a client that resets mid-stream closes the server side
// with a connection-reset error, and the server keeps serving others.
func TestClientReset(t *testing.T) {
	closed := make(chan error, 1)
	s := start(t, reactor.Config{Reactors: 1}, &closeRecorder{Handler: echo{}, ch: closed})
	c := s.dial(t).(*net.TCPConn)
	// Unread echo data plus SO_LINGER 0 makes close send RST.
	if _, err := c.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	_ = c.SetLinger(0)
	_ = c.Close()
	cause := waitCause(t, closed)
	var op *net.OpError
	if !errors.As(cause, &op) || !(errors.Is(cause, syscall.ECONNRESET) || errors.Is(cause, syscall.EPIPE)) {
		t.Errorf("close cause = %v, want a *net.OpError with ECONNRESET or EPIPE", cause)
	}
	c2 := s.dial(t)
	defer c2.Close()
	if err := roundTrip(c2, []byte("still serving")); err != nil {
		t.Fatal(err)
	}
}

// TestServerCloseFlushesPendingWrites: Close from the handler right after
// a large Write still delivers every byte, then EOF.
func TestServerCloseFlushesPendingWrites(t *testing.T) {
	payload := randomBytes(rand.New(rand.NewPCG(5, 5)), 2<<20)
	h := reactor.HandlerFunc(func(c *reactor.Conn, b []byte) int {
		if _, err := c.Write(payload); err != nil {
			t.Errorf("Write: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		return len(b)
	})
	s := start(t, reactor.Config{Reactors: 1}, h)
	c := s.dial(t)
	defer c.Close()
	if _, err := c.Write([]byte("go")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("got %d bytes, want %d intact", len(got), len(payload))
	}
}

// TestTinyBufferRing: 8 buffers of 64 bytes shared by 64 busy connections.
// The ring runs dry constantly; no byte may be lost or reordered. The
// provided-buffer ring is io_uring's.
func TestTinyBufferRing(t *testing.T) {
	cfg := reactor.Config{Engine: reactor.EngineIOUring, Reactors: 1, Buffers: reactor.BufferConfig{Count: 8, Size: 64}}
	s := start(t, cfg, echo{})
	echoConns(t, s, 64, 10, 8<<10)
	if st := s.g.Stats(); st.BufExhausted == 0 {
		t.Errorf("BufExhausted = 0: the test did not exhaust the ring")
	} else {
		t.Logf("buffer ring exhausted %d times, %d re-arms", st.BufExhausted, st.Rearms)
	}
}

// closeRecorder reports each OnClose cause.
type closeRecorder struct {
	reactor.Handler
	ch chan error
}

func (h *closeRecorder) OnClose(c *reactor.Conn, cause error) {
	h.Handler.OnClose(c, cause)
	select {
	case h.ch <- cause:
	default:
	}
}

func waitCause(t *testing.T, ch chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("OnClose did not run")
		return nil
	}
}

// bufringSmall makes receives land in many small buffers, so data crosses
// buffer boundaries often.
var bufringSmall = reactor.BufferConfig{Count: 64, Size: 128}
