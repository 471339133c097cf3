//go:build linux

package uring

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Probe decides whether gyre can use io_uring on this machine: it does
// once, on a small scale, everything a gyre server does at start, and
// undoes it. Call it at start-up, before choosing a backend.
//
// Its steps: lock the calling goroutine to its OS thread; check the kernel
// version, set up a ring with the flags gyre uses and probe the opcodes it
// needs (all through [New]); register a provided-buffer ring of one page
// (buffers in another page) and unregister it; round-trip a NOP through
// io_uring_enter; close the ring, unmap the pages, unlock the thread. It
// leaves no descriptor or mapping behind.
//
// It returns nil, or an error that names the failing step, wraps the
// kernel's errno in an *os.SyscallError (so errors.Is(err, unix.EPERM)
// works) and gives the operator a hint. Errors that mean io_uring cannot be
// used here wrap [ErrUnavailable]; ENOMEM (locked-memory limits) does not.
func Probe() error { return ProbeWith(nil) }

// ProbeWith is [Probe] with a test hook: inj, if not nil, makes one step
// fail as if the kernel had refused it.
func ProbeWith(inj *Injection) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread() // runs last: the ring is closed before

	r, err := New(Config{Entries: 4, Inject: inj})
	if err != nil {
		return &probeError{err: err}
	}
	defer r.Close()

	// A provided-buffer ring like bufring's: one page of slots, one page
	// of buffers, every buffer in the ring.
	page := unix.Getpagesize()
	ringMem, err := unix.Mmap(-1, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANONYMOUS|unix.MAP_PRIVATE)
	if err != nil {
		return &probeError{err: fmt.Errorf("uring: mapping a buffer ring: %w", syscallErr("mmap", err))}
	}
	defer unix.Munmap(ringMem)
	bufMem, err := unix.Mmap(-1, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANONYMOUS|unix.MAP_PRIVATE)
	if err != nil {
		return &probeError{err: fmt.Errorf("uring: mapping buffers: %w", syscallErr("mmap", err))}
	}
	defer unix.Munmap(bufMem)
	const entries, bgid = 8, 0
	slots := unsafe.Slice((*buf)(unsafe.Pointer(&ringMem[0])), entries)
	size := page / entries
	for i := range slots {
		slots[i] = buf{addr: uint64(uintptr(unsafe.Pointer(&bufMem[i*size]))), len: uint32(size), bid: uint16(i)}
	}
	// The tail overlays slot 0's resv: set it after the slots. The kernel
	// reads it only once the ring is registered, after this store.
	*(*uint16)(unsafe.Pointer(&ringMem[bufRingTailOffset])) = entries
	if err := r.RegisterBufRing(unsafe.Pointer(&ringMem[0]), entries, bgid, 0); err != nil {
		// The buffer ring's parameters are valid: a refusal other than
		// ENOMEM means the kernel will not do what gyre needs.
		return &probeError{err: err, unavailable: !errors.Is(err, unix.ENOMEM)}
	}
	if err := r.UnregisterBufRing(bgid); err != nil {
		return &probeError{err: err, unavailable: !errors.Is(err, unix.ENOMEM)}
	}

	// io_uring_enter works (a seccomp profile could allow setup only).
	const nopUD = 1
	r.PrepNop(nopUD)
	var c [1]CQE
	deadline := time.Now().Add(2 * time.Second)
	for r.Reap(c[:]) == 0 {
		if time.Now().After(deadline) {
			return &probeError{err: fmt.Errorf("uring: no completion for a NOP within 2s: %w", ErrUnavailable)}
		}
		if err := r.SubmitAndWait(100 * time.Millisecond); err != nil {
			return &probeError{err: fmt.Errorf("uring: submitting a NOP: %w", err), unavailable: !errors.Is(err, unix.ENOMEM)}
		}
	}
	if c[0].UserData != nopUD || c[0].Res != 0 {
		return &probeError{err: fmt.Errorf("uring: NOP completed with user data %#x res %d, want %#x res 0: %w",
			c[0].UserData, c[0].Res, nopUD, ErrUnavailable)}
	}
	return nil
}

// probeError is what ProbeWith returns: the failing step's error under a
// "uring: probe:" prefix, and ErrUnavailable where the step's error alone
// would not say so although a probe failure means it.
type probeError struct {
	err         error
	unavailable bool
}

func (e *probeError) Error() string {
	return "uring: probe: " + strings.TrimPrefix(e.err.Error(), "uring: ")
}

func (e *probeError) Unwrap() []error {
	if e.unavailable && !errors.Is(e.err, ErrUnavailable) {
		return []error{e.err, ErrUnavailable}
	}
	return []error{e.err}
}
