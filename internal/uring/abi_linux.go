//go:build linux

package uring

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel ABI this package uses, transcribed from
// include/uapi/linux/io_uring.h. Only what gyre needs is here. abi_test.go
// checks every size, offset and number against giouring's copy.

// sqe is struct io_uring_sqe (64 bytes; gyre never sets IORING_SETUP_SQE128).
type sqe struct {
	opcode      uint8
	flags       uint8  // IOSQE_*
	ioprio      uint16 // also the accept/recv multishot flags
	fd          int32
	off         uint64 // off, addr2; MSG_RING: the target's user_data
	addr        uint64 // addr, splice_off_in; MSG_RING: the command
	len         uint32
	opFlags     uint32 // rw_flags, msg_flags, accept_flags, poll32_events, timeout_flags, ...
	userData    uint64
	bufIndex    uint16 // buf_index, buf_group
	personality uint16
	fileIndex   int32 // splice_fd_in, file_index, addr_len
	addr3       uint64
	_           uint64 // __pad2
}

// cqe is struct io_uring_cqe (16 bytes; no IORING_SETUP_CQE32).
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// sqRingOffsets is struct io_sqring_offsets.
type sqRingOffsets struct {
	head        uint32
	tail        uint32
	ringMask    uint32
	ringEntries uint32
	flags       uint32
	dropped     uint32
	array       uint32
	resv1       uint32
	userAddr    uint64
}

// cqRingOffsets is struct io_cqring_offsets.
type cqRingOffsets struct {
	head        uint32
	tail        uint32
	ringMask    uint32
	ringEntries uint32
	overflow    uint32
	cqes        uint32
	flags       uint32
	resv1       uint32
	userAddr    uint64
}

// params is struct io_uring_params (120 bytes).
type params struct {
	sqEntries    uint32
	cqEntries    uint32
	flags        uint32
	sqThreadCPU  uint32
	sqThreadIdle uint32
	features     uint32
	wqFd         uint32
	resv         [3]uint32
	sqOff        sqRingOffsets
	cqOff        cqRingOffsets
}

// getEventsArg is struct io_uring_getevents_arg, passed with
// IORING_ENTER_EXT_ARG.
type getEventsArg struct {
	sigmask     uint64
	sigmaskSz   uint32
	minWaitUsec uint32 // pad before 6.12
	ts          uint64 // *kernelTimespec
}

// kernelTimespec is struct __kernel_timespec: 64-bit fields on every
// architecture, unlike unix.Timespec on 32-bit ones.
type kernelTimespec struct {
	sec  int64
	nsec int64
}

func durationTimespec(ns int64) kernelTimespec {
	return kernelTimespec{sec: ns / 1e9, nsec: ns % 1e9}
}

// probeOp is struct io_uring_probe_op.
type probeOp struct {
	op    uint8
	resv  uint8
	flags uint16 // ioProbeOpSupported
	resv2 uint32
}

// probe is struct io_uring_probe with room for every opcode number.
type probe struct {
	lastOp uint8
	opsLen uint8
	resv   uint16
	resv2  [3]uint32
	ops    [256]probeOp
}

func (p *probe) supported(op uint8) bool {
	return op < p.opsLen && p.ops[op].flags&ioProbeOpSupported != 0
}

// bufReg is struct io_uring_buf_reg.
type bufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	flags       uint16 // IOU_PBUF_RING_*
	resv        [3]uint64
}

// buf is struct io_uring_buf, one slot of a provided-buffer ring. The
// ring's tail (__u16) overlays resv of slot 0.
type buf struct {
	addr uint64
	len  uint32
	bid  uint16
	resv uint16
}

// bufRingTailOffset is offsetof(struct io_uring_buf_ring, tail).
const bufRingTailOffset = 14

// Opcodes (enum io_uring_op).
const (
	opNop         uint8 = 0
	opPollAdd     uint8 = 6
	opTimeout     uint8 = 11
	opAccept      uint8 = 13
	opAsyncCancel uint8 = 14
	opRead        uint8 = 22
	opSend        uint8 = 26
	opRecv        uint8 = 27
	opShutdown    uint8 = 34
	opMsgRing     uint8 = 40
)

// Setup flags (IORING_SETUP_*).
const (
	setupCQSize       uint32 = 1 << 3
	setupClamp        uint32 = 1 << 4 // cap sizes at the kernel's maximum instead of failing
	setupCoopTaskrun  uint32 = 1 << 8
	setupTaskrunFlag  uint32 = 1 << 9
	setupSingleIssuer uint32 = 1 << 12
	setupDeferTaskrun uint32 = 1 << 13
)

// Features reported in params.features (IORING_FEAT_*).
const (
	featSingleMmap uint32 = 1 << 0
	featNoDrop     uint32 = 1 << 1
	featExtArg     uint32 = 1 << 8
)

// io_uring_enter flags (IORING_ENTER_*).
const (
	enterGetEvents uint32 = 1 << 0
	enterExtArg    uint32 = 1 << 3
)

// Flags the kernel sets in the SQ ring's flags word (IORING_SQ_*).
const (
	sqNeedWakeup uint32 = 1 << 0 // SQPOLL only: gyre does not use it
	sqCQOverflow uint32 = 1 << 1 // completions wait in the overflow list
	sqTaskrun    uint32 = 1 << 2 // task work is pending (TASKRUN_FLAG)
)

// SQE flags (IOSQE_*).
const sqeBufferSelect uint8 = 1 << 5

// CQE flags (IORING_CQE_F_*).
const (
	cqeFBuffer     uint32 = 1 << 0
	cqeFMore       uint32 = 1 << 1
	cqeBufferShift        = 16
)

// Per-opcode flags.
const (
	acceptMultishot uint16 = 1 << 0 // IORING_ACCEPT_MULTISHOT, in ioprio
	recvMultishot   uint16 = 1 << 1 // IORING_RECV_MULTISHOT, in ioprio
	pollAddMulti    uint32 = 1 << 0 // IORING_POLL_ADD_MULTI, in len
	msgData         uint64 = 0      // IORING_MSG_DATA, in addr
)

// io_uring_register opcodes (IORING_REGISTER_*) and what goes with them.
const (
	registerProbe      uint32 = 8
	registerPbufRing   uint32 = 22
	unregisterPbufRing uint32 = 23
	ioProbeOpSupported uint16 = 1 << 0 // IO_URING_OP_SUPPORTED
)

// Offsets to mmap the ring's parts at (IORING_OFF_*).
const (
	offSQRing int64 = 0
	offCQRing int64 = 0x8000000
	offSQEs   int64 = 0x10000000
)

// ioUringSetup is io_uring_setup(2): it returns the ring's descriptor.
func ioUringSetup(entries uint32, p *params) (int, syscall.Errno) {
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), 0
}

// ioUringEnter is io_uring_enter(2). arg and argSize are the EXT_ARG
// argument (nil, 0 without it).
func ioUringEnter(fd int, toSubmit, minComplete, flags uint32, arg unsafe.Pointer, argSize uintptr) (int, syscall.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(fd), uintptr(toSubmit), uintptr(minComplete),
		uintptr(flags), uintptr(arg), argSize)
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

// ioUringRegister is io_uring_register(2).
func ioUringRegister(fd int, opcode uint32, arg unsafe.Pointer, nrArgs uint32) (int, syscall.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(fd), uintptr(opcode), uintptr(arg), uintptr(nrArgs), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}
