package acceptor_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gyre-io/gyre/acceptor"
	"github.com/gyre-io/gyre/internal/leakcheck"
	"github.com/gyre-io/gyre/reactor"
	"golang.org/x/sys/unix"
)

// TestBugLeastConnectionsIgnoresInFlightHandoffs: LeastConnections reads
// each reactor's Conns(), which counts a connection only once the reactor
// has processed its MSG_RING. Every connection of one batch of accept
// completions therefore sees the same loads, and a burst goes entirely to
// one reactor. The burst is made deterministic by holding eight
// connections in the backlog (accept failing with EMFILE) and then letting
// the acceptor take them all at once.
func TestRegressionLeastConnectionsIgnoresInFlightHandoffs(t *testing.T) {
	checkFDs(t)
	const n = 8
	if c0, c1 := leastConnectionsBurst(t, n); c0 != n/2 || c1 != n/2 {
		t.Errorf("LeastConnections put %d and %d of %d simultaneous connections on the two reactors, want %d each",
			c0, c1, n, n/2)
	}
}

// leastConnectionsBurst has a LeastConnections acceptor take n waiting
// connections at once (held in the backlog by EMFILE, then released) and
// returns how many each of two reactors got.
func leastConnectionsBurst(t *testing.T, n int) (c0, c1 int) {
	t.Helper()
	g := newGroup(t, 2, newEcho())
	var cfds []int
	for i := 0; i < n; i++ {
		cfds = append(cfds, rawClient(t))
	}
	a, restore := starveListen(t, acceptor.Config{Addrs: []string{"127.0.0.1:0"}, Balancer: acceptor.LeastConnections()}, g)
	sa := sockaddr(a.Addrs()[0])
	for _, fd := range cfds {
		if err := unix.Connect(fd, sa); err != nil {
			restore()
			t.Fatalf("connect: %v", err)
		}
	}
	waitAcceptErrors(t, a, 1)
	restore()
	waitAccepted(t, a, uint64(n))
	rs := g.Reactors()
	waitFor(t, "every connection to open", func() bool { return rs[0].Conns()+rs[1].Conns() == n })
	return rs[0].Conns(), rs[1].Conns()
}

// TestBugListenDuringShutdownLeaksHandedOffSocket: Listen checks the group
// with Sync before binding but registers with AddSource only after it has
// accepted, so a Listen that overlaps a Shutdown runs against reactors
// that may stop at any moment. A socket posted with MSG_RING to a reactor
// that then exits without reaping that completion is owned by nobody: the
// source completion succeeded (no HandoffsFailed), the reactor never saw
// it, and the descriptor stays open for the life of the process.
//
// The interleaving is forced with two functions posted to the reactor: the
// first waits until Sync has queued its function and posts the second
// behind it; the second (standing for a reactor that is busy at that
// moment) waits until Listen has returned, then aborts the last
// connection, so the draining reactor exits in that same iteration.
func TestRegressionListenDuringShutdownLeaksHandedOffSocket(t *testing.T) {
	checkFDs(t)
	deadline := time.Now().Add(3 * time.Second)
	attempt := 1
	for ; time.Now().Before(deadline); attempt++ {
		if done := listenDuringShutdown(t, attempt); done {
			return
		}
	}
	t.Logf("no client connect reached the listener in %d attempts", attempt-1)
}

func listenDuringShutdown(t *testing.T, attempt int) (done bool) {
	var heldConn atomic.Pointer[reactor.Conn]
	h := &holdOnShutdown{echo: newEcho(), draining: make(chan struct{})}
	h.open = func(c *reactor.Conn) {
		if heldConn.CompareAndSwap(nil, c) {
			c.PauseReading() // no receive in flight: Abort closes at once
		}
	}
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
	defer held.Close()
	waitFor(t, "the held connection to open", func() bool { return heldConn.Load() != nil })
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown <- g.Shutdown(ctx)
	}()
	<-h.draining

	cfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	defer unix.Close(cfd)
	baseline := leakcheck.Take(t)
	port := freePort(t)
	sa := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}

	r := g.Reactors()[0]
	listenDone := make(chan struct{})
	busy := func() {
		select {
		case <-listenDone:
		case <-time.After(5 * time.Second):
		}
		heldConn.Load().Abort()
	}
	started := make(chan struct{})
	if err := r.Post(func() {
		close(started)
		deadline := time.Now().Add(5 * time.Second)
		for r.Stats().InboxDepth == 0 && time.Now().Before(deadline) {
			select {
			case <-listenDone: // Listen returned without posting
				deadline = time.Time{}
			default:
				time.Sleep(10 * time.Microsecond)
			}
		}
		_ = r.Post(busy) // queued behind Sync's function
	}); err != nil {
		t.Fatalf("Post: %v", err)
	}
	<-started
	var listenErr error
	go func() {
		defer close(listenDone)
		a, err := acceptor.Listen(acceptor.Config{Addrs: []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}, Logger: quiet}, g)
		if err == nil {
			_ = a.Close()
		}
		listenErr = err
	}()
	connected := false
	for !connected {
		select {
		case <-listenDone:
		default:
			connected = unix.Connect(cfd, sa) == nil
			continue
		}
		break
	}
	<-listenDone
	_ = held.Close()
	select {
	case err := <-shutdown:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not finish")
	}
	if listenErr == nil {
		t.Errorf("Listen during Shutdown succeeded")
	}
	if !connected {
		return false
	}
	_ = unix.SetsockoptTimeval(cfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 300000})
	n, rerr := unix.Read(cfd, make([]byte, 1))
	if errors.Is(rerr, unix.ECONNRESET) {
		return false // reset in the backlog, never accepted: try again
	}
	var leaked []int
	for fd, target := range leakcheck.Take(t) {
		if _, ok := baseline[fd]; !ok && strings.HasPrefix(target, "socket:") {
			leaked = append(leaked, fd)
		}
	}
	if len(leaked) > 0 || errors.Is(rerr, unix.EAGAIN) {
		t.Errorf("attempt %d: a socket accepted by a Listen that overlapped Shutdown was handed to a reactor that stopped "+
			"without taking it: client read n=%d err=%v; socket descriptors left open: %v", attempt, n, rerr, leaked)
	}
	for _, fd := range leaked {
		_ = unix.Close(fd) // keep the rest of the run clean
	}
	return true
}
