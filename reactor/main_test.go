package reactor_test

import (
	"context"
	"net"
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

// server is a group plus acceptor on a loopback port.
type server struct {
	g    *reactor.Group
	a    *acceptor.Acceptor
	addr string
}

// start runs h on a fresh group and acceptor and registers a cleanup that
// shuts both down and checks that no descriptor, ring or buffer mapping
// is left behind.
func start(t testing.TB, cfg reactor.Config, h reactor.Handler) *server {
	t.Helper()
	before := leakcheck.Take(t)
	g, a, regions := listen(t, cfg, h)
	s := &server{g: g, a: a, addr: a.Addrs()[0].String()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := g.Wait(); err != reactor.ErrServerClosed {
			t.Errorf("Wait after Shutdown = %v, want ErrServerClosed", err)
		}
		leakcheck.Check(t, before, regions...)
	})
	return s
}

// listen starts a group running h and an acceptor on a loopback port, and
// returns them with the addresses of the reactors' buffer mappings (for
// leakcheck.Check after shutdown). Stopping them is the caller's.
func listen(t testing.TB, cfg reactor.Config, h reactor.Handler) (*reactor.Group, *acceptor.Acceptor, []uintptr) {
	t.Helper()
	g, err := reactor.NewGroup(cfg, h)
	if err != nil {
		t.Fatalf("NewGroup: %v", err)
	}
	a, err := acceptor.Listen(acceptor.Config{Addrs: []string{"127.0.0.1:0"}}, g)
	if err != nil {
		_ = g.Close()
		t.Fatalf("Listen: %v", err)
	}
	var regions []uintptr
	for i := range g.Reactors() {
		regions = append(regions, reactor.BufferRegion(g, i))
	}
	return g, a, regions
}

func (s *server) dial(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}
