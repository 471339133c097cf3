// Package uring is gyre's only door to io_uring. No other package imports
// giouring or sees a submission or completion queue entry.
//
// # Contract
//
// Opcodes used by gyre, and why:
//
//	ACCEPT (multishot, 5.19)      acceptor: one SQE accepts every connection
//	RECV (multishot, 6.0)         reactor: one SQE per connection receives into the buffer ring
//	SEND                          reactor: one send per connection per loop iteration
//	MSG_RING (data, 5.18)         acceptor -> reactor hand-off; wakes a reactor blocked in io_uring_enter
//	POLL_ADD (multishot, 5.13)    reactor: watches its eventfd, the inbox wakeup
//	TIMEOUT                       reactor timers (idle timeout, deadlines, tick); acceptor back-off
//	ASYNC_CANCEL                  stop a multishot recv (backpressure, close) or accept (shutdown)
//	SHUTDOWN                      force-close at a shutdown deadline
//
// Ring features: SINGLE_ISSUER|DEFER_TASKRUN (6.1) is preferred; where the
// kernel refuses it, COOP_TASKRUN|TASKRUN_FLAG, then no flags. Provided
// buffer rings (IORING_REGISTER_PBUF_RING, 5.19) are required for receives.
// gyre requires Linux 6.1 or newer.
//
// # Safety rules this package enforces
//
//   - Every SQE is zeroed before it is filled: giouring's prepare helpers leave
//     stale fields (see shared notes), so this package fills SQEs itself.
//   - user_data never carries a Go pointer. Callers encode an operation, a
//     slot index and a generation (see [Pack]).
//   - Memory the kernel writes to asynchronously lives outside the Go heap
//     (mmap) or is kept reachable by the caller until its completion.
//   - A ring set up with SINGLE_ISSUER must only be used from the OS thread
//     that created it: callers lock their goroutine to its thread first.
package uring
