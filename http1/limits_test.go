package http1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gyre-io/gyre/reactor"
)

// closedAfter reports how long after start the server closed c (reading
// and dropping whatever it sent), or fails after max.
func closedAfter(t *testing.T, c net.Conn, start time.Time, max time.Duration) time.Duration {
	t.Helper()
	_ = c.SetReadDeadline(start.Add(max))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", max)
	}
	return time.Since(start)
}

// TestSlowloris: a client sending its head one byte per second is cut off
// at ReadHeaderTimeout from its connection, however it trickles; so is
// one that sends nothing; a keep-alive client's next head gets its own
// ReadHeaderTimeout from its first byte.
func TestSlowloris(t *testing.T) {
	const timeout = 2 * time.Second
	s := startServer(t, Config{ReadHeaderTimeout: timeout}, router{})
	var wg sync.WaitGroup
	check := func(name string, c net.Conn, start time.Time, trickle string) {
		defer wg.Done()
		if trickle != "" {
			go func() {
				for i := 0; i < len(trickle); i++ {
					if _, err := c.Write([]byte{trickle[i]}); err != nil {
						return
					}
					time.Sleep(time.Second)
				}
			}()
		}
		d := closedAfter(t, c, start, 3*timeout)
		if d < timeout-200*time.Millisecond || d > timeout+time.Second {
			t.Errorf("%s: closed after %v, want about %v", name, d, timeout)
		}
	}
	head := "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("z", 20) + "\r\n\r\n"
	wg.Add(3)
	start := time.Now()
	go check("one byte per second", dial(t, s), start, head)
	go check("silent", dial(t, s), start, "")
	// Keep-alive: one quick request, then a slow head 500 ms later.
	c := dial(t, s)
	_, _ = io.WriteString(c, okGet)
	br := bufio.NewReader(c)
	readResponse(t, br, "GET")
	time.Sleep(500 * time.Millisecond)
	go check("slow second request", c, time.Now(), head)
	wg.Wait()
}

// TestIdleTimeout: a keep-alive connection is closed after IdleTimeout
// without a request, not before.
func TestIdleTimeout(t *testing.T) {
	const idle = 600 * time.Millisecond
	s := startServer(t, Config{IdleTimeout: idle}, router{})
	c := dial(t, s)
	br := bufio.NewReader(c)
	for i := 0; i < 3; i++ { // each request restarts the clock
		_, _ = io.WriteString(c, okGet)
		readResponse(t, br, "GET")
		time.Sleep(idle / 2)
	}
	_, _ = io.WriteString(c, okGet)
	readResponse(t, br, "GET")
	d := closedAfter(t, c, time.Now(), 5*idle)
	if d < idle-100*time.Millisecond || d > idle+time.Second {
		t.Fatalf("closed after %v, want about %v", d, idle)
	}
}

// TestBodyTimeout: a buffered body that stops arriving, and a streamed
// body the handler reads that stalls, close the connection after
// BodyTimeout; the body handler hears reactor.ErrReadTimeout.
func TestBodyTimeout(t *testing.T) {
	const timeout = 500 * time.Millisecond
	errs := make(chan error, 1)
	s := startServer(t, Config{BodyTimeout: timeout}, HandlerFunc(func(w *Response, r *Request) {
		r.ReadBody(BodyFunc(func(w *Response, r *Request, chunk []byte, err error) {
			if err != nil {
				errs <- err
			}
		}))
	}))
	c := dial(t, s)
	start := time.Now()
	_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten..")
	if d := closedAfter(t, c, start, 10*timeout); d < timeout-100*time.Millisecond {
		t.Fatalf("buffered body: closed after %v, want about %v", d, timeout)
	}

	c = dial(t, s)
	_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
	for i := 0; i < 4; i++ { // bytes keep coming: no timeout
		time.Sleep(timeout / 2)
		_, _ = c.Write(make([]byte, 1000))
	}
	start = time.Now()
	if d := closedAfter(t, c, start, 10*timeout); d < timeout-100*time.Millisecond {
		t.Fatalf("streamed body: closed after %v, want about %v", d, timeout)
	}
	if err := <-errs; !errors.Is(err, reactor.ErrReadTimeout) {
		t.Fatalf("body handler got %v, want ErrReadTimeout", err)
	}
}

