//go:build linux

package bufring_test

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/gyre-io/gyre/internal/bufring"
	"github.com/gyre-io/gyre/internal/uring"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []bufring.Config{
		{Count: 3},
		{Count: 6, Size: 64},
		{Count: 4097},
		{Count: 8192},
		{Count: -1},
		{Count: -8},
		{Size: 63},
		{Size: 1},
		{Size: -64},
		{Size: 1<<20 + 1},
		{Count: 8, Size: 32},
	} {
		b, err := bufring.New(cfg)
		if err == nil {
			b.Close()
			t.Errorf("New(%+v) succeeded", cfg)
			continue
		}
		if !errors.Is(err, bufring.ErrConfig) {
			t.Errorf("New(%+v) = %v, want an error wrapping ErrConfig", cfg, err)
		}
		// The message names the offending field and value.
		field, val := "Count", cfg.Count
		if cfg.Count == 0 || (cfg.Count > 0 && cfg.Count <= bufring.MaxCount && cfg.Count&(cfg.Count-1) == 0) {
			field, val = "Size", cfg.Size
		}
		if msg := err.Error(); !strings.Contains(msg, field+" "+strconv.Itoa(val)) {
			t.Errorf("New(%+v): message %q does not name %s %d", cfg, msg, field, val)
		}
	}
}

