//go:build linux

package uring_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gyre-io/gyre/internal/uring"
	"golang.org/x/sys/unix"
)

func TestNewDefaultConfig(t *testing.T) {
	noLeaks(t)
	locked(t, func(l lt) {
		r := newRing(l, uring.Config{Entries: 8})
		defer r.Close()
		if got := r.Mode(); got != uring.ModeSingleIssuer {
			l.Errorf("Mode() = %v, want %v on Linux 6.18", got, uring.ModeSingleIssuer)
		}
		if r.Fd() < 0 {
			l.Errorf("Fd() = %d, want a descriptor", r.Fd())
		}
		if sq, cq := r.Sizes(); sq != 8 || cq != 64 {
			l.Errorf("Sizes() = (%d, %d), want (8, 64): CQEntries defaults to 8 x Entries", sq, cq)
		}
		if n := r.Overflows(); n != 0 {
			l.Errorf("Overflows() = %d on a fresh ring", n)
		}
		// The ring works: a NOP round trip.
		r.PrepNop(7)
		c := only(l, collectN(l, r, 1), 7)
		if c.Res != 0 || c.More() {
			l.Errorf("NOP completion = %+v, want res 0 without More", c)
		}
	})
}

func TestNewSizes(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		cfg    uring.Config
		sq, cq uint32
	}{
		{uring.Config{Entries: 1}, 1, 8},
		{uring.Config{Entries: 100}, 128, 1024},                // both rounded up to a power of two
		{uring.Config{Entries: 16, CQEntries: 32}, 16, 32},     // explicit CQ size
		{uring.Config{Entries: 16, CQEntries: 1000}, 16, 1024}, // rounded up
		{uring.Config{Entries: 1 << 20}, 32768, 65536},         // clamped to the kernel's maxima
	} {
		t.Run(fmt.Sprintf("%d/%d", tc.cfg.Entries, tc.cfg.CQEntries), func(t *testing.T) {
			locked(t, func(l lt) {
				r, err := uring.New(tc.cfg)
				if err != nil {
					l.Fatalf("New(%+v): %v", tc.cfg, err)
				}
				defer r.Close()
				sq, cq := r.Sizes()
				if sq != tc.sq || cq != tc.cq {
					l.Errorf("Sizes() = (%d, %d), want (%d, %d)", sq, cq, tc.sq, tc.cq)
				}
			})
		})
	}
}

func TestNewZeroEntries(t *testing.T) {
	noLeaks(t)
	locked(t, func(l lt) {
		r, err := uring.New(uring.Config{})
		if err == nil {
			r.Close()
			l.Fatalf("New with Entries 0 succeeded")
		}
		if !strings.Contains(err.Error(), "Entries") {
			l.Errorf("error %q does not name Entries", err)
		}
		if errors.Is(err, uring.ErrUnavailable) {
			l.Errorf("a config mistake must not claim io_uring is unavailable: %v", err)
		}
	})
}

func TestNewRefusedFlags(t *testing.T) {
	noLeaks(t)
	locked(t, func(l lt) {
		r, err := uring.New(uring.Config{Entries: 8, ExtraFlags: 1 << 28})
		if err == nil {
			r.Close()
			l.Fatalf("New with setup flag 1<<28 succeeded")
		}
		if !errors.Is(err, uring.ErrUnavailable) {
			l.Errorf("error does not wrap ErrUnavailable: %v", err)
		}
		if !errors.Is(err, errors.ErrUnsupported) {
			l.Errorf("error does not wrap errors.ErrUnsupported: %v", err)
		}
		if !errors.Is(err, unix.EINVAL) {
			l.Errorf("error does not wrap the kernel's EINVAL: %v", err)
		}
		if !strings.Contains(err.Error(), "0x10000000") {
			l.Errorf("error %q does not name the refused flags 0x10000000", err)
		}
	})
}

func TestCloseIdempotentReleasesRing(t *testing.T) {
	noLeaks(t)
	locked(t, func(l lt) {
		before := openFDs(l)
		r := newRing(l, uring.Config{Entries: 8})
		if got := openFDs(l); got != before+1 {
			l.Errorf("after New: %d descriptors open, want %d (one ring fd)", got, before+1)
		}
		if len(uringMaps(l)) == 0 {
			l.Errorf("no io_uring mapping in /proc/self/maps while the ring is open")
		}
		fd := r.Fd()
		r.Close()
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
			l.Errorf("ring fd %d after Close: fcntl error %v, want EBADF", fd, err)
		}
		if got := openFDs(l); got != before {
			l.Errorf("after Close: %d descriptors open, want %d", got, before)
		}
		if lines := uringMaps(l); len(lines) > 0 {
			l.Errorf("io_uring mappings left after Close:\n%s", strings.Join(lines, "\n"))
		}
		r.Close() // idempotent: no panic, no double close
		if got := openFDs(l); got != before {
			l.Errorf("after second Close: %d descriptors open, want %d", got, before)
		}
	})
}

func TestModeString(t *testing.T) {
	for m, want := range map[uring.Mode]string{
		uring.ModeSingleIssuer: "single-issuer+defer-taskrun",
		uring.ModeCoopTaskrun:  "coop-taskrun",
		uring.ModePlain:        "plain",
		uring.Mode(0):          "mode(0)",
		uring.Mode(9):          "mode(9)",
	} {
		if got := m.String(); got != want {
			t.Errorf("Mode(%d).String() = %q, want %q", uint8(m), got, want)
		}
	}
}

