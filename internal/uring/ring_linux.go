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
	// Inject, when set, makes one step of the ring's life fail as if the
	// kernel had refused it (see [Injection]). A test hook: nil in
	// production.
	Inject *Injection
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
// OS thread that created it may call its methods (except Fd, Mode, Sizes
// and Overflows).
type Ring struct {
	fd        int
	mode      Mode
	features  uint32
	fault     Fault
	inject    *Injection
	fakes     []CQE // faked completions, returned by the next Reap
	sqEntries uint32
	cqEntries uint32
	overflows atomic.Uint64
	closed    bool

	// The mappings, kept to unmap them. cqMem is nil when the kernel maps
	// both rings at once (IORING_FEAT_SINGLE_MMAP).
	sqMem, cqMem, sqeMem []byte

	// Submission queue. The kernel moves the head, this package the tail.
	sqHead  *uint32 // read with acquire (atomic load)
	sqTail  *uint32 // written with release (atomic store)
	sqFlags *uint32 // IORING_SQ_*, set by the kernel
	sqMask  uint32
	sqes    []sqe
	sqeTail uint32 // next entry to hand out; published to *sqTail on submit
	sqeSent uint32 // the last value stored to *sqTail

	// Completion queue. The kernel moves the tail, this package the head.
	cqHead *uint32 // written with release (atomic store)
	cqTail *uint32 // read with acquire (atomic load)
	cqMask uint32
	cqes   []cqe

	ts      kernelTimespec // see PrepTimeout
	waitTS  kernelTimespec // SubmitAndWait's timeout, read by the kernel during the call
	waitArg getEventsArg   // points at waitTS
}

// minKernel is the oldest kernel gyre supports: SINGLE_ISSUER, DEFER_TASKRUN
// and multishot recv with provided buffer rings are all present from 6.1.
var minKernel = [2]int{6, 1}

// requiredOps are the opcodes gyre cannot work without.
var requiredOps = []struct {
	op   uint8
	name string
}{
	{opAccept, "ACCEPT"},
	{opRecv, "RECV"},
	{opSend, "SEND"},
	{opMsgRing, "MSG_RING"},
	{opPollAdd, "POLL_ADD"},
	{opTimeout, "TIMEOUT"},
	{opAsyncCancel, "ASYNC_CANCEL"},
	{opShutdown, "SHUTDOWN"},
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
		{ModeSingleIssuer, setupSingleIssuer | setupDeferTaskrun},
		{ModeCoopTaskrun, setupCoopTaskrun | setupTaskrunFlag},
		{ModePlain, 0},
	}
	var lastErr error
	for _, a := range attempts {
		r, err := setup(cfg.Entries, cq, a.flags|cfg.ExtraFlags|setupCQSize|setupClamp, cfg.Inject)
		if err == nil {
			r.mode = a.mode
			r.fault = cfg.Fault
			r.inject = cfg.Inject
			if err := r.probe(); err != nil {
				r.Close()
				return nil, err
			}
			return r, nil
		}
		lastErr = err
		var se *os.SyscallError
		if !errors.As(err, &se) || se.Syscall != "io_uring_setup" || se.Err != unix.EINVAL {
			break // only io_uring_setup's EINVAL means "try fewer flags"
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

// setup calls io_uring_setup and maps the rings. Its errors are
// *os.SyscallError named after the failing call.
func setup(entries, cqEntries, flags uint32, inj *Injection) (*Ring, error) {
	if errno := inj.at(StageSetup); errno != 0 {
		return nil, os.NewSyscallError("io_uring_setup", errno)
	}
	p := params{flags: flags, cqEntries: cqEntries}
	fd, errno := ioUringSetup(entries, &p)
	if errno != 0 {
		return nil, os.NewSyscallError("io_uring_setup", errno)
	}
	// The ring fd is deliberately not registered (IORING_REGISTER_RING_FDS):
	// a registration holds a reference to the ring until it is undone or
	// the thread exits, and the saving, one fdget per io_uring_enter, is
	// small.
	r := &Ring{fd: fd, features: p.features, sqEntries: p.sqEntries, cqEntries: p.cqEntries}
	if err := r.mapRings(&p); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// mapRings maps the SQ ring, the CQ ring (the same mapping with
// IORING_FEAT_SINGLE_MMAP) and the SQE array, and fills the SQ index array.
func (r *Ring) mapRings(p *params) error {
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4 // the index array holds __u32
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*int(unsafe.Sizeof(cqe{}))
	single := p.features&featSingleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	if r.sqMem, err = mmapRing(r.fd, offSQRing, sqSize); err != nil {
		return err
	}
	cqMem := r.sqMem
	if !single {
		if r.cqMem, err = mmapRing(r.fd, offCQRing, cqSize); err != nil {
			return err
		}
		cqMem = r.cqMem
	}
	if r.sqeMem, err = mmapRing(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{}))); err != nil {
		return err
	}

	sq := r.sqMem
	r.sqHead = word(sq, p.sqOff.head)
	r.sqTail = word(sq, p.sqOff.tail)
	r.sqFlags = word(sq, p.sqOff.flags)
	r.sqMask = *word(sq, p.sqOff.ringMask)
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.sqeTail = atomic.LoadUint32(r.sqTail)
	r.sqeSent = r.sqeTail
	// Entries are handed out in ring order, so slot i of the index array
	// always names SQE i: fill it once.
	array := unsafe.Slice(word(sq, p.sqOff.array), p.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}

	r.cqHead = word(cqMem, p.cqOff.head)
	r.cqTail = word(cqMem, p.cqOff.tail)
	r.cqMask = *word(cqMem, p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*cqe)(unsafe.Pointer(&cqMem[p.cqOff.cqes])), p.cqEntries)
	return nil
}

