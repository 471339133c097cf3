//go:build linux

package uring

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/pawelgaczynski/giouring"
	"golang.org/x/sys/unix"
)

// Mode says which set of setup flags the kernel accepted for a ring.
type Mode uint8

const (
	// ModeSingleIssuer is SINGLE_ISSUER|DEFER_TASKRUN: completions run only
	// when the owner thread enters the kernel, which is cheapest for one
	// thread per ring.
	ModeSingleIssuer Mode = iota + 1
	// ModeCoopTaskrun is COOP_TASKRUN|TASKRUN_FLAG, the fallback where
	// DEFER_TASKRUN is refused.
	ModeCoopTaskrun
	// ModePlain is a ring without task-run flags.
	ModePlain
)

func (m Mode) String() string {
	switch m {
	case ModeSingleIssuer:
		return "single-issuer+defer-taskrun"
	case ModeCoopTaskrun:
		return "coop-taskrun"
	case ModePlain:
		return "plain"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// Config sizes a ring. The zero value is not valid: Entries is required.
type Config struct {
	// Entries is the submission queue size, rounded up to a power of two.
	Entries uint32
	// CQEntries is the completion queue size; 0 means 8 x Entries, because
	// multishot operations post many completions per submission and the
	// completion queue must never overflow.
	CQEntries uint32
	// ExtraFlags are OR-ed into every setup attempt. Tests use it to make
	// setup fail on purpose; nothing else should need it.
	ExtraFlags uint32
	// Fault, when set, is asked before each receive or send is queued and
	// may fake its completion or shorten it. Tests use it to provoke rare
	// kernel paths (ENOBUFS, EAGAIN, short sends) on purpose.
	Fault Fault
}

// Kind names the requests a Fault can act on.
type Kind uint8

// Kinds a Fault sees.
const (
	KindRecv Kind = iota + 1 // multishot receive being armed
	KindSend                 // send being queued
)

// Action is a Fault's decision for one request.
type Action struct {
	// Fake completes the request at once with Res, without it reaching the
	// kernel (so no data is lost: the kernel never ran it).
	Fake bool
	Res  int32
	// Len, if > 0 and smaller than the request's length, shortens it: the
	// kernel really does a short send.
	Len int
}

// Fault decides per request; see Config.Fault.
type Fault func(kind Kind, length int) Action

// Ring is one io_uring instance. It is not safe for concurrent use: only the
// OS thread that created it may call its methods (except Fd and Mode).
type Ring struct {
	ring      *giouring.Ring
	mode      Mode
	fd        int
	peek      []*giouring.CompletionQueueEvent
	fault     Fault
	fakes     []CQE // faked completions, returned by the next Reap
	sqEntries uint32
	cqEntries uint32
	overflows atomic.Uint64
	closed    bool
	ts        unix.Timespec // see PrepTimeout
}

// params mirrors struct io_uring_params (120 bytes). giouring keeps the
// fields of its Params unexported, so the CQ size could not be set without
// this mirror; the layout is checked at compile time below.
type params struct {
	sqEntries    uint32
	cqEntries    uint32
	flags        uint32
	sqThreadCPU  uint32
	sqThreadIdle uint32
	features     uint32
	wqFd         uint32
	resv         [3]uint32
	sqOff        [10]uint32
	cqOff        [10]uint32
}

// Both directions: a size mismatch makes one of the array lengths negative.
var (
	_ [unsafe.Sizeof(giouring.Params{}) - unsafe.Sizeof(params{})]byte
	_ [unsafe.Sizeof(params{}) - unsafe.Sizeof(giouring.Params{})]byte
	_ [unsafe.Sizeof(giouring.SubmissionQueueEntry{}) - 64]byte
	_ [64 - unsafe.Sizeof(giouring.SubmissionQueueEntry{})]byte
)

const (
	setupCQSize = giouring.SetupCQSize
	// setupClamp lets the kernel cap sizes at its maximum instead of failing.
	setupClamp = 1 << 4
)

// minKernel is the oldest kernel gyre supports: SINGLE_ISSUER, DEFER_TASKRUN
// and multishot recv with provided buffer rings are all present from 6.1.
var minKernel = [2]int{6, 1}

// requiredOps are the opcodes gyre cannot work without.
var requiredOps = []struct {
	op   uint8
	name string
}{
	{giouring.OpAccept, "ACCEPT"},
	{giouring.OpRecv, "RECV"},
	{giouring.OpSend, "SEND"},
	{giouring.OpMsgRing, "MSG_RING"},
	{giouring.OpPollAdd, "POLL_ADD"},
	{giouring.OpTimeout, "TIMEOUT"},
	{giouring.OpAsyncCancel, "ASYNC_CANCEL"},
	{giouring.OpShutdown, "SHUTDOWN"},
}

// New creates a ring on the calling OS thread. The caller must have locked
// its goroutine to the thread (runtime.LockOSThread) and must call every
// method from that goroutine.
//
// Errors that mean io_uring cannot be used at all wrap [ErrUnavailable]
// (and so errors.ErrUnsupported) and say what to do.
func New(cfg Config) (*Ring, error) {
	if cfg.Entries == 0 {
		return nil, errors.New("uring: Config.Entries must be > 0")
	}
	if err := checkKernel(); err != nil {
		return nil, err
	}
	cq := cfg.CQEntries
	if cq == 0 {
		cq = uint32(min(uint64(cfg.Entries)*8, math.MaxUint32)) // the clamp flag caps it
	}
	if cfg.CQEntries != 0 && roundPow2(cfg.CQEntries) < roundPow2(cfg.Entries) {
		return nil, fmt.Errorf("uring: Config.CQEntries %d is smaller than Entries %d; the kernel requires CQ >= SQ", cfg.CQEntries, cfg.Entries)
	}
	attempts := []struct {
		mode  Mode
		flags uint32
	}{
		{ModeSingleIssuer, giouring.SetupSingleIssuer | giouring.SetupDeferTaskrun},
		{ModeCoopTaskrun, giouring.SetupCoopTaskrun | giouring.SetupTaskrunFlag},
		{ModePlain, 0},
	}
	var lastErr error
	for _, a := range attempts {
		r, err := setup(cfg.Entries, cq, a.flags|cfg.ExtraFlags|setupCQSize|setupClamp)
		if err == nil {
			r.mode = a.mode
			r.fault = cfg.Fault
			if err := r.probe(); err != nil {
				r.Close()
				return nil, err
			}
			return r, nil
		}
		lastErr = err
		if !errors.Is(err, unix.EINVAL) {
			break // only EINVAL means "try fewer flags"
		}
	}
	return nil, setupError(lastErr, cfg.ExtraFlags)
}

func roundPow2(v uint32) uint64 {
	n := uint64(1)
	for n < uint64(v) {
		n <<= 1
	}
	return n
}

func setup(entries, cqEntries, flags uint32) (*Ring, error) {
	p := params{flags: flags, cqEntries: cqEntries}
	gr := giouring.NewRing()
	if err := gr.QueueInitParams(entries, (*giouring.Params)(unsafe.Pointer(&p))); err != nil {
		return nil, err
	}
	// The ring fd is deliberately not registered (IORING_REGISTER_RING_FDS):
	// giouring's UnregisterRingFd has its check inverted, so QueueExit would
	// leave the registration, and with it the ring and its in-flight
	// requests (a multishot accept keeps its listener alive), until the
	// thread exits. The saving, one fdget per io_uring_enter, is small.
	return &Ring{ring: gr, fd: gr.RingFd(), sqEntries: p.sqEntries, cqEntries: p.cqEntries}, nil
}

func (r *Ring) probe() error {
	pr, err := r.ring.GetProbeRing()
	if err != nil {
		return fmt.Errorf("uring: probing opcodes: %w", err)
	}
	for _, op := range requiredOps {
		if !pr.IsSupported(op.op) {
			return fmt.Errorf("uring: the kernel lacks io_uring opcode %s, which gyre needs (Linux >= %d.%d): %w",
				op.name, minKernel[0], minKernel[1], ErrUnavailable)
		}
	}
	return nil
}

// ErrUnavailable is wrapped by every error that means io_uring cannot be
// used on this machine. It wraps errors.ErrUnsupported.
var ErrUnavailable = fmt.Errorf("io_uring unavailable: %w", errors.ErrUnsupported)

func setupError(err error, extra uint32) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("uring: io_uring_setup: %w", err)
	}
	sysErr := os.NewSyscallError("io_uring_setup", errno)
	switch errno {
	case unix.EPERM, unix.EACCES:
		hint := "a seccomp profile (e.g. a container runtime's default) blocks io_uring_setup; allow the io_uring syscalls"
		if v, ok := readSysctl("/proc/sys/kernel/io_uring_disabled"); ok && v != "0" {
			hint = "kernel.io_uring_disabled=" + v + "; set it to 0 (sysctl -w kernel.io_uring_disabled=0)"
			if v == "1" {
				hint += " or add this user to the group in kernel.io_uring_group"
			}
		}
		return fmt.Errorf("uring: io_uring is not permitted: %s: %w (%w)", hint, sysErr, ErrUnavailable)
	case unix.ENOSYS:
		return fmt.Errorf("uring: this kernel has no io_uring (built without CONFIG_IO_URING or filtered): %w (%w)", sysErr, ErrUnavailable)
	case unix.ENOMEM:
		return fmt.Errorf("uring: not enough locked memory for the ring; raise RLIMIT_MEMLOCK (ulimit -l) or the memory cgroup limit, or use fewer entries: %w", sysErr)
	case unix.EINVAL:
		if extra != 0 {
			return fmt.Errorf("uring: the kernel refused setup flags %#x: %w (%w)", extra, sysErr, ErrUnavailable)
		}
		return fmt.Errorf("uring: the kernel refused every supported set of setup flags (needs Linux >= %d.%d): %w (%w)",
			minKernel[0], minKernel[1], sysErr, ErrUnavailable)
	}
	return fmt.Errorf("uring: %w", sysErr)
}

