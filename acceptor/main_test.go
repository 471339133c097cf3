package acceptor_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gyre-io/gyre/acceptor"
	"github.com/gyre-io/gyre/internal/leakcheck"
	"github.com/gyre-io/gyre/reactor"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// quiet is a logger for tests that provoke warnings on purpose.
var quiet = slog.New(slog.DiscardHandler)

// echo writes back what it receives and records which reactor took each
// connection, keyed by the peer's address (the client's LocalAddr).
type echo struct {
	open func(c *reactor.Conn) // optional, runs in OnOpen

	mu     sync.Mutex
	byPeer map[string]int
	opened []string // local addresses of accepted connections, in order
}

func newEcho() *echo { return &echo{byPeer: map[string]int{}} }

func (h *echo) OnOpen(c *reactor.Conn) {
	h.mu.Lock()
	if ra := c.RemoteAddr(); ra != nil {
		h.byPeer[ra.String()] = c.Reactor().ID()
	}
	if la := c.LocalAddr(); la != nil {
		h.opened = append(h.opened, la.String())
	}
	h.mu.Unlock()
	if h.open != nil {
		h.open(c)
	}
}

func (h *echo) OnData(c *reactor.Conn, b []byte) int {
	_, _ = c.Write(b)
	return len(b)
}

func (h *echo) OnClose(*reactor.Conn, error) {}

// reactorOf waits until the server side of client has opened and returns
// the ID of the reactor that owns it.
func (h *echo) reactorOf(t testing.TB, client net.Conn) int {
	t.Helper()
	key := client.LocalAddr().String()
	id := -1
	waitFor(t, "server side of "+key+" opened", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		v, ok := h.byPeer[key]
		id = v
		return ok
	})
	return id
}

func (h *echo) openedOn(local string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, a := range h.opened {
		if a == local {
			n++
		}
	}
	return n
}

// checkFDs records the open descriptors now and registers a cleanup, run
// after every cleanup registered later, that fails the test if any
// descriptor opened since is still open or an io_uring mapping is left.
// Call it first in every test.
func checkFDs(t *testing.T) {
	t.Helper()
	before := leakcheck.Take(t)
	t.Cleanup(func() { leakcheck.Check(t, before) })
}

// newGroup starts n reactors running h and registers a cleanup that shuts
// them down (closing every acceptor registered with the group) and checks
// that Wait reports a clean stop.
func newGroup(t *testing.T, n int, h reactor.Handler) *reactor.Group {
	t.Helper()
	return newGroupOn(t, reactor.EngineAuto, n, h)
}

// newGroupOn is newGroup on a given engine.
func newGroupOn(t *testing.T, e reactor.Engine, n int, h reactor.Handler) *reactor.Group {
	t.Helper()
	g, err := reactor.NewGroup(reactor.Config{Engine: e, Reactors: n, Logger: quiet}, h)
	if err != nil {
		t.Fatalf("NewGroup: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("group Shutdown: %v", err)
		}
		if err := g.Wait(); err != reactor.ErrServerClosed {
			t.Errorf("group Wait = %v, want ErrServerClosed", err)
		}
	})
	return g
}

// listen starts an acceptor on g; the group's cleanup closes it.
func listen(t *testing.T, cfg acceptor.Config, g *reactor.Group) *acceptor.Acceptor {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	a, err := acceptor.Listen(cfg, g)
	if err != nil {
		t.Fatalf("Listen(%v): %v", cfg.Addrs, err)
	}
	return a
}

// dial connects to addr; the connection is closed at cleanup (before the
// group shuts down).
func dial(t *testing.T, addr net.Addr) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial %v: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip sends msg and checks that exactly msg comes back.
func roundTrip(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	if err := roundTripErr(c, msg); err != nil {
		t.Fatalf("echo on %v: %v", c.LocalAddr(), err)
	}
}

func roundTripErr(c net.Conn, msg string) error {
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if string(got) != msg {
		return fmt.Errorf("echo = %q, want %q", got, msg)
	}
	return c.SetDeadline(time.Time{})
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

// waitAccepted waits until the acceptor has counted n hand-offs (the count
// lags the reactor's OnOpen by the MSG_RING's own completion).
func waitAccepted(t testing.TB, a *acceptor.Acceptor, n uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("Stats().Accepted == %d", n), func() bool { return a.Stats().Accepted >= n })
	if got := a.Stats(); got.Accepted != n {
		t.Fatalf("Stats().Accepted = %d, want %d (%+v)", got.Accepted, n, got)
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// portFree checks that addr can be bound again, i.e. no listener was left.
func portFree(t testing.TB, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Errorf("%s still bound: %v", addr, err)
		return
	}
	_ = ln.Close()
}

// hasIPv6Loopback reports whether ::1 can be bound.
func hasIPv6Loopback() bool {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}