func mmapRing(fd int, off int64, size int) ([]byte, error) {
	b, err := unix.Mmap(fd, off, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, syscallErr("mmap", err)
	}
	return b, nil
}

// word points at the __u32 at offset off of a ring mapping.
func word(mem []byte, off uint32) *uint32 {
	return (*uint32)(unsafe.Pointer(&mem[off]))
}

func (r *Ring) probe() error {
	var pr probe
	errno := r.inject.at(StageProbe)
	if errno == 0 {
		_, errno = ioUringRegister(r.fd, registerProbe, unsafe.Pointer(&pr), uint32(len(pr.ops)))
	}
	if errno != 0 {
		return refused("probing opcodes (IORING_REGISTER_PROBE)", "io_uring_register", errno,
			fmt.Sprintf("the kernel refused IORING_REGISTER_PROBE (needs Linux >= %d.%d)", minKernel[0], minKernel[1]), true)
	}
	for _, op := range requiredOps {
		if !pr.supported(op.op) {
			return fmt.Errorf("uring: the kernel lacks io_uring opcode %s, which gyre needs (Linux >= %d.%d): %w",
				op.name, minKernel[0], minKernel[1], ErrUnavailable)
		}
	}
	return nil
}

// ErrUnavailable is wrapped by every error that means io_uring cannot be
// used on this machine. It wraps errors.ErrUnsupported.
var ErrUnavailable = fmt.Errorf("io_uring unavailable: %w", errors.ErrUnsupported)

// setupError explains why a ring could not be set up. extra is
// Config.ExtraFlags.
func setupError(err error, extra uint32) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("uring: io_uring_setup: %w", err)
	}
	name := "io_uring_setup"
	if se := (*os.SyscallError)(nil); errors.As(err, &se) {
		name = se.Syscall // e.g. mmap of the rings
	}
	einval := fmt.Sprintf("the kernel refused every supported set of setup flags (needs Linux >= %d.%d)", minKernel[0], minKernel[1])
	if extra != 0 {
		einval = fmt.Sprintf("the kernel refused setup flags %#x", extra)
	}
	return refused("", name, errno, einval, true)
}