func readSysctl(path string) (string, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

func checkKernel() error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return nil // cannot tell: let setup decide
	}
	rel := unix.ByteSliceToString(u.Release[:])
	major, minor, ok := parseRelease(rel)
	if !ok {
		return nil
	}
	if major < minKernel[0] || (major == minKernel[0] && minor < minKernel[1]) {
		return fmt.Errorf("uring: kernel %s is older than %d.%d, the oldest gyre supports: %w",
			rel, minKernel[0], minKernel[1], ErrUnavailable)
	}
	return nil
}

func parseRelease(rel string) (major, minor int, ok bool) {
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	end := 0
	for end < len(parts[1]) && parts[1][end] >= '0' && parts[1][end] <= '9' {
		end++
	}
	minor, err2 := strconv.Atoi(parts[1][:end])
	return major, minor, err1 == nil && err2 == nil
}

// Fd returns the ring's file descriptor, the target of MSG_RING.
// Safe for concurrent use.
func (r *Ring) Fd() int { return r.fd }

// Mode reports which setup flags the kernel accepted.
func (r *Ring) Mode() Mode { return r.mode }

// Sizes reports the submission and completion queue sizes.
func (r *Ring) Sizes() (sq, cq uint32) { return r.sqEntries, r.cqEntries }

// Overflows counts the waits on which the kernel reported completions that
// did not fit in the completion queue (kept by NODROP, but a sizing bug).
// Safe for concurrent use.
func (r *Ring) Overflows() uint64 { return r.overflows.Load() }

