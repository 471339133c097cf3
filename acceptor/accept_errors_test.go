package acceptor_test

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/gyre-io/gyre/acceptor"
	"github.com/gyre-io/gyre/internal/leakcheck"
	"github.com/gyre-io/gyre/internal/testenv"
	"github.com/gyre-io/gyre/reactor"
	"golang.org/x/sys/unix"
)

// lowestFree returns the n lowest descriptor numbers not in use.
func lowestFree(t testing.TB, n int) []int {
	t.Helper()
	used := leakcheck.Take(t)
	var out []int
	for fd := 0; len(out) < n; fd++ {
		if _, ok := used[fd]; !ok {
			out = append(out, fd)
		}
	}
	return out
}

// starveListen lowers RLIMIT_NOFILE to just what Listen needs (listener,
// ring or epoll set, eventfd; the net engine only a listener) and calls Listen: the acceptor's accepts then fail with
// EMFILE. io_uring reads the limit when an accept is queued, not when it
// completes, so the limit must be low when Listen arms the accept. The
// returned restore puts the limit back (idempotent; also run at cleanup).
// Make client sockets before calling it: none can be made until restore.
func starveListen(t *testing.T, cfg acceptor.Config, g *reactor.Group) (*acceptor.Acceptor, func()) {
	t.Helper()
	// Package net probes the IP stack once per process, with sockets of its
	// own: done under the low limit, the probe would fail and leave the
	// process believing it has no dual-stack sockets.
	if ln, err := net.Listen("tcp", ":0"); err == nil {
		_ = ln.Close()
	}
	need := 3 // listener, ring or epoll set, eventfd
	if g.Engine() == reactor.EngineNet {
		need = 1 // the listener; package net's poller exists already
	}
	restore := testenv.LimitDescriptors(t, need)
	cfg.Logger = quiet
	a, err := acceptor.Listen(cfg, g)
	if err != nil {
		restore()
		t.Fatalf("Listen with %d descriptors to spare: %v", need, err)
	}
	return a, restore
}

// rawClient makes a blocking TCP socket, closed at cleanup, whose reads
// time out after 5 s.
func rawClient(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5}); err != nil {
		t.Fatalf("SO_RCVTIMEO: %v", err)
	}
	return fd
}

func sockaddr(a net.Addr) *unix.SockaddrInet4 {
	ta := a.(*net.TCPAddr)
	sa := &unix.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	return sa
}

// waitAcceptErrors waits until the acceptor has failed n accepts.
func waitAcceptErrors(t testing.TB, a *acceptor.Acceptor, n uint64) acceptor.Stats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for a.Stats().AcceptErrors < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	return a.Stats()
}

// TestAcceptErrorsNotFatal runs the acceptor out of descriptors so that
// accept fails with EMFILE, then gives them back: the acceptor counts the
// errors, backs off, and accepts the connection that waited in the backlog.
func TestAcceptErrorsNotFatal(t *testing.T) {
	checkFDs(t)
	g := newGroup(t, 1, newEcho())
	cfd := rawClient(t)
	a, restore := starveListen(t, acceptor.Config{Addrs: []string{"127.0.0.1:0"}}, g)
	if err := unix.Connect(cfd, sockaddr(a.Addrs()[0])); err != nil {
		restore()
		t.Fatalf("connect: %v", err)
	}
	// The connection waits in the backlog; every accept attempt fails.
	during := waitAcceptErrors(t, a, 2)
	restore()
	if during.AcceptErrors < 2 {
		t.Fatalf("Stats() = %+v with no descriptors to spare, want AcceptErrors >= 2 (a retry after back-off)", during)
	}
	if during.Accepted != 0 {
		t.Errorf("Stats() = %+v, want nothing accepted while out of descriptors", during)
	}

	// With descriptors back, the backed-off accept is retried and the
	// waiting connection is served.
	msg := []byte("served after EMFILE")
	if _, err := unix.Write(cfd, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, 0, len(msg))
	for len(got) < len(msg) {
		buf := make([]byte, len(msg)-len(got))
		n, err := unix.Read(cfd, buf)
		if err != nil || n == 0 {
			t.Fatalf("read echo: n=%d, %v (got %q so far; stats %+v)", n, err, got, a.Stats())
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != string(msg) {
		t.Fatalf("echo %q, want %q", got, msg)
	}
	// And new connections too.
	for i := 0; i < 3; i++ {
		roundTrip(t, dial(t, a.Addrs()[0]), fmt.Sprintf("after %d", i))
	}
	waitAccepted(t, a, 4)
	if s := a.Stats(); s.HandoffsFailed != 0 {
		t.Errorf("Stats() = %+v", s)
	}
}

// TestAcceptErrorsBackOff checks the error path does not spin: while out
// of descriptors the retries back off (5 ms doubling, capped at 1 s), so
// over 300 ms there are only a handful of failed attempts.
func TestAcceptErrorsBackOff(t *testing.T) {
	checkFDs(t)
	g := newGroup(t, 1, newEcho())
	cfd := rawClient(t)
	a, restore := starveListen(t, acceptor.Config{Addrs: []string{"127.0.0.1:0"}}, g)
	if err := unix.Connect(cfd, sockaddr(a.Addrs()[0])); err != nil {
		restore()
		t.Fatalf("connect: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	s := a.Stats()
	restore()
	t.Logf("%d accept errors in 300 ms", s.AcceptErrors)
	// 5+10+20+40+80+160 ms = 315 ms: about 6 attempts; allow slack.
	if s.AcceptErrors == 0 || s.AcceptErrors > 20 {
		t.Errorf("AcceptErrors = %d over 300 ms, want a few (backing off, not spinning)", s.AcceptErrors)
	}
	waitAccepted(t, a, 1)
}