// refused explains the errno a system call returned, with a hint for the
// operator, wrapping it in an *os.SyscallError named name. step, if not
// empty, names what was being done; einval describes EINVAL, and
// einvalUnavailable says whether EINVAL means io_uring cannot be used here
// (rather than a caller's mistake).
func refused(step, name string, errno syscall.Errno, einval string, einvalUnavailable bool) error {
	prefix := "uring: "
	if step != "" {
		prefix += step + ": "
	}
	sysErr := os.NewSyscallError(name, errno)
	switch errno {
	case unix.EPERM, unix.EACCES:
		hint := "a seccomp profile (e.g. a container runtime's default) blocks " + name + "; allow the io_uring syscalls"
		if name == "io_uring_setup" {
			if v, ok := readSysctl("/proc/sys/kernel/io_uring_disabled"); ok && v != "0" {
				hint = "kernel.io_uring_disabled=" + v + "; set it to 0 (sysctl -w kernel.io_uring_disabled=0)"
				if v == "1" {
					hint += " or add this user to the group in kernel.io_uring_group"
				}
			}
		}
		return fmt.Errorf("%sio_uring is not permitted: %s: %w (%w)", prefix, hint, sysErr, ErrUnavailable)
	case unix.ENOSYS:
		return fmt.Errorf("%sthis kernel has no io_uring (built without CONFIG_IO_URING, or a seccomp filter answers ENOSYS): %w (%w)", prefix, sysErr, ErrUnavailable)
	case unix.EOPNOTSUPP:
		return fmt.Errorf("%sthe kernel, or a sandbox such as gVisor, does not support this io_uring operation (gyre needs Linux >= %d.%d with io_uring fully enabled): %w (%w)",
			prefix, minKernel[0], minKernel[1], sysErr, ErrUnavailable)
	case unix.ENOMEM:
		return fmt.Errorf("%snot enough locked memory for the ring; raise RLIMIT_MEMLOCK (ulimit -l) or the memory cgroup limit, or use fewer entries: %w", prefix, sysErr)
	case unix.EINVAL:
		if einvalUnavailable {
			return fmt.Errorf("%s%s: %w (%w)", prefix, einval, sysErr, ErrUnavailable)
		}
		return fmt.Errorf("%s%s: %w", prefix, einval, sysErr)
	}
	return fmt.Errorf("%s%w", prefix, sysErr)
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
	r.sqHead, r.sqTail, r.sqFlags, r.cqHead, r.cqTail = nil, nil, nil, nil, nil
	r.sqes, r.cqes = nil, nil
	for _, m := range []*[]byte{&r.sqeMem, &r.cqMem, &r.sqMem} {
		if *m != nil {
			_ = unix.Munmap(*m)
			*m = nil
		}
	}
	if r.fd >= 0 {
		_ = unix.Close(r.fd)
	}
}

// sqe returns a zeroed submission entry, submitting queued entries first if
// the submission queue is full. It never spills into a side list.
func (r *Ring) sqe() *sqe {
	if r.closed {
		panic("uring: use of a closed ring") // its memory is unmapped
	}
	for {
		// Acquire: the kernel has read every entry before the head.
		if r.sqeTail-atomic.LoadUint32(r.sqHead) < r.sqEntries {
			e := &r.sqes[r.sqeTail&r.sqMask]
			r.sqeTail++
			*e = sqe{}
			return e
		}
		_, errno := r.enter(r.flushSQ(), 0, r.flushFlags(), nil, 0)
		switch errno {
		case 0, unix.EINTR, unix.EAGAIN:
		case unix.EEXIST, unix.EBADF, unix.EBADFD, unix.EFAULT, unix.EINVAL:
			// A bug (EEXIST: a thread other than the ring's owner), not
			// a passing state: retrying would spin forever.
			panic("uring: submission queue full and " + os.NewSyscallError("io_uring_enter", errno).Error())
		default:
			// E.g. EBUSY with the CQ overflowing: flush completions by
			// waiting for none, then try again.
			_, _ = r.enter(0, 0, enterGetEvents, nil, 0)
		}
	}
}

