package acceptor_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gyre-io/gyre/acceptor"
	"github.com/gyre-io/gyre/internal/leakcheck"
	"github.com/gyre-io/gyre/reactor"
	"golang.org/x/sys/unix"
)

func TestListenIPv4(t *testing.T) {
	checkFDs(t)
	h := newEcho()
	g := newGroup(t, 2, h)
	a := listen(t, acceptor.Config{Addrs: []string{"127.0.0.1:0"}}, g)

	addrs := a.Addrs()
	if len(addrs) != 1 {
		t.Fatalf("Addrs() = %v, want one address", addrs)
	}
	ta, ok := addrs[0].(*net.TCPAddr)
	if !ok || !ta.IP.Equal(net.IPv4(127, 0, 0, 1)) || ta.Port == 0 {
		t.Fatalf("Addrs()[0] = %#v, want 127.0.0.1 with a bound port", addrs[0])
	}
	const n = 6
	for i := 0; i < n; i++ {
		c := dial(t, ta)
		roundTrip(t, c, fmt.Sprintf("hello %d", i))
		if got := c.RemoteAddr().(*net.TCPAddr).Port; got != ta.Port {
			t.Errorf("connected to port %d, Addrs says %d", got, ta.Port)
		}
	}
	waitAccepted(t, a, n)
	if s := a.Stats(); s.AcceptErrors != 0 || s.HandoffsFailed != 0 {
		t.Errorf("Stats() = %+v, want no errors", s)
	}
	if got := g.Stats().Accepted; got != n {
		t.Errorf("group Stats().Accepted = %d, want %d", got, n)
	}
}

func TestListenIPv6(t *testing.T) {
	if !hasIPv6Loopback() {
		t.Skip("::1 is not configured")
	}
	checkFDs(t)
	h := newEcho()
	g := newGroup(t, 2, h)
	a := listen(t, acceptor.Config{Addrs: []string{"[::1]:0"}}, g)

	ta, ok := a.Addrs()[0].(*net.TCPAddr)
	if !ok || !ta.IP.Equal(net.IPv6loopback) || ta.Port == 0 {
		t.Fatalf("Addrs()[0] = %#v, want ::1 with a bound port", a.Addrs()[0])
	}
	if !strings.HasPrefix(ta.String(), "[::1]:") {
		t.Errorf("Addrs()[0].String() = %q, want [::1]:port", ta.String())
	}
	for i := 0; i < 4; i++ {
		c := dial(t, ta)
		roundTrip(t, c, fmt.Sprintf("v6 %d", i))
	}
	waitAccepted(t, a, 4)
	// Bound to ::1 only: the IPv4 loopback on that port is not ours.
	if c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", ta.Port), time.Second); err == nil {
		_ = c.Close()
		if h.openedOn(fmt.Sprintf("127.0.0.1:%d", ta.Port)) != 0 {
			t.Errorf("an IPv4 connection reached an acceptor bound to [::1]")
		}
	}
}

func TestSeveralAddrs(t *testing.T) {
	checkFDs(t)
	h := newEcho()
	g := newGroup(t, 2, h)
	addrs := []string{"127.0.0.1:0", "127.0.0.1:0"}
	if hasIPv6Loopback() {
		addrs = append(addrs, "[::1]:0")
	}
	a := listen(t, acceptor.Config{Addrs: addrs}, g)

	got := a.Addrs()
	if len(got) != len(addrs) {
		t.Fatalf("Addrs() = %v, want %d addresses", got, len(addrs))
	}
	ports := map[string]bool{}
	for _, ad := range got {
		ports[ad.String()] = true
	}
	if len(ports) != len(addrs) {
		t.Fatalf("Addrs() = %v: addresses not distinct", got)
	}
	const per = 3
	for i, ad := range got {
		for j := 0; j < per; j++ {
			roundTrip(t, dial(t, ad), fmt.Sprintf("addr %d conn %d", i, j))
		}
		if n := h.openedOn(ad.String()); n != per {
			t.Errorf("%v: %d connections opened, want %d", ad, n, per)
		}
	}
	waitAccepted(t, a, uint64(per*len(got)))
}

