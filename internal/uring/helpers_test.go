//go:build linux

package uring_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gyre-io/gyre/internal/uring"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitLimit bounds every wait for a completion: a bug fails the test
// instead of hanging it.
const waitLimit = 5 * time.Second

// lt is the *testing.T seen from a locked goroutine. Fatalf marks the test
// failed and ends only that goroutine (its defers close what it opened);
// testing.T.Fatalf must not be called off the test goroutine.
type lt struct{ *testing.T }

func (l lt) Fatalf(format string, args ...any) {
	l.Helper()
	l.Errorf(format, args...)
	runtime.Goexit()
}

// locked runs f on a fresh goroutine locked to its OS thread, as a ring
// owner must be, and waits for it. The goroutine never unlocks: its thread
// dies with it, like a reactor's.
func locked(t *testing.T, f func(l lt)) {
	t.Helper()
	done := startLocked(t, f)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("locked goroutine still running after 30s")
	}
}

// startLocked starts f like locked does and returns a channel closed when
// it ends.
func startLocked(t *testing.T, f func(l lt)) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		f(lt{t})
	}()
	return done
}

// newRing creates a ring on the calling (locked) goroutine.
func newRing(l lt, cfg uring.Config) *uring.Ring {
	l.Helper()
	r, err := uring.New(cfg)
	if err != nil {
		l.Fatalf("uring.New(%+v): %v", cfg, err)
	}
	return r
}

// collect submits and reaps until done reports true for what has been
// reaped so far, or waitLimit passes (then the test fails).
func collect(l lt, r *uring.Ring, done func([]uring.CQE) bool) []uring.CQE {
	l.Helper()
	var got []uring.CQE
	buf := make([]uring.CQE, 64)
	deadline := time.Now().Add(waitLimit)
	for !done(got) {
		if time.Now().After(deadline) {
			l.Fatalf("no expected completion within %v; got %s", waitLimit, fmtCQEs(got))
		}
		if err := r.SubmitAndWait(50 * time.Millisecond); err != nil {
			l.Fatalf("SubmitAndWait: %v", err)
		}
		for {
			n := r.Reap(buf)
			if n == 0 {
				break
			}
			got = append(got, buf[:n]...)
		}
	}
	return got
}

// collectN reaps until n completions have been seen.
func collectN(l lt, r *uring.Ring, n int) []uring.CQE {
	l.Helper()
	return collect(l, r, func(c []uring.CQE) bool { return len(c) >= n })
}

// until reaps until a completion with user data ud has been seen.
func until(l lt, r *uring.Ring, ud uint64) []uring.CQE {
	l.Helper()
	return collect(l, r, func(c []uring.CQE) bool { return find(c, ud) >= 0 })
}

// untilAll reaps until a completion for every ud has been seen.
func untilAll(l lt, r *uring.Ring, uds ...uint64) []uring.CQE {
	l.Helper()
	return collect(l, r, func(c []uring.CQE) bool {
		for _, ud := range uds {
			if find(c, ud) < 0 {
				return false
			}
		}
		return true
	})
}

func find(c []uring.CQE, ud uint64) int {
	for i := range c {
		if c[i].UserData == ud {
			return i
		}
	}
	return -1
}

func only(l lt, c []uring.CQE, ud uint64) uring.CQE {
	l.Helper()
	var out []uring.CQE
	for _, e := range c {
		if e.UserData == ud {
			out = append(out, e)
		}
	}
	if len(out) != 1 {
		l.Fatalf("want exactly one completion with user data %#x, got %s", ud, fmtCQEs(c))
	}
	return out[0]
}

func fmtCQEs(c []uring.CQE) string {
	var b strings.Builder
	b.WriteString("[")
	for i, e := range c {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "{ud=%#x res=%d flags=%#x}", e.UserData, e.Res, e.Flags)
	}
	b.WriteString("]")
	return b.String()
}

func errno(res int32) string {
	if res >= 0 {
		return fmt.Sprintf("%d", res)
	}
	return fmt.Sprintf("%d (%v)", res, syscall.Errno(-res))
}

// openFDs counts this process's open descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("reading /proc/self/fd: %v", err)
	}
	return len(ents) - 1 // ReadDir's own descriptor
}

// noLeaks fails the test if it ends with more descriptors open than it
// started with, or with an io_uring mapping left in the process.
func noLeaks(t *testing.T) {
	t.Helper()
	warmNet(t)
	before := openFDs(t)
	t.Cleanup(func() {
		// Accepted sockets and rings are closed synchronously; allow the
		// runtime a moment for anything it closes lazily.
		deadline := time.Now().Add(2 * time.Second)
		for {
			after := openFDs(t)
			if after <= before {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("descriptor leak: %d open before the test, %d after", before, after)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if lines := uringMaps(t); len(lines) > 0 {
			t.Errorf("io_uring mappings left after the test:\n%s", strings.Join(lines, "\n"))
		}
	})
}

// warmNet makes the runtime open its network poller descriptors before a
// test counts descriptors, so they are not taken for a leak.
func warmNet(t testing.TB) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ln.Close()
}

// uringMaps returns the lines of /proc/self/maps that map an io_uring.
func uringMaps(t testing.TB) []string {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatalf("reading /proc/self/maps: %v", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "io_uring") {
			out = append(out, line)
		}
	}
	return out
}

// listener opens a blocking TCP listening socket on 127.0.0.1 with an
// ephemeral port and returns its descriptor and address.
func listener(l lt) (int, *net.TCPAddr) {
	l.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		l.Fatalf("socket: %v", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		l.Fatalf("bind: %v", err)
	}
	if err := unix.Listen(fd, 64); err != nil {
		unix.Close(fd)
		l.Fatalf("listen: %v", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		l.Fatalf("getsockname: %v", err)
	}
	in := sa.(*unix.SockaddrInet4)
	return fd, &net.TCPAddr{IP: net.IP(in.Addr[:]), Port: in.Port}
}

// pair returns a connected TCP pair on loopback: a raw server-side
// descriptor (for the ring) and the client's net.Conn. Both are closed at
// the end of the test.
func pair(l lt) (int, *net.TCPConn) {
	l.Helper()
	lfd, addr := listener(l)
	defer unix.Close(lfd)
	c, err := net.DialTimeout("tcp", addr.String(), waitLimit)
	if err != nil {
		l.Fatalf("dial %v: %v", addr, err)
	}
	fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
	if err != nil {
		c.Close()
		l.Fatalf("accept: %v", err)
	}
	return fd, c.(*net.TCPConn)
}

// readAll reads from c until EOF, failing after waitLimit.
func readAll(l lt, c net.Conn) []byte {
	l.Helper()
	if err := c.SetReadDeadline(time.Now().Add(waitLimit)); err != nil {
		l.Fatalf("SetReadDeadline: %v", err)
	}
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			l.Fatalf("read after %d bytes: %v", len(out), err)
		}
	}
}