// flushSQ publishes the entries handed out since the last flush and
// returns how many the kernel has not consumed yet.
func (r *Ring) flushSQ() uint32 {
	if r.sqeSent != r.sqeTail {
		// Release: the entries' contents are visible before the new tail.
		atomic.StoreUint32(r.sqTail, r.sqeTail)
		r.sqeSent = r.sqeTail
	}
	return r.sqeTail - atomic.LoadUint32(r.sqHead)
}

// cqNeedsFlush reports whether completions wait in the kernel (overflowed,
// or task work to run) that only an io_uring_enter with GETEVENTS posts.
func (r *Ring) cqNeedsFlush() bool {
	return atomic.LoadUint32(r.sqFlags)&(sqCQOverflow|sqTaskrun) != 0
}

func (r *Ring) flushFlags() uint32 {
	if r.cqNeedsFlush() {
		return enterGetEvents
	}
	return 0
}

func (r *Ring) enter(toSubmit, minComplete, flags uint32, arg unsafe.Pointer, argSize uintptr) (int, syscall.Errno) {
	n, errno := ioUringEnter(r.fd, toSubmit, minComplete, flags, arg, argSize)
	runtime.KeepAlive(r) // the ring's memory, and waitArg/waitTS, stay alive during the call
	return n, errno
}

// Submit hands queued entries to the kernel without waiting.
func (r *Ring) Submit() error {
	if r.closed {
		return os.NewSyscallError("io_uring_enter", unix.EBADF)
	}
	for {
		n, flags := r.flushSQ(), r.flushFlags()
		if n == 0 && flags == 0 {
			return nil
		}
		_, errno := r.enter(n, 0, flags, nil, 0)
		if errno != unix.EINTR {
			return wrapEnter(errno)
		}
	}
}

// SubmitAndGetEvents submits queued entries and, without waiting, has
// the kernel post the completions that are ready: with DEFER_TASKRUN a
// completion is posted only when the ring's task enters with GETEVENTS,
// so a plain Submit would leave them for the next wait, one more
// io_uring_enter per loop iteration that has work left.
func (r *Ring) SubmitAndGetEvents() error {
	if r.closed {
		return os.NewSyscallError("io_uring_enter", unix.EBADF)
	}
	for {
		_, errno := r.enter(r.flushSQ(), 0, enterGetEvents, nil, 0)
		switch errno {
		case unix.EINTR:
			continue
		case unix.EBUSY:
			return nil // CQ full with overflow pending: the caller drains
		}
		return wrapEnter(errno)
	}
}

// SubmitAndWait submits queued entries and waits until at least one
// completion is ready, or timeout passes (timeout <= 0 waits without
// limit). EINTR (Go's preemption signal) is retried; a timeout is not an
// error.
func (r *Ring) SubmitAndWait(timeout time.Duration) error {
	if r.closed {
		return os.NewSyscallError("io_uring_enter", unix.EBADF)
	}
	if r.cqReady() > 0 || len(r.fakes) > 0 {
		return r.Submit()
	}
	flags := enterGetEvents
	var arg unsafe.Pointer
	var argSize uintptr
	if timeout > 0 {
		r.waitTS = durationTimespec(int64(timeout))
		r.waitArg = getEventsArg{ts: uint64(uintptr(unsafe.Pointer(&r.waitTS)))}
		flags |= enterExtArg
		arg, argSize = unsafe.Pointer(&r.waitArg), unsafe.Sizeof(r.waitArg)
	}
	for {
		_, errno := r.enter(r.flushSQ(), 1, flags, arg, argSize)
		switch errno {
		case 0, unix.ETIME:
			return nil
		case unix.EINTR:
			continue
		case unix.EBUSY:
			// CQ full with overflow pending: the caller drains and retries.
			return nil
		}
		return wrapEnter(errno)
	}
}