func TestRoundRobinSpreadsEvenly(t *testing.T) {
	checkFDs(t)
	h := newEcho()
	g := newGroup(t, 2, h)
	a := listen(t, acceptor.Config{Addrs: []string{"127.0.0.1:0"}, Balancer: acceptor.RoundRobin()}, g)

	const n = 10
	var order []int
	for i := 0; i < n; i++ {
		c := dial(t, a.Addrs()[0])
		roundTrip(t, c, "rr")
		order = append(order, h.reactorOf(t, c))
	}
	rs := g.Reactors()
	if c0, c1 := rs[0].Conns(), rs[1].Conns(); c0 != n/2 || c1 != n/2 {
		t.Errorf("Conns() = %d, %d, want %d each (order %v)", c0, c1, n/2, order)
	}
	for i := 1; i < n; i++ {
		if order[i] == order[i-1] {
			t.Errorf("connections %d and %d both went to reactor %d: not in turn (order %v)", i-1, i, order[i], order)
			break
		}
	}
	waitAccepted(t, a, n)
}

func TestLeastConnections(t *testing.T) {
	checkFDs(t)
	h := newEcho()
	g := newGroup(t, 2, h)
	a := listen(t, acceptor.Config{Addrs: []string{"127.0.0.1:0"}, Balancer: acceptor.LeastConnections()}, g)
	rs := g.Reactors()

	open := func() (net.Conn, int) {
		c := dial(t, a.Addrs()[0])
		roundTrip(t, c, "lc")
		return c, h.reactorOf(t, c)
	}
	// Ties go to the lowest ID, so the first four alternate 0, 1, 0, 1.
	on := map[int][]net.Conn{}
	for i := 0; i < 4; i++ {
		c, id := open()
		if want := i % 2; id != want {
			t.Fatalf("connection %d went to reactor %d, want %d", i, id, want)
		}
		on[id] = append(on[id], c)
	}
	// Close everything on reactor 0: loads become {0, 2}.
	for _, c := range on[0] {
		_ = c.Close()
	}
	waitFor(t, "reactor 0 to have no connections", func() bool { return rs[0].Conns() == 0 })
	for i := 0; i < 2; i++ {
		if _, id := open(); id != 0 {
			t.Fatalf("with loads {%d, 2} a new connection went to reactor %d, want 0", i, id)
		}
	}
	// Loads are {2, 2}: a tie again.
	if _, id := open(); id != 0 {
		t.Fatalf("with loads {2, 2} a new connection went to reactor %d, want 0", id)
	}
	// Loads {3, 2}: reactor 1.
	if _, id := open(); id != 1 {
		t.Fatalf("with loads {3, 2} a new connection went to reactor %d, want 1", id)
	}
	waitAccepted(t, a, 8)
}

func TestBalancerFuncAlwaysOne(t *testing.T) {
	checkFDs(t)
	h := newEcho()
	g := newGroup(t, 3, h)
	var badLen atomic.Int32
	pick := acceptor.BalancerFunc(func(loads []int) int {
		if len(loads) != 3 {
			badLen.Store(int32(len(loads)))
		}
		return 1
	})
	a := listen(t, acceptor.Config{Addrs: []string{"127.0.0.1:0"}, Balancer: pick}, g)

	const n = 6
	for i := 0; i < n; i++ {
		c := dial(t, a.Addrs()[0])
		roundTrip(t, c, "one")
		if id := h.reactorOf(t, c); id != 1 {
			t.Errorf("connection %d on reactor %d, want 1", i, id)
		}
	}
	rs := g.Reactors()
	if rs[0].Conns() != 0 || rs[1].Conns() != n || rs[2].Conns() != 0 {
		t.Errorf("Conns() = %d, %d, %d, want 0, %d, 0", rs[0].Conns(), rs[1].Conns(), rs[2].Conns(), n)
	}
	if l := badLen.Load(); l != 0 {
		t.Errorf("Pick got %d loads, want one per reactor (3)", l)
	}
	waitAccepted(t, a, n)
}

