package http1

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gyre-io/gyre/internal/leakcheck"
	"github.com/gyre-io/gyre/reactor"
	"go.uber.org/goleak"
)

// The tests run on the engine reactor.EngineAuto picks; GYRE_ENGINE=epoll
// or GYRE_ENGINE=net runs them on another (make test does for epoll).

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var quiet = slog.New(slog.DiscardHandler)

// startServer runs h on a fresh server on a loopback port (one reactor
// unless cfg says otherwise) and registers a cleanup that shuts it down
// and checks that no descriptor or io_uring mapping is left.
func startServer(t testing.TB, cfg Config, h Handler) *Server {
	t.Helper()
	before := leakcheck.Take(t)
	if cfg.Reactor.Reactors == 0 {
		cfg.Reactor.Reactors = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	s := &Server{Handler: h, Config: cfg}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := s.Wait(); err != ErrServerClosed {
			t.Errorf("Wait after Shutdown = %v, want ErrServerClosed", err)
		}
		leakcheck.Check(t, before)
	})
	return s
}

// client returns a net/http client that talks to the test server only and
// whose idle connections are closed at cleanup (before the server's).
func client(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// dial opens a raw connection to s, closed at cleanup.
func dial(t testing.TB, s *Server) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func urlOf(s *Server, path string) string { return "http://" + s.Addr().String() + path }

// readResponse reads one response from br (for the request method).
func readResponse(t testing.TB, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading response body: %v", err)
	}
	resp.Body.Close()
	return resp, string(body)
}

// expectClosed checks that the server closes c (EOF, or a reset) within
// a few seconds, after any bytes still in flight.
func expectClosed(t testing.TB, c net.Conn, br *bufio.Reader) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open: %v", err)
	}
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitSteady polls v until it has not changed for 100 ms, failing t after
// 5 s: for "nothing more moves" (a server that stopped reading), which has
// no event of its own.
func waitSteady(t testing.TB, what string, v func() uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	last, since := v(), time.Now()
	for time.Since(since) < 100*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
		if now := v(); now != last {
			last, since = now, time.Now()
		}
	}
	return last
}

func engineName(s *Server) string { return s.Group().Engine().String() }

// reactorOne is a one-reactor group on the engine Auto picks.
var reactorOne = reactor.Config{Reactors: 1}
