package acceptor_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gyre-io/gyre/acceptor"
	"github.com/gyre-io/gyre/internal/leakcheck"
	"github.com/gyre-io/gyre/internal/link"
	"github.com/gyre-io/gyre/reactor"
	"golang.org/x/sys/unix"
)

// TestListenOnStoppedGroupReachesNoOtherRing: a stopped reactor's ring
// descriptor number may be reused by the process; an acceptor must never
// post a connection to it. Here the number belongs to another group's
// ring. Regression test: before Listen checked the group with Group.Sync,
// it bound and armed the accepts before AddSource refused the acceptor,
// and a connection arriving in that window was served by the other group's
// handler. A client dials the port in a loop while Listen is retried.
func TestListenOnStoppedGroupReachesNoOtherRing(t *testing.T) {
	checkFDs(t)
	stopped, err := reactor.NewGroup(reactor.Config{Reactors: 1, Logger: quiet}, newEcho())
	if err != nil {
		t.Fatalf("NewGroup: %v", err)
	}
	if stopped.Engine() != reactor.EngineIOUring {
		_ = stopped.Close()
		t.Skip("ring descriptors exist on the io_uring engine only")
	}
	stale := link.Of(stopped).Targets[0].RingFD
	_ = stopped.Close()

	// Make the next ring take the stale number: occupy any lower free slot.
	var fillers []*os.File
	for lowestFree(t, 1)[0] < stale {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		fillers = append(fillers, f)
	}
	other := newEcho()
	live := newGroup(t, 1, other)
	for _, f := range fillers {
		_ = f.Close()
	}
	if link.Of(live).Targets[0].RingFD != stale {
		t.Skipf("could not give the live ring the stale number %d (got %d)", stale, link.Of(live).Targets[0].RingFD)
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var connected atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
				connected.Add(1)
				_ = c.Close()
			}
		}
	}()
	deadline := time.Now().Add(500 * time.Millisecond)
	tries := 0
	for time.Now().Before(deadline) && other.openedOn(addr) == 0 {
		tries++
		a, err := acceptor.Listen(acceptor.Config{Addrs: []string{addr}, Logger: quiet}, stopped)
		if err == nil {
			_ = a.Close()
			t.Error("Listen on a stopped group succeeded")
			break
		}
	}
	close(stop)
	wg.Wait()
	if n := other.openedOn(addr); n > 0 {
		t.Errorf("after %d Listen calls on a stopped group (%d client connects succeeded), "+
			"%d connection(s) to %s were handed to ring fd %d and served by another group's handler",
			tries, connected.Load(), n, addr, stale)
	} else {
		t.Logf("%d Listen calls, %d client connects succeeded, none reached the other group", tries, connected.Load())
	}
}

// TestListenOnStoppedGroupLeaksNoSocket: as above, but the descriptors are
// arranged so that the acceptor's own ring would be created on the stopped
// reactor's ring number (the listener takes the one free slot below it).
// Regression test: before Group.Sync, a hand-off to it succeeded (so
// HandoffsFailed did not count it) and posted a uring.OpHandoff completion
// into the acceptor's own ring, which ignores that op: the socket leaked.
func TestListenOnStoppedGroupLeaksNoSocket(t *testing.T) {
	checkFDs(t)
	// The client socket is made first so that it takes no slot arranged
	// below; it connects again and again without allocating descriptors.
	cfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	defer unix.Close(cfd)

	stopped, err := reactor.NewGroup(reactor.Config{Reactors: 2, Logger: quiet}, newEcho())
	if err != nil {
		t.Fatalf("NewGroup: %v", err)
	}
	rs := stopped.Reactors()
	last := len(rs) - 1
	if stopped.Engine() != reactor.EngineIOUring {
		_ = stopped.Close()
		t.Skip("ring descriptors exist on the io_uring engine only")
	}
	stale := link.Of(stopped).Targets[last].RingFD
	_ = stopped.Close()

	// Leave exactly one free slot below the stale number (for the
	// listener), so that the acceptor's ring is created on the stale number.
	var fillers []*os.File
	defer func() {
		for _, f := range fillers {
			_ = f.Close()
		}
	}()
	for {
		free := lowestFree(t, 2)
		if free[0] >= stale {
			t.Skipf("no free slot below the stale ring number %d", stale)
		}
		if free[1] == stale {
			break
		}
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		fillers = append(fillers, f)
	}

	port := freePort(t)
	sa := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	baseline := leakcheck.Take(t)
	var connected atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if unix.Connect(cfd, sa) == nil {
				connected.Store(true)
				return
			}
		}
	}()
	toLast := acceptor.BalancerFunc(func([]int) int { return last })
	deadline := time.Now().Add(500 * time.Millisecond)
	tries := 0
	for time.Now().Before(deadline) && !connected.Load() {
		tries++
		a, err := acceptor.Listen(acceptor.Config{Addrs: []string{addr}, Balancer: toLast, Logger: quiet}, stopped)
		if err == nil {
			_ = a.Close()
			t.Fatal("Listen on a stopped group succeeded")
		}
	}
	close(stop)
	wg.Wait()
	if !connected.Load() {
		t.Logf("%d Listen calls on a stopped group; no client connect succeeded", tries)
		return
	}
	// The server side of the connection must have been closed: reading
	// gives EOF or a reset, not a timeout.
	_ = unix.SetsockoptTimeval(cfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 300000})
	n, rerr := unix.Read(cfd, make([]byte, 1))
	var leaked []int
	for fd, target := range leakcheck.Take(t) {
		if _, ok := baseline[fd]; !ok && strings.HasPrefix(target, "socket:") {
			leaked = append(leaked, fd)
		}
	}
	if len(leaked) > 0 || errors.Is(rerr, unix.EAGAIN) {
		t.Errorf("connection accepted for a stopped group after %d Listen calls: server side still open "+
			"(client read: n=%d err=%v); leaked socket descriptors %v (the acceptor's ring took the stale ring number %d)",
			tries, n, rerr, leaked, stale)
	}
	for _, fd := range leaked {
		_ = unix.Close(fd) // keep the rest of the run clean
	}
}

