// Package uring is gyre's only door to io_uring. No other package makes an
// io_uring system call or sees a submission or completion queue entry. It
// is built on golang.org/x/sys/unix alone (io_uring_setup, io_uring_enter
// and io_uring_register through unix.Syscall, the rings through unix.Mmap):
// no cgo, no go:linkname, so programs importing gyre need no linker flags.
// giouring appears only in abi_test.go, as an oracle for the ABI copy in
// abi_linux.go.
//
// # Contract
//
// Opcodes used by gyre, and why (minimum kernel of the form used):
//
//	ACCEPT (multishot, 5.19)      acceptor: one SQE accepts every connection
//	RECV (multishot, 6.0)         reactor: one SQE per connection receives into the buffer ring
//	SEND                          reactor: one send per connection per loop iteration
//	MSG_RING (data, 5.18)         acceptor -> reactor hand-off; wakes a reactor blocked in io_uring_enter
//	POLL_ADD (multishot, 5.13)    reactor: watches its eventfd, the inbox wakeup
//	TIMEOUT                       reactor timers (idle timeout, deadlines, tick); acceptor back-off
//	ASYNC_CANCEL                  stop a multishot recv (backpressure, close) or accept (shutdown)
//	SHUTDOWN                      force-close at a shutdown deadline
//	NOP, READ                     tests and Probe
//
// New checks the first eight with IORING_REGISTER_PROBE and refuses a
// kernel that lacks one.
//
// User data (see [Pack]): op in bits 63..56, a 24-bit slot generation in
// 55..32, the slot index in 31..0. Never a Go pointer.
//
// Kernel features, and the kernel that brought them:
//
//	IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN  6.1   preferred mode
//	IORING_SETUP_COOP_TASKRUN|TASKRUN_FLAG    5.19  fallback where the above is refused
//	IORING_SETUP_CQSIZE (5.5), CLAMP (5.6)    5.6   CQ of 8 x SQ by default, capped at the maximum
//	IORING_FEAT_SINGLE_MMAP                   5.4   used when present, else three mappings
//	IORING_FEAT_NODROP                        5.5   overflowed completions kept (and counted)
//	IORING_ENTER_EXT_ARG                      5.11  timed waits without a TIMEOUT SQE
//	IORING_REGISTER_PROBE                     5.6   opcode check
//	IORING_REGISTER_PBUF_RING                 5.19  provided-buffer rings for receives
//
// gyre requires Linux 6.1 or newer; New checks the release first. [Probe]
// tells at start-up whether all of this works here (seccomp profiles, the
// kernel.io_uring_disabled sysctl and memory limits can refuse it), and
// says what to do when it does not.
//
// Errors: a request's failure stays in CQE.Res as a negative errno, for
// the caller to handle. A failing system call becomes an *os.SyscallError
// named after the call (errors.Is(err, unix.EPERM) works); errors meaning
// io_uring cannot be used here wrap [ErrUnavailable].
//
// # Safety rules this package enforces
//
//   - Every SQE is zeroed before it is filled, so no field of an earlier
//     request survives in a reused slot.
//   - user_data never carries a Go pointer. Callers encode an operation, a
//     slot index and a generation (see [Pack]).
//   - Memory the kernel reads or writes asynchronously lives outside the Go
//     heap (mmap) or is kept reachable by the caller (or the Ring) until
//     the kernel is done with it.
//   - Ring memory ordering: the CQ tail and SQ head are loaded with
//     acquire, the SQ tail and CQ head stored with release (sync/atomic).
//   - A ring set up with SINGLE_ISSUER must only be used from the OS thread
//     that created it: callers lock their goroutine to its thread first.
//     With DEFER_TASKRUN, completions are posted only when that thread
//     enters the kernel with GETEVENTS: SubmitAndWait does, and Reap does
//     when the kernel flags pending task work or an overflow.
package uring
