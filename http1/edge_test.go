package http1

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gyre-io/gyre/reactor"
)

// TestStaleHandle: a Handle outlives its response harmlessly: Post does
// not run the function, Response returns nil, and the next request's
// response is untouched.
func TestStaleHandle(t *testing.T) {
	handles := make(chan Handle, 2)
	s := startServer(t, Config{}, HandlerFunc(func(w *Response, r *Request) {
		handles <- w.Detach()
		if string(r.Path()) == "/first" {
			_, _ = w.WriteString("first")
			_ = w.End()
		}
	}))
	c := dial(t, s)
	br := bufio.NewReader(c)
	_, _ = io.WriteString(c, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
	readResponse(t, br, "GET")
	stale := <-handles
	_, _ = io.WriteString(c, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
	current := <-handles
	ran := make(chan bool, 2)
	if err := stale.Post(func(w *Response, r *Request) { ran <- true }); err != nil {
		t.Fatal(err)
	}
	if err := current.Post(func(w *Response, r *Request) {
		if stale.Response() != nil || current.Response() != w {
			t.Error("Handle.Response: stale handle not nil, or current one wrong")
		}
		_, _ = w.WriteString("second")
		_ = w.End()
		ran <- false
	}); err != nil {
		t.Fatal(err)
	}
	if _, body := readResponse(t, br, "GET"); body != "second" {
		t.Fatalf("second response: %q", body)
	}
	if <-ran {
		t.Fatal("a stale handle's function ran")
	}
}

// TestPipelinedUnreadResponses: a client pipelining requests for large
// responses without reading them: the server stops parsing requests when
// the connection's output is over the high-water mark, so what it holds
// stays bounded (MaxOutput); everything arrives once the client reads.
func TestPipelinedUnreadResponses(t *testing.T) {
	var served atomic.Int64
	const size, n = 100000, 300
	s := startServer(t, Config{}, HandlerFunc(func(w *Response, r *Request) {
		served.Add(1)
		writeBig(w, size)
	}))
	c := dial(t, s)
	go func() {
		_, _ = io.WriteString(c, strings.Repeat("GET / HTTP/1.1\r\nHost: x\r\n\r\n", n))
	}()
	// The output fills (reading pauses), then nothing more is served.
	waitFor(t, "reading to pause on full output", func() bool { return s.Group().Stats().Paused > 0 })
	held := served.Load()*size - int64(s.Group().Stats().BytesOut)
	t.Logf("served %d of %d requests; %d response bytes held by the server", served.Load(), n, held)
	if served.Load() == n {
		t.Fatalf("all %d requests served to a client that reads nothing", n)
	}
	if held > 4<<20+size {
		t.Fatalf("the server holds %d bytes of responses", held)
	}
	br := bufio.NewReader(c)
	for i := 0; i < n; i++ {
		if _, body := readResponse(t, br, "GET"); len(body) != size {
			t.Fatalf("response %d: %d bytes", i, len(body))
		}
	}
}

// TestShutdownSilentConnection: a connection that has sent nothing is
// closed at once by Shutdown (it has no request in progress).
func TestShutdownSilentConnection(t *testing.T) {
	s := startServer(t, Config{}, router{})
	c := dial(t, s)
	waitFor(t, "connection open", func() bool { return s.Group().Stats().Conns == 1 })
	start := time.Now()
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Shutdown took %v for a silent connection", d)
	}
	expectClosed(t, c, bufio.NewReader(c))
	if err := s.Wait(); err != ErrServerClosed {
		t.Fatalf("Wait: %v", err)
	}
}

// TestWhenWritable: a native handler producing a 64 MiB body itself,
// writing while the output is under the high-water mark and continuing in
// WhenWritable, to a client that reads slowly at first: the body arrives
// whole, no write is refused, and the server's unsent output stays
// within the watermark plus one write.
func TestWhenWritable(t *testing.T) {
	const size = 64 << 20
	type state struct{ left int }
	var refused, maxBuffered atomic.Int64
	var produce func(w *Response, r *Request)
	produce = func(w *Response, r *Request) {
		st := r.Value().(*state)
		for st.left > 0 {
			if b := int64(w.Buffered()); b > maxBuffered.Load() {
				maxBuffered.Store(b)
			}
			if int64(w.Buffered()) > DefaultHighWaterForTest {
				w.WhenWritable(produce)
				return
			}
			k := min(st.left, len(pattern))
			if _, err := w.Write(pattern[:k]); err != nil {
				refused.Add(1)
				w.WhenWritable(produce)
				return
			}
			st.left -= k
		}
		_ = w.End()
	}
	s := startServer(t, Config{}, HandlerFunc(func(w *Response, r *Request) {
		w.Detach()
		w.SetContentLength(size)
		r.SetValue(&state{left: size})
		produce(w, r)
	}))
	c := dial(t, s)
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	_, _ = io.WriteString(c, okGet)
	waitFor(t, "the output to fill up first", func() bool { return s.Group().Stats().Paused > 0 })
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != size {
		t.Fatalf("read %d bytes (%v), want %d", n, err, size)
	}
	t.Logf("largest unsent output seen by the producer: %d bytes; writes refused: %d", maxBuffered.Load(), refused.Load())
	if refused.Load() != 0 || maxBuffered.Load() > DefaultHighWaterForTest+int64(len(pattern)) {
		t.Fatalf("producer saw %d unsent bytes, %d refused writes", maxBuffered.Load(), refused.Load())
	}
}

// DefaultHighWaterForTest is the reactor's default WriteHighWater.
const DefaultHighWaterForTest = int64(reactor.DefaultWriteHighWater)