// holdOnShutdown is an echo handler that keeps its connections open at
// Shutdown (a ShutdownHandler that does not close), so the group stays in
// its draining state until the clients go away.
type holdOnShutdown struct {
	*echo
	draining chan struct{}
	once     sync.Once
}

func (h *holdOnShutdown) OnShutdown(*reactor.Conn) {
	h.once.Do(func() { close(h.draining) })
}

// TestListenDuringGroupShutdown: Listen on a group that is draining (its
// reactors still run, but it takes no new sources) fails with
// ErrServerClosed; connections that reach the short-lived listener
// meanwhile are closed, and nothing is left open.
func TestListenDuringGroupShutdown(t *testing.T) {
	checkFDs(t)
	h := &holdOnShutdown{echo: newEcho(), draining: make(chan struct{})}
	// One reactor: it stays up, draining, while the held connection lives.
	g, err := reactor.NewGroup(reactor.Config{Reactors: 1, Logger: quiet}, h)
	if err != nil {
		t.Fatalf("NewGroup: %v", err)
	}
	a0, err := acceptor.Listen(acceptor.Config{Addrs: []string{"127.0.0.1:0"}, Logger: quiet}, g)
	if err != nil {
		_ = g.Close()
		t.Fatalf("Listen: %v", err)
	}
	held, err := net.DialTimeout("tcp", a0.Addrs()[0].String(), 5*time.Second)
	if err != nil {
		_ = g.Close()
		t.Fatalf("dial: %v", err)
	}
	roundTrip(t, held, "held")
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown <- g.Shutdown(ctx)
	}()
	select {
	case <-h.draining:
	case <-time.After(5 * time.Second):
		t.Fatal("OnShutdown not called")
	}

	cfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	defer unix.Close(cfd)
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	sa := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	var connected atomic.Int32
	var stillOpen atomic.Bool
	var readErr error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if unix.Connect(cfd, sa) == nil {
				// The server side must be closed by the draining reactor
				// (or reset with the listener), not left open.
				_ = unix.SetsockoptTimeval(cfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
				n, err := unix.Read(cfd, make([]byte, 1))
				readErr = fmt.Errorf("read: n=%d, %v", n, err)
				if errors.Is(err, unix.EAGAIN) {
					stillOpen.Store(true)
				}
				connected.Add(1)
				return
			}
		}
	}()
	deadline := time.Now().Add(500 * time.Millisecond)
	tries := 0
	for time.Now().Before(deadline) && connected.Load() == 0 {
		tries++
		a, err := acceptor.Listen(acceptor.Config{Addrs: []string{addr}, Logger: quiet}, g)
		if err == nil {
			_ = a.Close()
			t.Fatal("Listen on a draining group succeeded")
		}
		if !errors.Is(err, reactor.ErrServerClosed) {
			t.Fatalf("Listen on a draining group: %v, want ErrServerClosed", err)
		}
	}
	close(stop)
	wg.Wait()
	portFree(t, addr)
	if n := h.openedOn(addr); n != 0 {
		t.Errorf("%d connection(s) to the refused acceptor reached the handler", n)
	}
	if stillOpen.Load() {
		t.Errorf("a connection accepted during the refused Listen was left open (%v)", readErr)
	}
	t.Logf("%d Listen calls; %d client connects reached the refused listener (%v)", tries, connected.Load(), readErr)

	_ = held.Close()
	select {
	case err := <-shutdown:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not finish")
	}
	if err := a0.Wait(); !errors.Is(err, reactor.ErrServerClosed) {
		t.Errorf("first acceptor Wait = %v", err)
	}
}
