//go:build linux

package uring

import (
	"time"
	"unsafe"

	"github.com/pawelgaczynski/giouring"
	"golang.org/x/sys/unix"
)

// Every Prep* method takes a zeroed SQE from the ring and fills every field
// the opcode reads. None of them submits: call Submit or SubmitAndWait.

// PrepMultishotAccept arms an accept that posts one completion per accepted
// connection until it ends (a completion without More). Accepted sockets are
// created non-blocking and close-on-exec.
func (r *Ring) PrepMultishotAccept(fd int, ud uint64) {
	e := r.sqe()
	e.OpCode = giouring.OpAccept
	e.Fd = int32(fd)
	e.IoPrio = giouring.AcceptMultishot
	e.OpcodeFlags = unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC
	e.UserData = ud
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
	e.OpCode = giouring.OpRecv
	e.Fd = int32(fd)
	e.IoPrio = giouring.RecvMultishot
	e.Flags = giouring.SqeBufferSelect
	e.BufIG = bgid
	e.UserData = ud
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
	e.OpCode = giouring.OpSend
	e.Fd = int32(fd)
	e.Addr = uint64(uintptr(p))
	e.Len = uint32(n)
	e.OpcodeFlags = unix.MSG_NOSIGNAL
	e.UserData = ud
}

// PrepMsgRingData posts a completion with (ud, res) into the ring whose
// descriptor is targetFd. The source ring gets its own completion with
// sourceUD: 0 on success, a negative errno if the target is gone.
func (r *Ring) PrepMsgRingData(targetFd int, res int32, ud, sourceUD uint64) {
	e := r.sqe()
	e.OpCode = giouring.OpMsgRing
	e.Fd = int32(targetFd)
	e.Addr = uint64(giouring.MsgData)
	e.Len = uint32(res)
	e.Off = ud
	e.UserData = sourceUD
}

// PrepRead reads up to n bytes into p (memory outside the Go heap or kept
// reachable until the completion).
func (r *Ring) PrepRead(fd int, p unsafe.Pointer, n int, ud uint64) {
	e := r.sqe()
	e.OpCode = giouring.OpRead
	e.Fd = int32(fd)
	e.Addr = uint64(uintptr(p))
	e.Len = uint32(n)
	e.Off = ^uint64(0) // -1: current position (eventfd and pipes ignore it)
	e.UserData = ud
}

// PrepTimeout arms a relative timeout of d. The kernel reads the timespec
// while the SQE is submitted; the ring keeps it, so at most one PrepTimeout
// may be queued per submission.
func (r *Ring) PrepTimeout(d time.Duration, ud uint64) {
	r.ts = unix.NsecToTimespec(int64(d))
	e := r.sqe()
	e.OpCode = giouring.OpTimeout
	e.Fd = -1
	e.Addr = uint64(uintptr(unsafe.Pointer(&r.ts)))
	e.Len = 1
	e.UserData = ud
}

// PrepCancel cancels the request whose user data is target. Its own
// completion (ud) carries 0, -ENOENT (already done) or -EALREADY.
func (r *Ring) PrepCancel(target, ud uint64) {
	e := r.sqe()
	e.OpCode = giouring.OpAsyncCancel
	e.Fd = -1
	e.Addr = target
	e.UserData = ud
}

// PrepShutdown shuts down a socket (how: unix.SHUT_RD, SHUT_WR, SHUT_RDWR).
func (r *Ring) PrepShutdown(fd, how int, ud uint64) {
	e := r.sqe()
	e.OpCode = giouring.OpShutdown
	e.Fd = int32(fd)
	e.Len = uint32(how)
	e.UserData = ud
}

// PrepNop queues a no-op; its completion carries ud.
func (r *Ring) PrepNop(ud uint64) {
	e := r.sqe()
	e.OpCode = giouring.OpNop
	e.Fd = -1
	e.UserData = ud
}

// PrepPollMultishot arms a poll that posts a completion every time fd
// becomes ready for events (e.g. unix.POLLIN), until cancelled.
func (r *Ring) PrepPollMultishot(fd int, events uint32, ud uint64) {
	e := r.sqe()
	e.OpCode = giouring.OpPollAdd
	e.Fd = int32(fd)
	e.Len = giouring.PollAddMulti
	e.OpcodeFlags = events
	e.UserData = ud
}