func TestBalancerOutOfRange(t *testing.T) {
	checkFDs(t)
	h := newEcho()
	g := newGroup(t, 3, h)
	picks := []int{-7, 99, math.MinInt, math.MaxInt, -1, 3, -3}
	var next atomic.Int32
	pick := acceptor.BalancerFunc(func(loads []int) int {
		return picks[int(next.Add(1)-1)%len(picks)]
	})
	a := listen(t, acceptor.Config{Addrs: []string{"127.0.0.1:0"}, Balancer: pick}, g)

	for i, p := range picks {
		c := dial(t, a.Addrs()[0])
		roundTrip(t, c, fmt.Sprintf("pick %d", p))
		want := ((p % 3) + 3) % 3
		if id := h.reactorOf(t, c); id != want {
			t.Errorf("connection %d: Pick returned %d, served by reactor %d, want %d (modulo 3)", i, p, id, want)
		}
	}
	waitAccepted(t, a, uint64(len(picks)))
}

// sockopts are the accepted socket's options, read in OnOpen.
type sockopts struct {
	nodelay, keepalive, keepidle, keepintvl, rcvbuf, sndbuf int
	err                                                     error
}

func acceptedOpts(t *testing.T, cfg acceptor.Config) sockopts {
	t.Helper()
	got := make(chan sockopts, 1)
	h := newEcho()
	h.open = func(c *reactor.Conn) {
		var o sockopts
		get := func(level, opt int) int {
			v, err := unix.GetsockoptInt(c.Fd(), level, opt)
			if err != nil && o.err == nil {
				o.err = err
			}
			return v
		}
		o.nodelay = get(unix.IPPROTO_TCP, unix.TCP_NODELAY)
		o.keepalive = get(unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		o.keepidle = get(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		o.keepintvl = get(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		o.rcvbuf = get(unix.SOL_SOCKET, unix.SO_RCVBUF)
		o.sndbuf = get(unix.SOL_SOCKET, unix.SO_SNDBUF)
		select {
		case got <- o:
		default:
		}
	}
	g := newGroup(t, 1, h)
	cfg.Addrs = []string{"127.0.0.1:0"}
	a := listen(t, cfg, g)
	roundTrip(t, dial(t, a.Addrs()[0]), "opts")
	o := <-got
	if o.err != nil {
		t.Fatalf("getsockopt on the accepted socket: %v", o.err)
	}
	return o
}

func TestSocketOptionsDefault(t *testing.T) {
	checkFDs(t)
	o := acceptedOpts(t, acceptor.Config{})
	if o.nodelay == 0 {
		t.Errorf("TCP_NODELAY off on the accepted socket, want on by default")
	}
	if o.keepalive == 0 {
		t.Errorf("SO_KEEPALIVE off on the accepted socket, want on by default")
	}
	if want := int(acceptor.DefaultKeepAlive / time.Second); o.keepidle != want || o.keepintvl != want {
		t.Errorf("TCP_KEEPIDLE, TCP_KEEPINTVL = %d, %d s, want %d (DefaultKeepAlive)", o.keepidle, o.keepintvl, want)
	}
}

func TestSocketOptionsDelayNoKeepAlive(t *testing.T) {
	checkFDs(t)
	o := acceptedOpts(t, acceptor.Config{Delay: true, KeepAlive: -1})
	if o.nodelay != 0 {
		t.Errorf("TCP_NODELAY on with Delay: true, want off")
	}
	if o.keepalive != 0 {
		t.Errorf("SO_KEEPALIVE on with KeepAlive < 0, want off")
	}
}

func TestSocketOptionsKeepAliveAndBuffers(t *testing.T) {
	checkFDs(t)
	const buf = 64 << 10 // under the default net.core.[rw]mem_max
	o := acceptedOpts(t, acceptor.Config{KeepAlive: 7 * time.Second, RecvBuffer: buf, SendBuffer: buf})
	if o.keepalive == 0 || o.keepidle != 7 || o.keepintvl != 7 {
		t.Errorf("SO_KEEPALIVE %d, TCP_KEEPIDLE %d, TCP_KEEPINTVL %d; want on, 7, 7", o.keepalive, o.keepidle, o.keepintvl)
	}
	// The kernel doubles the value for bookkeeping.
	if o.rcvbuf != 2*buf || o.sndbuf != 2*buf {
		t.Errorf("SO_RCVBUF %d, SO_SNDBUF %d; want %d (2 x %d)", o.rcvbuf, o.sndbuf, 2*buf, buf)
	}
}

func TestReusePort(t *testing.T) {
	checkFDs(t)
	h1, h2 := newEcho(), newEcho()
	g1, g2 := newGroup(t, 1, h1), newGroup(t, 1, h2)
	a1 := listen(t, acceptor.Config{Addrs: []string{"127.0.0.1:0"}, ReusePort: true}, g1)
	addr := a1.Addrs()[0].String()
	a2 := listen(t, acceptor.Config{Addrs: []string{addr}, ReusePort: true}, g2)
	if got := a2.Addrs()[0].String(); got != addr {
		t.Fatalf("second acceptor bound %s, want %s", got, addr)
	}
	// The kernel spreads connections by hash: dial until both have served.
	var n uint64
	for i := 0; i < 200 && (a1.Stats().Accepted == 0 || a2.Stats().Accepted == 0); i++ {
		c := dial(t, a1.Addrs()[0])
		roundTrip(t, c, "reuse")
		_ = c.Close()
		n++
		waitFor(t, "the hand-off to be counted", func() bool { return a1.Stats().Accepted+a2.Stats().Accepted == n })
	}
	s1, s2 := a1.Stats(), a2.Stats()
	if s1.Accepted == 0 || s2.Accepted == 0 {
		t.Errorf("after %d connections: accepted %d and %d, want both > 0", n, s1.Accepted, s2.Accepted)
	}
	// Closing one leaves the other serving the port.
	if err := a1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i := 0; i < 5; i++ {
		roundTrip(t, dial(t, a2.Addrs()[0]), "after close")
	}
}

func TestAddressInUse(t *testing.T) {
	checkFDs(t)
	g1 := newGroup(t, 1, newEcho())
	a1 := listen(t, acceptor.Config{Addrs: []string{"127.0.0.1:0"}}, g1)
	addr := a1.Addrs()[0].String()

	g2 := newGroup(t, 1, newEcho())
	before := leakcheck.Take(t)
	for _, reuse := range []bool{false, true} {
		// SO_REUSEPORT on the second socket alone does not help: both must set it.
		a2, err := acceptor.Listen(acceptor.Config{Addrs: []string{addr}, ReusePort: reuse, Logger: quiet}, g2)
		if err == nil {
			_ = a2.Close()
			t.Fatalf("second Listen on %s (ReusePort %v) succeeded, want address in use", addr, reuse)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) {
			t.Errorf("error %v (%T) is not a *net.OpError", err, err)
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("error %v does not wrap EADDRINUSE", err)
		}
		if msg := err.Error(); !strings.Contains(msg, "bind") || !strings.Contains(msg, "address already in use") || !strings.Contains(msg, addr) {
			t.Errorf("error %q should name bind, the address and 'address already in use'", msg)
		}
	}
	if after := leakcheck.Take(t); len(after) != len(before) {
		t.Errorf("failed Listen left descriptors: %d before, %d after", len(before), len(after))
	}
	// The first acceptor is unharmed.
	roundTrip(t, dial(t, a1.Addrs()[0]), "still here")
}

func TestConfigErrors(t *testing.T) {
	checkFDs(t)
	g := newGroup(t, 1, newEcho())
	port := freePort(t)
	good := fmt.Sprintf("127.0.0.1:%d", port)
	many := make([]string, 65)
	for i := range many {
		many[i] = "127.0.0.1:0"
	}
	cases := []struct {
		name      string
		cfg       acceptor.Config
		g         *reactor.Group
		errConfig bool // else: a resolve error
	}{
		{"no Addrs", acceptor.Config{}, g, true},
		{"empty Addrs", acceptor.Config{Addrs: []string{}}, g, true},
		{"65 Addrs", acceptor.Config{Addrs: many}, g, true},
		{"negative Backlog", acceptor.Config{Addrs: []string{good}, Backlog: -1}, g, true},
		{"negative RecvBuffer", acceptor.Config{Addrs: []string{good}, RecvBuffer: -1}, g, true},
		{"negative SendBuffer", acceptor.Config{Addrs: []string{good}, SendBuffer: -4096}, g, true},
		{"nil group", acceptor.Config{Addrs: []string{good}}, nil, true},
		{"missing port", acceptor.Config{Addrs: []string{"127.0.0.1"}}, g, false},
		{"port out of range", acceptor.Config{Addrs: []string{"127.0.0.1:99999"}}, g, false},
		{"bad brackets", acceptor.Config{Addrs: []string{"[::1:80"}}, g, false},
		// The first address binds, the second fails: the first must be released.
		{"good then bad", acceptor.Config{Addrs: []string{good, "127.0.0.1:-1"}}, g, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := leakcheck.Take(t)
			tc.cfg.Logger = quiet
			a, err := acceptor.Listen(tc.cfg, tc.g)
			if err == nil {
				_ = a.Close()
				t.Fatalf("Listen succeeded, want an error")
			}
			if tc.errConfig && !errors.Is(err, acceptor.ErrConfig) {
				t.Errorf("error %v does not wrap ErrConfig", err)
			}
			if !tc.errConfig {
				var ae *net.AddrError
				if !errors.As(err, &ae) && !errors.Is(err, acceptor.ErrConfig) {
					t.Errorf("error %v (%T) is neither a resolve error nor ErrConfig", err, err)
				}
				if !strings.Contains(err.Error(), tc.cfg.Addrs[len(tc.cfg.Addrs)-1]) {
					t.Errorf("error %q does not name the bad address", err)
				}
			}
			if after := leakcheck.Take(t); len(after) != len(before) {
				t.Errorf("descriptors: %d before, %d after", len(before), len(after))
			}
			portFree(t, good)
		})
	}
}

// TestRingRefused: the acceptor of an io_uring group cannot set up its
// ring: the error wraps errors.ErrUnsupported and nothing leaks.
func TestRingRefused(t *testing.T) {
	checkFDs(t)
	g := newGroupOn(t, reactor.EngineIOUring, 1, newEcho())
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	before := leakcheck.Take(t)
	cfg := acceptor.WithRingExtraFlags(acceptor.Config{Addrs: []string{addr, "127.0.0.1:0"}, Logger: quiet}, 1<<28)
	a, err := acceptor.Listen(cfg, g)
	if err == nil {
		_ = a.Close()
		t.Fatalf("Listen succeeded with a refused ring")
	}
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("error %v does not wrap errors.ErrUnsupported", err)
	}
	if after := leakcheck.Take(t); len(after) != len(before) {
		t.Errorf("descriptors: %d before, %d after: %v", len(before), len(after), after)
	}
	portFree(t, addr)
	// The group is unaffected: a working acceptor can still be added.
	a = listen(t, acceptor.Config{Addrs: []string{addr}}, g)
	roundTrip(t, dial(t, a.Addrs()[0]), "after refusal")
}

func TestClose(t *testing.T) {
	checkFDs(t)
	g := newGroup(t, 2, newEcho())
	a := listen(t, acceptor.Config{Addrs: []string{"127.0.0.1:0", "127.0.0.1:0"}}, g)
	addrs := a.Addrs()
	old := dial(t, addrs[0])
	roundTrip(t, old, "before close")

	waitDone := make(chan error, 1)
	go func() { waitDone <- a.Wait() }()
	select {
	case err := <-waitDone:
		t.Fatalf("Wait returned %v before Close", err)
	case <-time.After(20 * time.Millisecond):
	}

	// Concurrent Closes: all return, none panics.
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
	}
	wg.Wait()
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case err := <-waitDone:
		if !errors.Is(err, reactor.ErrServerClosed) {
			t.Errorf("Wait = %v, want ErrServerClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after Close")
	}
	if err := a.Wait(); !errors.Is(err, reactor.ErrServerClosed) || !errors.Is(err, net.ErrClosed) {
		t.Errorf("Wait again = %v, want ErrServerClosed", err)
	}
	for _, ad := range addrs {
		c, err := net.DialTimeout("tcp", ad.String(), time.Second)
		if err == nil {
			// Should not happen; if it does, the connection must not be served.
			err = roundTripErr(c, "after close")
			_ = c.Close()
			if err == nil {
				t.Errorf("%v: a connection made after Close was served", ad)
			}
			continue
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial %v after Close: %v, want connection refused", ad, err)
		}
		portFree(t, ad.String())
	}
	// Closing the acceptor does not touch connections already handed over.
	roundTrip(t, old, "after close")
	if s := a.Stats(); s.Accepted != 1 || s.HandoffsFailed != 0 {
		t.Errorf("Stats() = %+v, want 1 accepted", s)
	}
}

