//go:build unix

package main

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// withSpareDescriptor wraps the metrics listener so that /metrics and
// /healthz still answer when the process is out of file descriptors.
//
// --max-conns keeps ingest.ConnsReserve descriptors back from TCP
// clients, but with --max-conns -1, a bound set above the descriptors
// really left, or descriptors taken elsewhere, the process can run out.
// Then every accept fails with EMFILE: net/http only logs and backs off,
// scrapes wait in the backlog until they time out, and the node cannot
// be observed exactly when an operator most needs to see it. Serving a
// request needs no descriptor beyond its connection (the handlers read
// counters; the process collector's /proc reads fail and are left out),
// so one held in reserve is enough.
//
// The listener holds one spare descriptor (/dev/null). When an accept
// fails with EMFILE or ENFILE it waits, still holding the spare, until a
// connection is pending (accept(2) fails before it looks at the backlog,
// so the failure does not mean one is), then closes the spare and accepts
// at once: the kernel gives out the lowest free descriptor, the one just
// freed, and the connection is served as usual. The spare is re-opened at
// the next opportunity, without blocking: when a connection accepted
// through this listener is closed (its descriptor comes free right then),
// and else at the start of every later Accept.
//
// It is best-effort: another thread of the process that takes a
// descriptor in the microseconds between the spare's close and the
// accept, or between a served connection's close and the spare's
// re-opening (in ingestd: the TCP acceptor retrying after its back-off),
// keeps it, and the listener has no spare until a descriptor comes free.
func withSpareDescriptor(ln net.Listener) net.Listener {
	l := &spareListener{Listener: ln, spare: -1, open: openSpare, poll: pollReadable}
	if r, ok := ln.(rawListener); ok {
		if rc, err := r.SyscallConn(); err == nil {
			l.raw, l.rc = r, rc
		}
	}
	l.rearm()
	return l
}

// rawListener is what spareListener needs of the listener to wait for a
// pending connection (*net.TCPListener and *net.UnixListener have it).
type rawListener interface {
	SyscallConn() (syscall.RawConn, error)
	SetDeadline(time.Time) error
}

const (
	// pollSlice bounds one wait for a pending connection, so that Close
	// is not held up longer (the wait holds the listener's descriptor).
	pollSlice = 50 * time.Millisecond
	// pendingAcceptWait bounds the accept once a connection is pending, in
	// case it went away: the spare's descriptor is free meanwhile.
	pendingAcceptWait = 100 * time.Millisecond
)

// openSpare opens the spare descriptor: /dev/null, which exists on every
// unix and costs nothing but the descriptor.
func openSpare() (int, error) {
	return unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
}

// pollReadable waits up to timeout for fd to be readable (for a listener:
// a connection is pending).
func pollReadable(fd uintptr, timeout time.Duration) (bool, error) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, int(timeout.Milliseconds()))
	if err == unix.EINTR {
		return false, nil
	}
	return n > 0, err
}

// spareListener is a net.Listener holding a spare descriptor for accepts
// that run into the descriptor limit (see withSpareDescriptor).
type spareListener struct {
	net.Listener
	raw  rawListener     // nil: the listener cannot be waited on; no spare is used
	rc   syscall.RawConn // raw's
	open func() (int, error)
	poll func(fd uintptr, timeout time.Duration) (bool, error)

	mu     sync.Mutex
	spare  int  // the spare descriptor, -1 while there is none
	closed bool // Close was called: do not re-open the spare
}

// Accept accepts the next connection, using the spare descriptor if the
// process has run out of them.
func (l *spareListener) Accept() (net.Conn, error) {
	l.rearm()
	c, err := l.Listener.Accept()
	if err != nil && outOfDescriptors(err) {
		c, err = l.acceptOnSpare(err)
	}
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		// Embedding *net.TCPConn keeps its other methods (CloseWrite,
		// ReadFrom) visible to net/http.
		return &spareConn{TCPConn: tc, l: l}, nil
	}
	return c, nil
}

// acceptOnSpare follows an accept that failed (err) for want of a
// descriptor: it waits for a pending connection holding the spare, then
// gives the spare up to accept it. Without a spare, or once the listener
// is closed, it returns err.
func (l *spareListener) acceptOnSpare(err error) (net.Conn, error) {
	if l.raw == nil || !l.waitPending() || !l.release() {
		return nil, err
	}
	_ = l.raw.SetDeadline(time.Now().Add(pendingAcceptWait))
	c, aerr := l.Listener.Accept()
	_ = l.raw.SetDeadline(time.Time{})
	if aerr != nil {
		l.rearm() // nothing accepted after all: take the descriptor back
	}
	return c, aerr
}

// waitPending waits until a connection is pending on the listener. It
// returns false if the listener is closed, has no spare, or cannot be
// polled.
func (l *spareListener) waitPending() bool {
	for {
		l.mu.Lock()
		ok := l.spare >= 0 && !l.closed
		l.mu.Unlock()
		if !ok {
			return false
		}
		var ready bool
		var perr error
		if err := l.rc.Control(func(fd uintptr) { ready, perr = l.poll(fd, pollSlice) }); err != nil || perr != nil {
			return false
		}
		if ready {
			return true
		}
	}
}

// Close closes the listener and the spare descriptor.
func (l *spareListener) Close() error {
	l.mu.Lock()
	l.closed = true
	if l.spare >= 0 {
		_ = unix.Close(l.spare)
		l.spare = -1
	}
	l.mu.Unlock()
	return l.Listener.Close()
}

// rearm opens the spare descriptor if the listener has none; failing to
// (still out of descriptors) is not an error: it tries again next time.
func (l *spareListener) rearm() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.spare >= 0 || l.closed || l.raw == nil {
		return
	}
	if fd, err := l.open(); err == nil {
		l.spare = fd
	}
}

// release closes the spare descriptor, so the next accept can have it. It
// reports whether there was one.
func (l *spareListener) release() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.spare < 0 {
		return false
	}
	_ = unix.Close(l.spare)
	l.spare = -1
	return true
}

// outOfDescriptors reports whether an accept failed for want of a
// descriptor: the process's limit (EMFILE) or the system's (ENFILE).
func outOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// spareConn is a connection accepted through a spareListener: closing it
// frees a descriptor, which re-arms the listener's spare if it was used.
type spareConn struct {
	*net.TCPConn
	l *spareListener
}

func (c *spareConn) Close() error {
	err := c.TCPConn.Close()
	c.l.rearm()
	return err
}