func wrapEnter(errno syscall.Errno) error {
	if errno == 0 {
		return nil
	}
	return os.NewSyscallError("io_uring_enter", errno)
}

// CQE is a copy of one completion. Copies are handed out so the kernel's
// completion slots can be returned before the caller runs handlers.
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// More reports whether a multishot request stays armed after this completion.
func (c *CQE) More() bool { return c.Flags&cqeFMore != 0 }

// Errno is the error of a failed request (a negative Res), 0 if it did not
// fail: callers compare it with syscall.Errno values, not raw numbers.
func (c *CQE) Errno() syscall.Errno {
	if c.Res >= 0 {
		return 0
	}
	return syscall.Errno(-c.Res)
}

// Buffer returns the provided-buffer ID the kernel picked, if any.
func (c *CQE) Buffer() (id uint16, ok bool) {
	if c.Flags&cqeFBuffer == 0 {
		return 0, false
	}
	return uint16(c.Flags >> cqeBufferShift), true
}

// cqReady is the number of completions in the CQ ring.
func (r *Ring) cqReady() uint32 {
	// Acquire on the tail: the entries before it are written.
	return atomic.LoadUint32(r.cqTail) - atomic.LoadUint32(r.cqHead)
}

// Reap copies up to len(dst) ready completions into dst, returns them to the
// kernel, and reports how many were copied.
func (r *Ring) Reap(dst []CQE) int {
	if len(dst) == 0 || r.closed {
		return 0
	}
	if len(r.fakes) > 0 {
		n := copy(dst, r.fakes)
		r.fakes = append(r.fakes[:0], r.fakes[n:]...)
		return n
	}
	ready := r.cqReady()
	if ready == 0 {
		// Flush deferred task work and overflowed completions, if any.
		flags := atomic.LoadUint32(r.sqFlags)
		if flags&sqCQOverflow != 0 {
			r.overflows.Add(1)
		}
		if flags&(sqCQOverflow|sqTaskrun) == 0 {
			return 0
		}
		for {
			if _, errno := r.enter(0, 0, enterGetEvents, nil, 0); errno != unix.EINTR {
				break
			}
		}
		if ready = r.cqReady(); ready == 0 {
			return 0
		}
	}
	head := atomic.LoadUint32(r.cqHead)
	n := min(ready, uint32(len(dst)))
	for i := range n {
		e := &r.cqes[(head+i)&r.cqMask]
		dst[i] = CQE{UserData: e.userData, Res: e.res, Flags: e.flags}
	}
	// Release: the slots are read before the kernel may reuse them.
	atomic.StoreUint32(r.cqHead, head+n)
	return int(n)
}

// FlushCompletions enters the kernel, without submitting or waiting, so
// that it posts the completions it holds back: on a DEFER_TASKRUN ring,
// completions (a MSG_RING from another ring among them) wait as task work
// until the owner thread enters with GETEVENTS, and Reap alone, seeing an
// empty CQ, does not enter. A ring about to be closed calls it before its
// last Reap, or those completions are lost with it.
func (r *Ring) FlushCompletions() {
	if r.closed {
		return
	}
	for {
		if _, errno := r.enter(0, 0, enterGetEvents, nil, 0); errno != unix.EINTR {
			return
		}
	}
}

// fake queues a completion that the next Reap returns first.
func (r *Ring) fake(ud uint64, res int32) { r.fakes = append(r.fakes, CQE{UserData: ud, Res: res}) }

func syscallErr(name string, err error) error {
	if errno, ok := err.(syscall.Errno); ok {
		return os.NewSyscallError(name, errno)
	}
	return err
}
