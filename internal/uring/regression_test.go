//go:build linux

package uring_test

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gyre-io/gyre/internal/uring"
	"golang.org/x/sys/unix"
)

// Close documents "the kernel cancels whatever is still in flight". It once
// did not while the owner thread lived: the ring fd was registered
// (IORING_REGISTER_RING_FDS) and giouring's QueueExit never unregistered it,
// so the registered slot kept the ring, and a multishot accept armed on it,
// alive after Close: the listening socket kept accepting after both the ring
// and the listener fd were closed, until the thread exited. The ring fd is
// no longer registered; this test keeps it that way.
func TestRegressionCloseLeavesRingAlive(t *testing.T) {
	noLeaks(t)
	locked(t, func(l lt) {
		r := newRing(l, uring.Config{Entries: 8})
		lfd, addr := listener(l)
		r.PrepMultishotAccept(lfd, 1)
		if err := r.Submit(); err != nil {
			unix.Close(lfd)
			r.Close()
			l.Fatalf("Submit: %v", err)
		}
		r.Close()
		unix.Close(lfd)
		// Teardown of a released ring is asynchronous: give it time.
		deadline := time.Now().Add(2 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", addr.String(), time.Second)
			if err != nil {
				// Refused, or reset if the dial raced the listener's
				// asynchronous teardown: either way nothing accepts.
				if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ECONNRESET) {
					l.Errorf("dial after close: %v, want ECONNREFUSED (or ECONNRESET)", err)
				}
				return
			}
			c.Close()
			if time.Now().After(deadline) {
				l.Fatalf("2s after Ring.Close and closing the listener fd, %v still accepts connections: "+
					"the ring (and its armed multishot accept) is still alive", addr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// A CQEntries smaller than Entries is a configuration mistake, but New
// reports it as "io_uring unavailable" (wrapping ErrUnavailable and
// errors.ErrUnsupported, "needs Linux >= 6.1"), so a caller that falls back
// to another backend on ErrUnavailable silently does so on a typo.
func TestRegressionCQEntriesBelowEntriesReportedUnavailable(t *testing.T) {
	noLeaks(t)
	locked(t, func(l lt) {
		r, err := uring.New(uring.Config{Entries: 64, CQEntries: 8})
		if err == nil {
			defer r.Close()
			if sq, cq := r.Sizes(); cq < sq {
				l.Errorf("Sizes() = (%d, %d): CQ smaller than SQ", sq, cq)
			}
			return
		}
		if errors.Is(err, uring.ErrUnavailable) || errors.Is(err, errors.ErrUnsupported) {
			l.Errorf("CQEntries 8 < Entries 64 reported as io_uring unavailable: %v", err)
		}
		if !strings.Contains(err.Error(), "CQEntries") {
			l.Errorf("error %q does not name CQEntries", err)
		}
	})
}

// New clamps Entries to the kernel's maximum (Entries 1<<20 works, see
// TestNewSizes), but from Entries 1<<29 up the default CQEntries, 8 x Entries,
// overflows uint32 (to 0 for 1<<29): the kernel answers EINVAL and New
// reports "io_uring unavailable".
func TestRegressionHugeEntriesOverflowCQEntries(t *testing.T) {
	noLeaks(t)
	locked(t, func(l lt) {
		for _, entries := range []uint32{1 << 29, 1<<31 + 1} {
			r, err := uring.New(uring.Config{Entries: entries})
			if err != nil {
				l.Errorf("New(Entries %d): %v; want it clamped like Entries 1<<20", entries, err)
				continue
			}
			sq, cq := r.Sizes()
			r.Close()
			if cq < sq {
				l.Errorf("New(Entries %d): Sizes() = (%d, %d)", entries, sq, cq)
			}
		}
	})
}

// Reap(dst) with an empty dst (nil or zero length) on a ring that has never
// reaped and has nothing ready slices r.peek[:1] with capacity 0 and panics.
// It should return 0.
func TestRegressionReapEmptyDstPanics(t *testing.T) {
	noLeaks(t)
	locked(t, func(l lt) {
		r := newRing(l, uring.Config{Entries: 8})
		defer r.Close()
		for _, dst := range [][]uring.CQE{nil, {}} {
			func() {
				defer func() {
					if p := recover(); p != nil {
						l.Errorf("Reap(%#v) on an idle ring panicked: %v", dst, p)
					}
				}()
				if n := r.Reap(dst); n != 0 {
					l.Errorf("Reap(empty) = %d", n)
				}
			}()
		}
	})
}
