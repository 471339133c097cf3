//go:build linux

package uring

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Every Prep* method takes a zeroed SQE from the ring and fills every field
// the opcode reads. None of them submits: call Submit or SubmitAndWait.

// PrepMultishotAccept arms an accept that posts one completion per accepted
// connection until it ends (a completion without More). Accepted sockets are
// created non-blocking and close-on-exec.
func (r *Ring) PrepMultishotAccept(fd int, ud uint64) {
	e := r.sqe()
	e.opcode = opAccept
	e.fd = int32(fd)
	e.ioprio = acceptMultishot
	e.opFlags = unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC
	e.userData = ud
}

// PrepRecvMultishot arms a receive that picks a buffer from buffer group
// bgid for every completion, until it ends (a completion without More, e.g.
// -ENOBUFS when the group runs dry).
func (r *Ring) PrepRecvMultishot(fd int, bgid uint16, ud uint64) {
	if r.fault != nil {
		if a := r.fault(KindRecv, 0); a.Fake {
			r.fake(ud, a.Res)
			return
		}
	}
	e := r.sqe()
	e.opcode = opRecv
	e.fd = int32(fd)
	e.ioprio = recvMultishot
	e.flags = sqeBufferSelect
	e.bufIndex = bgid
	e.userData = ud
}

// PrepSend sends n bytes at p. The memory must stay valid and unchanged
// until the completion: the caller keeps it reachable.
func (r *Ring) PrepSend(fd int, p unsafe.Pointer, n int, ud uint64) {
	if r.fault != nil {
		a := r.fault(KindSend, n)
		if a.Fake {
			r.fake(ud, a.Res)
			return
		}
		if a.Len > 0 && a.Len < n {
			n = a.Len
		}
	}
	e := r.sqe()
	e.opcode = opSend
	e.fd = int32(fd)
	e.addr = uint64(uintptr(p))
	e.len = uint32(n)
	e.opFlags = unix.MSG_NOSIGNAL
	e.userData = ud
}

// PrepMsgRingData posts a completion with (ud, res) into the ring whose
// descriptor is targetFd. The source ring gets its own completion with
// sourceUD: 0 on success, a negative errno if the target is gone.
func (r *Ring) PrepMsgRingData(targetFd int, res int32, ud, sourceUD uint64) {
	e := r.sqe()
	e.opcode = opMsgRing
	e.fd = int32(targetFd)
	e.addr = msgData
	e.len = uint32(res)
	e.off = ud
	e.userData = sourceUD
}

// PrepRead reads up to n bytes into p (memory outside the Go heap or kept
// reachable until the completion).
func (r *Ring) PrepRead(fd int, p unsafe.Pointer, n int, ud uint64) {
	e := r.sqe()
	e.opcode = opRead
	e.fd = int32(fd)
	e.addr = uint64(uintptr(p))
	e.len = uint32(n)
	e.off = ^uint64(0) // -1: current position (eventfd and pipes ignore it)
	e.userData = ud
}

// PrepTimeout arms a relative timeout of d. The kernel reads the timespec
// while the SQE is submitted; the ring keeps it, so at most one PrepTimeout
// may be queued per submission.
func (r *Ring) PrepTimeout(d time.Duration, ud uint64) {
	r.ts = durationTimespec(int64(d))
	e := r.sqe()
	e.opcode = opTimeout
	e.fd = -1
	e.addr = uint64(uintptr(unsafe.Pointer(&r.ts)))
	e.len = 1
	e.userData = ud
}

// PrepCancel cancels the request whose user data is target. Its own
// completion (ud) carries 0, -ENOENT (already done) or -EALREADY.
func (r *Ring) PrepCancel(target, ud uint64) {
	e := r.sqe()
	e.opcode = opAsyncCancel
	e.fd = -1
	e.addr = target
	e.userData = ud
}

// PrepShutdown shuts down a socket (how: unix.SHUT_RD, SHUT_WR, SHUT_RDWR).
func (r *Ring) PrepShutdown(fd, how int, ud uint64) {
	e := r.sqe()
	e.opcode = opShutdown
	e.fd = int32(fd)
	e.len = uint32(how)
	e.userData = ud
}

// PrepNop queues a no-op; its completion carries ud.
func (r *Ring) PrepNop(ud uint64) {
	e := r.sqe()
	e.opcode = opNop
	e.fd = -1
	e.userData = ud
}

// PrepPollMultishot arms a poll that posts a completion every time fd
// becomes ready for events (e.g. unix.POLLIN), until cancelled.
func (r *Ring) PrepPollMultishot(fd int, events uint32, ud uint64) {
	e := r.sqe()
	e.opcode = opPollAdd
	e.fd = int32(fd)
	e.len = pollAddMulti
	e.opFlags = events
	e.userData = ud
}