func TestGroupShutdownClosesAcceptor(t *testing.T) {
	for _, how := range []string{"Shutdown", "Close"} {
		t.Run(how, func(t *testing.T) {
			checkFDs(t)
			g, err := reactor.NewGroup(reactor.Config{Reactors: 2, Logger: quiet}, newEcho())
			if err != nil {
				t.Fatalf("NewGroup: %v", err)
			}
			a, err := acceptor.Listen(acceptor.Config{Addrs: []string{"127.0.0.1:0"}, Logger: quiet}, g)
			if err != nil {
				_ = g.Close()
				t.Fatalf("Listen: %v", err)
			}
			addr := a.Addrs()[0].String()
			c := dial(t, a.Addrs()[0])
			roundTrip(t, c, "before")

			if how == "Shutdown" {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := g.Shutdown(ctx); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
			} else if err := g.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			done := make(chan error, 1)
			go func() { done <- a.Wait() }()
			select {
			case err := <-done:
				if !errors.Is(err, reactor.ErrServerClosed) {
					t.Errorf("acceptor Wait = %v, want ErrServerClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the acceptor still runs after the group stopped")
			}
			if err := g.Wait(); err != reactor.ErrServerClosed {
				t.Errorf("group Wait = %v", err)
			}
			if _, err := net.DialTimeout("tcp", addr, time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("dial after group %s: %v, want connection refused", how, err)
			}
			// The open connection was closed by the server.
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := c.Read(make([]byte, 1)); err == nil {
				t.Errorf("read after group %s: %d bytes, want EOF", how, n)
			}
			if err := a.Close(); err != nil {
				t.Errorf("Close after group %s: %v", how, err)
			}
			portFree(t, addr)
		})
	}
}

// TestListenOnStoppedGroup: Listen on a group that has stopped fails and
// leaves nothing open.
func TestListenOnStoppedGroup(t *testing.T) {
	checkFDs(t)
	g, err := reactor.NewGroup(reactor.Config{Reactors: 2, Logger: quiet}, newEcho())
	if err != nil {
		t.Fatalf("NewGroup: %v", err)
	}
	_ = g.Close()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	before := leakcheck.Take(t)
	a, err := acceptor.Listen(acceptor.Config{Addrs: []string{addr}, Logger: quiet}, g)
	if err == nil {
		_ = a.Close()
		t.Fatal("Listen on a stopped group succeeded")
	}
	if !errors.Is(err, reactor.ErrServerClosed) {
		t.Errorf("Listen on a stopped group: %v, want ErrServerClosed", err)
	}
	if after := leakcheck.Take(t); len(after) != len(before) {
		t.Errorf("descriptors: %d before, %d after", len(before), len(after))
	}
	portFree(t, addr)
}

func TestBurst(t *testing.T) {
	checkFDs(t)
	g := newGroup(t, 2, newEcho())
	a := listen(t, acceptor.Config{Addrs: []string{"127.0.0.1:0"}}, g)
	addr := a.Addrs()[0].String()

	const n = 1000
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var (
		wg    sync.WaitGroup
		fails atomic.Int32
		first atomic.Value
		start = make(chan struct{})
	)
	conns := make([]net.Conn, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", addr)
			if err == nil {
				conns[i] = c
				if dl, ok := ctx.Deadline(); ok {
					_ = c.SetDeadline(dl)
				}
				err = roundTripErr(c, fmt.Sprintf("burst %04d", i))
			}
			if err != nil {
				fails.Add(1)
				first.CompareAndSwap(nil, fmt.Sprintf("conn %d: %v", i, err))
			}
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(t0)
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
	if f := fails.Load(); f > 0 {
		t.Fatalf("%d of %d connections failed (first: %v) in %v", f, n, first.Load(), elapsed)
	}
	t.Logf("%d connections echoed in %v", n, elapsed)
	waitAccepted(t, a, n)
	if s := a.Stats(); s.HandoffsFailed != 0 {
		t.Errorf("Stats() = %+v", s)
	}
	rs := g.Stats()
	if rs.Accepted != n {
		t.Errorf("reactors accepted %d, want %d", rs.Accepted, n)
	}
	waitFor(t, "every connection to close", func() bool { return g.Stats().Conns == 0 })
}

// TestListenDualStack: ":0" listens on every address, IPv4 and IPv6, as
// package net does.
func TestListenDualStack(t *testing.T) {
	if !hasIPv6Loopback() {
		t.Skip("::1 is not configured")
	}
	checkFDs(t)
	g := newGroup(t, 1, newEcho())
	a := listen(t, acceptor.Config{Addrs: []string{":0"}}, g)
	port := a.Addrs()[0].(*net.TCPAddr).Port
	for _, host := range []string{"127.0.0.1", "::1"} {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(host, fmt.Sprint(port)), 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", host, err)
		}
		t.Cleanup(func() { _ = c.Close() })
		roundTrip(t, c, "dual "+host)
	}
	waitAccepted(t, a, 2)
}

// TestCloseFromHandler: a handler may stop the acceptor from the reactor
// goroutine (say, on an admin command) without deadlocking, while other
// connections keep arriving.
func TestCloseFromHandler(t *testing.T) {
	checkFDs(t)
	var a atomic.Pointer[acceptor.Acceptor]
	closed := make(chan error, 1)
	h := newEcho()
	h.open = func(c *reactor.Conn) {
		if p := a.Load(); p != nil {
			err := p.Close() // idempotent: later connections call it too
			select {
			case closed <- err:
			default:
			}
		}
	}
	g := newGroup(t, 2, h)
	a.Store(listen(t, acceptor.Config{Addrs: []string{"127.0.0.1:0"}}, g))
	c := dial(t, a.Load().Addrs()[0])
	// More connections racing the Close.
	for i := 0; i < 4; i++ {
		if extra, err := net.DialTimeout("tcp", a.Load().Addrs()[0].String(), time.Second); err == nil {
			t.Cleanup(func() { _ = extra.Close() })
		}
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close from OnOpen: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close called from OnOpen did not return")
	}
	roundTrip(t, c, "still served")
	if err := a.Load().Wait(); !errors.Is(err, reactor.ErrServerClosed) {
		t.Errorf("Wait = %v", err)
	}
}