// TestSlowReader: a client that does not read a long response is cut off
// SlowReaderTimeout after its output went over the high-water mark.
func TestSlowReader(t *testing.T) {
	const timeout = 500 * time.Millisecond
	s := startServer(t, Config{SlowReaderTimeout: timeout}, HandlerFunc(func(w *Response, r *Request) {
		// A producer that writes until the output is full, then again
		// each time the connection drains (it never does here).
		h := w.Detach()
		var produce func(w *Response, r *Request)
		produce = func(w *Response, r *Request) {
			for w.Buffered() < 1<<20 {
				if _, err := w.Write(pattern); err != nil {
					return
				}
			}
			go func() {
				time.Sleep(50 * time.Millisecond)
				_ = h.Post(produce)
			}()
		}
		produce(w, r)
	}))
	c := dial(t, s)
	_, _ = io.WriteString(c, okGet)
	waitFor(t, "reading paused", func() bool { return s.Group().Stats().Paused > 0 })
	start := time.Now()
	waitFor(t, "the slow reader cut off", func() bool { return s.Group().Stats().Conns == 0 })
	if d := time.Since(start); d > timeout+2*time.Second {
		t.Fatalf("cut off after %v, want about %v", d, timeout)
	}
}

// TestHeadLimits: request line, head size and field count limits, and
// a request line split over several reads.
func TestHeadLimits(t *testing.T) {
	s := startServer(t, Config{MaxRequestLine: 100, MaxHeaderBytes: 1000, MaxHeaders: 5}, router{})
	for _, tc := range []struct {
		raw  string
		code int
	}{
		{"GET /" + strings.Repeat("a", 100) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
		{"GET /" + strings.Repeat("a", 200), 414}, // no end of line yet
		{"GET / HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 1000) + "\r\n\r\n", 431},
		{"GET / HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 1000), 431}, // incomplete
		{"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n", 431},
		{"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 200},
		{"GET /target?" + strings.Repeat("a", 70) + " HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 850) + "\r\n\r\n", 200},
	} {
		c := dial(t, s)
		// Byte by byte for the first 50, to exercise the resumed scan.
		for i := 0; i < min(50, len(tc.raw)); i++ {
			_, _ = c.Write([]byte{tc.raw[i]})
		}
		_, _ = io.WriteString(c, tc.raw[min(50, len(tc.raw)):])
		br := bufio.NewReader(c)
		resp, _ := readResponse(t, br, "GET")
		if resp.StatusCode != tc.code {
			t.Errorf("%q: %d, want %d", trunc(tc.raw), resp.StatusCode, tc.code)
		}
	}
}

// TestManyIdleConnections: 2,000 keep-alive connections, each after one
// request, cost bounded memory: no receive buffer held, no goroutine per
// connection (except on the net engine, whose reader goroutines are its
// design), and a few KiB of heap each, client side included. All of them
// still answer afterwards.
func TestManyIdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	const n = 2000
	s := startServer(t, Config{}, router{})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	conns := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	for i := range conns {
		c, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		defer c.Close()
		conns[i] = c
		readers[i] = bufio.NewReaderSize(c, 256)
		_, _ = io.WriteString(c, okGet)
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, body := readResponse(t, readers[i], "GET"); body != "Hello, World!" {
			t.Fatalf("conn %d: %q", i, body)
		}
	}
	waitFor(t, "all connections open", func() bool { return s.Group().Stats().Conns == n })
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := s.Group().Stats()
	perConn := (int64(after.HeapInuse) - int64(before.HeapInuse)) / n
	extraG := runtime.NumGoroutine() - goroutines
	t.Logf("%d idle connections on %s: %d bytes of heap each (client and server), %d receive buffers held, %d more goroutines",
		n, engineName(s), perConn, st.BufOwned, extraG)
	if st.BufOwned != 0 && s.Group().Engine() != reactor.EngineNet {
		t.Errorf("idle connections hold %d receive buffers", st.BufOwned)
	}
	if extraG > 10 && s.Group().Engine() != reactor.EngineNet {
		t.Errorf("%d more goroutines for %d idle connections", extraG, n)
	}
	if perConn > 8<<10 {
		t.Errorf("%d bytes of heap per idle connection", perConn)
	}
	for i, c := range conns {
		if i%10 != 0 {
			continue
		}
		fmt.Fprintf(c, "GET /target?i=%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		if _, body := readResponse(t, readers[i], "GET"); body != fmt.Sprintf("/target?i=%d", i) {
			t.Fatalf("conn %d after idling: %q", i, body)
		}
	}
}