func TestPackUnpack(t *testing.T) {
	for _, tc := range []struct {
		op         uint8
		gen, index uint32
	}{
		{0, 0, 0},
		{1, 1, 1},
		{7, 12345, 42},
		{uring.OpHandoff, uring.GenMask, 1<<32 - 1},
		{255, 0, 0},
		{128, 1 << 23, 1 << 31},
	} {
		ud := uring.Pack(tc.op, tc.gen, tc.index)
		op, gen, index := uring.Unpack(ud)
		if op != tc.op || gen != tc.gen || index != tc.index {
			t.Errorf("Unpack(Pack(%d, %d, %d)) = (%d, %d, %d)", tc.op, tc.gen, tc.index, op, gen, index)
		}
	}
	// The generation wraps at 24 bits and never spills into the op.
	for _, tc := range []struct{ in, want uint32 }{
		{1 << 24, 0},
		{1<<24 + 5, 5},
		{1<<32 - 1, uring.GenMask},
	} {
		op, gen, index := uring.Unpack(uring.Pack(3, tc.in, 9))
		if op != 3 || gen != tc.want || index != 9 {
			t.Errorf("Unpack(Pack(3, %#x, 9)) = (%d, %#x, %d), want (3, %#x, 9)", tc.in, op, gen, index, tc.want)
		}
	}
	if got := uring.Pack(255, 0, 0); got != 0xff<<56 {
		t.Errorf("Pack(255, 0, 0) = %#x, want op in the top byte", got)
	}
	if uring.GenMask != 1<<24-1 {
		t.Errorf("GenMask = %#x, want 24 bits", uring.GenMask)
	}
}

func TestSubmitAndWaitTimeoutWhenIdle(t *testing.T) {
	noLeaks(t)
	locked(t, func(l lt) {
		r := newRing(l, uring.Config{Entries: 8})
		defer r.Close()
		const d = 100 * time.Millisecond
		start := time.Now()
		if err := r.SubmitAndWait(d); err != nil {
			l.Fatalf("SubmitAndWait(%v) on an idle ring: %v, want nil", d, err)
		}
		if el := time.Since(start); el < d || el > d+2*time.Second {
			l.Errorf("SubmitAndWait(%v) returned after %v", d, el)
		}
		if n := r.Reap(make([]uring.CQE, 4)); n != 0 {
			l.Errorf("Reap after an idle wait = %d, want 0", n)
		}
	})
}

func TestSQFullSubmitsByItself(t *testing.T) {
	noLeaks(t)
	for _, cq := range []uint32{0, 256} { // 0: 8x = 64, smaller than the 100 NOPs
		t.Run(fmt.Sprintf("cq=%d", cq), func(t *testing.T) {
			locked(t, func(l lt) {
				r := newRing(l, uring.Config{Entries: 8, CQEntries: cq})
				defer r.Close()
				const n = 100
				for i := range n {
					r.PrepNop(uint64(1000 + i))
				}
				got := collectN(l, r, n)
				seen := make(map[uint64]int)
				for _, c := range got {
					if c.Res != 0 {
						l.Errorf("NOP %d: res %s", c.UserData, errno(c.Res))
					}
					seen[c.UserData]++
				}
				for i := range n {
					if k := seen[uint64(1000+i)]; k != 1 {
						l.Errorf("NOP %d completed %d times, want once", 1000+i, k)
					}
				}
				if len(got) != n {
					l.Errorf("%d completions for %d NOPs", len(got), n)
				}
				// 100 NOPs into a 64-entry CQ overflow (the kernel keeps
				// them), and Overflows reports the sizing bug; 256 do not.
				if o := r.Overflows(); (cq == 0) != (o > 0) {
					l.Errorf("Overflows() = %d with a CQ of %d for %d NOPs", o, cq, n)
				}
				// Nothing more arrives.
				if err := r.SubmitAndWait(20 * time.Millisecond); err != nil {
					l.Fatalf("SubmitAndWait: %v", err)
				}
				if k := r.Reap(make([]uring.CQE, 8)); k != 0 {
					l.Errorf("%d extra completions", k)
				}
			})
		})
	}
}

func TestReapSmallDst(t *testing.T) {
	noLeaks(t)
	locked(t, func(l lt) {
		r := newRing(l, uring.Config{Entries: 16})
		defer r.Close()
		const n = 10
		for i := range n {
			r.PrepNop(uint64(i + 1))
		}
		if err := r.SubmitAndWait(time.Second); err != nil {
			l.Fatalf("SubmitAndWait: %v", err)
		}
		dst := make([]uring.CQE, 3)
		var got []uring.CQE
		deadline := time.Now().Add(waitLimit)
		for first := true; len(got) < n; first = false {
			if time.Now().After(deadline) {
				l.Fatalf("only %d of %d completions", len(got), n)
			}
			k := r.Reap(dst)
			if k > len(dst) {
				l.Fatalf("Reap(len %d) = %d", len(dst), k)
			}
			if first && k != len(dst) {
				l.Errorf("first Reap(len %d) = %d with %d ready, want a full dst", len(dst), k, n)
			}
			got = append(got, dst[:k]...)
			if k == 0 {
				if err := r.SubmitAndWait(10 * time.Millisecond); err != nil {
					l.Fatalf("SubmitAndWait: %v", err)
				}
			}
		}
		for i := range n {
			only(l, got, uint64(i+1))
		}
		if k := r.Reap(dst); k != 0 {
			l.Errorf("Reap after draining = %d", k)
		}
	})
}
