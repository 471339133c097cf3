package reactor_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gyre-io/gyre/acceptor"
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
	before := openFDs(t)
	g, err := reactor.NewGroup(cfg, h)
	if err != nil {
		t.Fatalf("NewGroup: %v", err)
	}
	a, err := acceptor.Listen(acceptor.Config{Addrs: []string{"127.0.0.1:0"}}, g)
	if err != nil {
		_ = g.Close()
		t.Fatalf("Listen: %v", err)
	}
	s := &server{g: g, a: a, addr: a.Addrs()[0].String()}
	var regions []uintptr
	for i := range g.Reactors() {
		regions = append(regions, reactor.BufferRegion(g, i))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := g.Wait(); err != reactor.ErrServerClosed {
			t.Errorf("Wait after Shutdown = %v, want ErrServerClosed", err)
		}
		checkNoLeaks(t, before, regions)
	})
	return s
}

func (s *server) dial(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

// openFDs lists this process's descriptors and what they point at.
func openFDs(t testing.TB) map[string]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("reading /proc/self/fd: %v", err)
	}
	m := make(map[string]string, len(ents))
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		m[e.Name()] = target
	}
	return m
}

// checkNoLeaks fails if a descriptor opened after before is still open
// (client sockets closed by the test included), or if any io_uring or
// receive-buffer mapping is left.
func checkNoLeaks(t testing.TB, before map[string]string, regions []uintptr) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		var leaked []string
		for fd, target := range openFDs(t) {
			if before[fd] != target && !strings.HasPrefix(target, "/proc/") {
				leaked = append(leaked, fd+" -> "+target)
			}
		}
		maps := mappings(t)
		for _, m := range maps {
			if strings.Contains(m, "io_uring") {
				leaked = append(leaked, "mapping "+m)
			}
		}
		for _, r := range regions {
			prefix := fmt.Sprintf("%x-", r)
			for _, m := range maps {
				if strings.HasPrefix(m, prefix) {
					leaked = append(leaked, "buffer mapping "+m)
				}
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("left behind after shutdown: %v", leaked)
			return
		}
		time.Sleep(20 * time.Millisecond) // client sockets closing
	}
}

func mappings(t testing.TB) []string {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatalf("reading /proc/self/maps: %v", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