// Close unmaps the ring and closes its descriptor; the kernel cancels
// whatever is still in flight. Idempotent.
func (r *Ring) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.ring.QueueExit()
}

// sqe returns a zeroed submission entry, submitting queued entries first if
// the submission queue is full. It never spills into a side list.
func (r *Ring) sqe() *giouring.SubmissionQueueEntry {
	if r.closed {
		panic("uring: use of a closed ring") // its memory is unmapped
	}
	for {
		if e := r.ring.GetSQE(); e != nil {
			*e = giouring.SubmissionQueueEntry{}
			return e
		}
		if _, err := r.ring.Submit(); err != nil && !retryable(err) {
			// The SQ is full and cannot be submitted (e.g. EBUSY with the
			// CQ overflowing): reap completions by waiting for none.
			_, _ = r.ring.SubmitAndWait(0)
		}
	}
}

func retryable(err error) bool {
	return errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN)
}

// Submit hands queued entries to the kernel without waiting.
func (r *Ring) Submit() error {
	for {
		_, err := r.ring.Submit()
		if err == nil || !errors.Is(err, unix.EINTR) {
			return wrapEnter(err)
		}
	}
}

// SubmitAndWait submits queued entries and waits until at least one
// completion is ready, or timeout passes (timeout <= 0 waits without
// limit). EINTR (Go's preemption signal) is retried; a timeout is not an
// error.
func (r *Ring) SubmitAndWait(timeout time.Duration) error {
	if r.ring.CQReady() > 0 || len(r.fakes) > 0 {
		return r.Submit()
	}
	for {
		var err error
		if timeout > 0 {
			ts := syscall.NsecToTimespec(int64(timeout))
			_, err = r.ring.SubmitAndWaitTimeout(1, &ts, nil)
			runtime.KeepAlive(&ts)
		} else {
			_, err = r.ring.SubmitAndWait(1)
		}
		switch {
		case err == nil, errors.Is(err, unix.ETIME):
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EBUSY):
			// CQ full with overflow pending: the caller drains and retries.
			return nil
		}
		return wrapEnter(err)
	}
}