func TestConfigValid(t *testing.T) {
	for _, tc := range []struct {
		cfg         bufring.Config
		count, size int
	}{
		{bufring.Config{}, bufring.DefaultCount, bufring.DefaultSize},
		{bufring.Config{Count: 1, Size: 64}, 1, 64},
		{bufring.Config{Count: bufring.MaxCount, Size: 64}, 4096, 64},
		{bufring.Config{Count: 2, Size: 1 << 20}, 2, 1 << 20},
		{bufring.Config{Count: 16}, 16, bufring.DefaultSize},
		{bufring.Config{Size: 100}, bufring.DefaultCount, 100},
	} {
		b, err := bufring.New(tc.cfg)
		if err != nil {
			t.Errorf("New(%+v): %v", tc.cfg, err)
			continue
		}
		st := b.Stats()
		if b.Count() != tc.count || b.Size() != tc.size || st.Count != tc.count || st.Size != tc.size {
			t.Errorf("New(%+v): Count %d Size %d Stats %+v, want %d x %d", tc.cfg, b.Count(), b.Size(), st, tc.count, tc.size)
		}
		if b.Free() != tc.count || st.Owned != 0 || st.Exhausted != 0 {
			t.Errorf("New(%+v): Free %d Stats %+v, want every buffer free", tc.cfg, b.Free(), st)
		}
		if b.Addr() == 0 || b.Addr()%uintptr(os.Getpagesize()) != 0 {
			t.Errorf("New(%+v): Addr %#x, want page-aligned memory", tc.cfg, b.Addr())
		}
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

func TestTakeReleaseAccounting(t *testing.T) {
	b, err := bufring.New(bufring.Config{Count: 8, Size: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	v3 := b.Take(3, 10)
	if len(v3) != 10 || cap(v3) != 10 {
		t.Errorf("Take(3, 10): len %d cap %d, want 10 and 10 (appending must not spill into buffer 4)", len(v3), cap(v3))
	}
	if got, want := uintptr(unsafe.Pointer(&v3[0])), b.Addr()+3*64; got != want {
		t.Errorf("Take(3, 10) views %#x, want buffer 3 at %#x", got, want)
	}
	if b.Free() != 7 || b.Stats().Owned != 1 {
		t.Errorf("after one Take: Free %d Owned %d, want 7 and 1", b.Free(), b.Stats().Owned)
	}
	v5 := b.Take(5, 64)
	v0 := b.Take(0, 0)
	if len(v5) != 64 || len(v0) != 0 {
		t.Errorf("Take lengths %d and %d, want 64 and 0", len(v5), len(v0))
	}
	if b.Free() != 5 || b.Stats().Owned != 3 {
		t.Errorf("after three Takes: Free %d Owned %d, want 5 and 3", b.Free(), b.Stats().Owned)
	}
	copy(v3, "0123456789")
	copy(v5, strings.Repeat("x", 64))
	if string(v3) != "0123456789" {
		t.Errorf("buffer 3 holds %q: neighbours overlap", v3)
	}
	b.Release(3)
	b.Release(0)
	if b.Free() != 7 || b.Stats().Owned != 1 {
		t.Errorf("after two Releases: Free %d Owned %d, want 7 and 1", b.Free(), b.Stats().Owned)
	}
	// A released buffer can be taken again.
	if v := b.Take(3, 4); string(v) != "0123" {
		t.Errorf("retaking buffer 3: %q", v)
	}
	b.Release(3)
	b.Release(5)
	if b.Free() != 8 || b.Stats().Owned != 0 {
		t.Errorf("after releasing everything: Free %d Owned %d, want 8 and 0", b.Free(), b.Stats().Owned)
	}
	b.NoteExhausted()
	b.NoteExhausted()
	if st := b.Stats(); st.Exhausted != 2 {
		t.Errorf("Stats().Exhausted = %d after two NoteExhausted", st.Exhausted)
	}
	// Every ID in a full ring, in any order, more than once round the
	// 16-bit tail.
	for round := range 9000 {
		for i := range 8 {
			b.Take(uint16((i*3+round)%8), 1)
		}
		if b.Free() != 0 {
			t.Fatalf("round %d: Free %d with all taken", round, b.Free())
		}
		for i := range 8 {
			b.Release(uint16(i))
		}
	}
	if b.Free() != 8 || b.Stats().Owned != 0 {
		t.Errorf("after 9000 rounds: Free %d Owned %d", b.Free(), b.Stats().Owned)
	}
}

func mustPanic(t *testing.T, what, want string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		p := recover()
		if p == nil {
			t.Errorf("%s did not panic", what)
			return
		}
		if msg := fmt.Sprint(p); !strings.Contains(msg, want) {
			t.Errorf("%s panicked with %q, want it to mention %q", what, msg, want)
		}
	}()
	f()
}

func TestMisusePanics(t *testing.T) {
	b, err := bufring.New(bufring.Config{Count: 4, Size: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	mustPanic(t, "Release of a buffer never taken", "released twice", func() { b.Release(1) })
	b.Take(2, 8)
	b.Release(2)
	mustPanic(t, "double Release", "released twice", func() { b.Release(2) })
	b.Take(1, 8)
	mustPanic(t, "Take of an owned buffer", "already owned", func() { b.Take(1, 8) })
	mustPanic(t, "Take of id == Count", "out of range", func() { b.Take(4, 1) })
	mustPanic(t, "Take of id 65535", "out of range", func() { b.Take(65535, 1) })
	mustPanic(t, "Take of more bytes than Size", "out of range", func() { b.Take(0, 65) })
	mustPanic(t, "Take of negative bytes", "out of range", func() { b.Take(0, -1) })
	mustPanic(t, "Release out of range", "out of range", func() { b.Release(4) })
	// Failed calls changed nothing.
	if b.Free() != 3 || b.Stats().Owned != 1 {
		t.Errorf("after the panics: Free %d Owned %d, want 3 and 1", b.Free(), b.Stats().Owned)
	}
	b.Release(1)
}

func TestStatsConcurrent(t *testing.T) {
	b, err := bufring.New(bufring.Config{Count: 16, Size: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
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
			if st := b.Stats(); st.Owned < 0 || st.Owned > 16 || st.Count != 16 {
				t.Errorf("Stats() = %+v", st)
				return
			}
		}
	}()
	for i := range 2000 {
		id := uint16(i % 16)
		b.Take(id, 1)
		b.NoteExhausted()
		b.Release(id)
	}
	close(stop)
	wg.Wait()
	if st := b.Stats(); st.Owned != 0 || st.Exhausted != 2000 {
		t.Errorf("Stats() = %+v, want Owned 0 Exhausted 2000", st)
	}
}

// mapped reports whether addr lies in a mapping of this process.
func mapped(t *testing.T, addr uintptr) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatalf("reading /proc/self/maps: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		rng, _, _ := strings.Cut(line, " ")
		lo, hi, ok := strings.Cut(rng, "-")
		if !ok {
			continue
		}
		l, err1 := strconv.ParseUint(lo, 16, 64)
		h, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 == nil && err2 == nil && uint64(addr) >= l && uint64(addr) < h {
			return true
		}
	}
	return false
}

func TestCloseUnmapsIdempotent(t *testing.T) {
	b, err := bufring.New(bufring.Config{Count: 32, Size: 4096})
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addr()
	last := addr + 32*4096 - 1
	if !mapped(t, addr) || !mapped(t, last) {
		t.Fatalf("buffer memory %#x..%#x not in /proc/self/maps", addr, last)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close of an unregistered ring: %v", err)
	}
	if b.Addr() != 0 {
		t.Errorf("Addr() = %#x after Close, want 0", b.Addr())
	}
	if mapped(t, addr) || mapped(t, last) {
		t.Errorf("buffer memory %#x..%#x still mapped after Close", addr, last)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if b.Addr() != 0 {
		t.Errorf("Addr() = %#x after second Close", b.Addr())
	}
}

// onRing runs f on a fresh goroutine locked to its thread, with a ring
// created there (the ring is single-issuer), and closes the ring after.
func onRing(t *testing.T, f func(r *uring.Ring)) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		r, err := uring.New(uring.Config{Entries: 8})
		if err != nil {
			t.Errorf("uring.New: %v", err)
			return
		}
		defer r.Close()
		f(r)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("ring goroutine still running after 30s")
	}
}

func TestRegister(t *testing.T) {
	onRing(t, func(r *uring.Ring) {
		b, err := bufring.New(bufring.Config{Count: 8, Size: 64})
		if err != nil {
			t.Errorf("New: %v", err)
			return
		}
		defer b.Close()
		if err := b.Register(r, 7); err != nil {
			t.Errorf("Register: %v", err)
			return
		}
		if b.Group() != 7 {
			t.Errorf("Group() = %d, want 7", b.Group())
		}
		// Twice: refused, and the first registration stands.
		if err := b.Register(r, 8); err == nil {
			t.Errorf("second Register succeeded")
		} else if !strings.Contains(err.Error(), "already registered") {
			t.Errorf("second Register: %v", err)
		}
		if b.Group() != 7 {
			t.Errorf("Group() = %d after a refused Register, want 7", b.Group())
		}

		// Another ring for the same group: the kernel refuses.
		b2, err := bufring.New(bufring.Config{Count: 8, Size: 64})
		if err != nil {
			t.Errorf("New: %v", err)
			return
		}
		defer b2.Close()
		if err := b2.Register(r, 7); err == nil {
			t.Errorf("registering a second ring as group 7 succeeded")
		}

		// Close unregisters: the group is free again.
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := b.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if err := b2.Register(r, 7); err != nil {
			t.Errorf("Register as group 7 after the first ring's Close: %v", err)
		}
		if err := b2.Close(); err != nil {
			t.Errorf("Close of the second ring: %v", err)
		}
	})
}