func wrapEnter(err error) error {
	if err == nil {
		return nil
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return os.NewSyscallError("io_uring_enter", errno)
	}
	return err
}

// CQE is a copy of one completion. Copies are handed out so the kernel's
// completion slots can be returned before the caller runs handlers.
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// More reports whether a multishot request stays armed after this completion.
func (c *CQE) More() bool { return c.Flags&giouring.CQEFMore != 0 }

// Buffer returns the provided-buffer ID the kernel picked, if any.
func (c *CQE) Buffer() (id uint16, ok bool) {
	if c.Flags&giouring.CQEFBuffer == 0 {
		return 0, false
	}
	return uint16(c.Flags >> giouring.CQEBufferShift), true
}

// Reap copies up to len(dst) ready completions into dst, returns them to the
// kernel, and reports how many were copied.
func (r *Ring) Reap(dst []CQE) int {
	if len(dst) == 0 {
		return 0
	}
	if len(r.fakes) > 0 {
		n := copy(dst, r.fakes)
		r.fakes = append(r.fakes[:0], r.fakes[n:]...)
		return n
	}
	if cap(r.peek) < len(dst) {
		r.peek = make([]*giouring.CompletionQueueEvent, len(dst))
	}
	ready := r.ring.CQReady()
	if ready == 0 {
		// Flush deferred task work and overflowed completions, if any.
		if r.ring.CQHasOverflow() {
			r.overflows.Add(1)
		}
		n := r.ring.PeekBatchCQE(r.peek[:1])
		if n == 0 {
			return 0
		}
		ready = r.ring.CQReady()
	}
	want := min(int(ready), len(dst))
	// PeekBatchCQE touches len(slice) slots: size it to what is drained.
	n := int(r.ring.PeekBatchCQE(r.peek[:want]))
	for i := 0; i < n; i++ {
		e := r.peek[i]
		dst[i] = CQE{UserData: e.UserData, Res: e.Res, Flags: e.Flags}
	}
	r.ring.CQAdvance(uint32(n))
	return n
}

// fake queues a completion that the next Reap returns first.
func (r *Ring) fake(ud uint64, res int32) { r.fakes = append(r.fakes, CQE{UserData: ud, Res: res}) }
