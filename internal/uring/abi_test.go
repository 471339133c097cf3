//go:build linux && (amd64 || arm64)

// giouring itself does not compile on 32-bit platforms; the ABI is the same
// on every architecture gyre is tested on, so the oracle runs on these two.

package uring

// giouring is used here, and only here, as an oracle: gyre's own copy of
// the io_uring ABI (abi_linux.go) must agree with giouring's. Only
// giouring's constants and struct layouts are compared, never its helpers,
// several of which are wrong (see the shared notes: stale SQE fields,
// PrepareTimeout, BufRingAdd's uint16 offset, ...). Where giouring's fields
// are unexported, reflect reads their offsets. Key offsets are also checked
// against include/uapi/linux/io_uring.h, in case both copies were wrong.

import (
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/pawelgaczynski/giouring"
)

// leaf is one scalar or array field of a flattened struct.
type leaf struct {
	path   string
	offset uintptr
	size   uintptr
}

func flatten(t reflect.Type, base uintptr, path string) []leaf {
	if t.Kind() != reflect.Struct {
		return []leaf{{path, base, t.Size()}}
	}
	var out []leaf
	for i := range t.NumField() {
		f := t.Field(i)
		out = append(out, flatten(f.Type, base+f.Offset, path+"."+f.Name)...)
	}
	return out
}

// TestABILayouts compares every field of gyre's structs with giouring's,
// in order: same offset, same size, same total size.
func TestABILayouts(t *testing.T) {
	for _, tc := range []struct {
		ours, theirs any
		size         uintptr // the kernel's sizeof
	}{
		{sqe{}, giouring.SubmissionQueueEntry{}, 64},
		{cqe{}, giouring.CompletionQueueEvent{}, 16},
		{params{}, giouring.Params{}, 120},
		{sqRingOffsets{}, giouring.SQRingOffsets{}, 40},
		{cqRingOffsets{}, giouring.CQRingOffsets{}, 40},
		{bufReg{}, giouring.BufReg{}, 40},
		{buf{}, giouring.BufAndRing{}, 16},
		{probeOp{}, giouring.ProbeOp{}, 8},
		{probe{}, giouring.Probe{}, 16 + 256*8},
		{getEventsArg{}, giouring.GetEventsArg{}, 24},
	} {
		ot, tt := reflect.TypeOf(tc.ours), reflect.TypeOf(tc.theirs)
		if ot.Size() != tc.size || tt.Size() != tc.size {
			t.Errorf("sizeof %v = %d, giouring.%v = %d, kernel %d", ot, ot.Size(), tt.Name(), tt.Size(), tc.size)
		}
		ol, tl := flatten(ot, 0, ot.Name()), flatten(tt, 0, tt.Name())
		if len(ol) != len(tl) {
			t.Errorf("%v has %d fields, giouring.%v %d", ot, len(ol), tt.Name(), len(tl))
			continue
		}
		for i := range ol {
			if ol[i].offset != tl[i].offset || ol[i].size != tl[i].size {
				t.Errorf("%s at %d (%d bytes), giouring's %s at %d (%d bytes)",
					ol[i].path, ol[i].offset, ol[i].size, tl[i].path, tl[i].offset, tl[i].size)
			}
		}
	}
	if s := unsafe.Sizeof(kernelTimespec{}); s != 16 {
		t.Errorf("sizeof kernelTimespec = %d, want 16 (struct __kernel_timespec)", s)
	}
}

// theirOffset is the offset of a (possibly unexported, possibly nested:
// "sqOff.head") field of giouring's type of v.
func theirOffset(t *testing.T, v any, path string) uintptr {
	t.Helper()
	typ, off := reflect.TypeOf(v), uintptr(0)
	for _, name := range strings.Split(path, ".") {
		f, ok := typ.FieldByName(name)
		if !ok {
			t.Fatalf("giouring.%v has no field %s", reflect.TypeOf(v).Name(), path)
		}
		typ, off = f.Type, off+f.Offset
	}
	return off
}

// TestABIOffsets checks the fields gyre reads or writes by name, with
// unsafe.Offsetof, against giouring and the kernel header.
func TestABIOffsets(t *testing.T) {
	var (
		e  sqe
		c  cqe
		p  params
		r  bufReg
		b  buf
		a  getEventsArg
		pr probe
		po probeOp
	)
	G := giouring.SubmissionQueueEntry{}
	for _, tc := range []struct {
		name   string
		ours   uintptr
		oracle any
		path   string
		kernel uintptr
	}{
		{"sqe.opcode", unsafe.Offsetof(e.opcode), G, "OpCode", 0},
		{"sqe.flags", unsafe.Offsetof(e.flags), G, "Flags", 1},
		{"sqe.ioprio", unsafe.Offsetof(e.ioprio), G, "IoPrio", 2},
		{"sqe.fd", unsafe.Offsetof(e.fd), G, "Fd", 4},
		{"sqe.off", unsafe.Offsetof(e.off), G, "Off", 8},
		{"sqe.addr", unsafe.Offsetof(e.addr), G, "Addr", 16},
		{"sqe.len", unsafe.Offsetof(e.len), G, "Len", 24},
		{"sqe.opFlags", unsafe.Offsetof(e.opFlags), G, "OpcodeFlags", 28},
		{"sqe.userData", unsafe.Offsetof(e.userData), G, "UserData", 32},
		{"sqe.bufIndex", unsafe.Offsetof(e.bufIndex), G, "BufIG", 40},
		{"sqe.personality", unsafe.Offsetof(e.personality), G, "Personality", 42},
		{"sqe.fileIndex", unsafe.Offsetof(e.fileIndex), G, "SpliceFdIn", 44},
		{"sqe.addr3", unsafe.Offsetof(e.addr3), G, "Addr3", 48},
		{"cqe.userData", unsafe.Offsetof(c.userData), giouring.CompletionQueueEvent{}, "UserData", 0},
		{"cqe.res", unsafe.Offsetof(c.res), giouring.CompletionQueueEvent{}, "Res", 8},
		{"cqe.flags", unsafe.Offsetof(c.flags), giouring.CompletionQueueEvent{}, "Flags", 12},
		{"params.sqEntries", unsafe.Offsetof(p.sqEntries), giouring.Params{}, "sqEntries", 0},
		{"params.cqEntries", unsafe.Offsetof(p.cqEntries), giouring.Params{}, "cqEntries", 4},
		{"params.flags", unsafe.Offsetof(p.flags), giouring.Params{}, "flags", 8},
		{"params.features", unsafe.Offsetof(p.features), giouring.Params{}, "features", 20},
		{"params.sqOff", unsafe.Offsetof(p.sqOff), giouring.Params{}, "sqOff", 40},
		{"params.cqOff", unsafe.Offsetof(p.cqOff), giouring.Params{}, "cqOff", 80},
		{"sqOff.head", unsafe.Offsetof(p.sqOff.head), giouring.SQRingOffsets{}, "head", 0},
		{"sqOff.tail", unsafe.Offsetof(p.sqOff.tail), giouring.SQRingOffsets{}, "tail", 4},
		{"sqOff.ringMask", unsafe.Offsetof(p.sqOff.ringMask), giouring.SQRingOffsets{}, "ringMask", 8},
		{"sqOff.ringEntries", unsafe.Offsetof(p.sqOff.ringEntries), giouring.SQRingOffsets{}, "ringEntries", 12},
		{"sqOff.flags", unsafe.Offsetof(p.sqOff.flags), giouring.SQRingOffsets{}, "flags", 16},
		{"sqOff.array", unsafe.Offsetof(p.sqOff.array), giouring.SQRingOffsets{}, "array", 24},
		{"cqOff.head", unsafe.Offsetof(p.cqOff.head), giouring.CQRingOffsets{}, "head", 0},
		{"cqOff.tail", unsafe.Offsetof(p.cqOff.tail), giouring.CQRingOffsets{}, "tail", 4},
		{"cqOff.ringMask", unsafe.Offsetof(p.cqOff.ringMask), giouring.CQRingOffsets{}, "ringMask", 8},
		{"cqOff.overflow", unsafe.Offsetof(p.cqOff.overflow), giouring.CQRingOffsets{}, "overflow", 16},
		{"cqOff.cqes", unsafe.Offsetof(p.cqOff.cqes), giouring.CQRingOffsets{}, "cqes", 20},
		{"bufReg.ringAddr", unsafe.Offsetof(r.ringAddr), giouring.BufReg{}, "RingAddr", 0},
		{"bufReg.ringEntries", unsafe.Offsetof(r.ringEntries), giouring.BufReg{}, "RingEntries", 8},
		{"bufReg.bgid", unsafe.Offsetof(r.bgid), giouring.BufReg{}, "Bgid", 12},
		{"bufReg.flags", unsafe.Offsetof(r.flags), giouring.BufReg{}, "Pad", 14},
		{"bufReg.resv", unsafe.Offsetof(r.resv), giouring.BufReg{}, "Resv", 16},
		{"buf.addr", unsafe.Offsetof(b.addr), giouring.BufAndRing{}, "Addr", 0},
		{"buf.len", unsafe.Offsetof(b.len), giouring.BufAndRing{}, "Len", 8},
		{"buf.bid", unsafe.Offsetof(b.bid), giouring.BufAndRing{}, "Bid", 12},
		{"buf_ring.tail", bufRingTailOffset, giouring.BufAndRing{}, "Tail", 14},
		{"getEventsArg.sigmaskSz", unsafe.Offsetof(a.sigmaskSz), giouring.GetEventsArg{}, "sigMaskSz", 8},
		{"getEventsArg.ts", unsafe.Offsetof(a.ts), giouring.GetEventsArg{}, "ts", 16},
		{"probe.opsLen", unsafe.Offsetof(pr.opsLen), giouring.Probe{}, "OpsLen", 1},
		{"probe.ops", unsafe.Offsetof(pr.ops), giouring.Probe{}, "Ops", 16},
		{"probeOp.flags", unsafe.Offsetof(po.flags), giouring.ProbeOp{}, "Flags", 2},
	} {
		if theirs := theirOffset(t, tc.oracle, tc.path); tc.ours != theirs || tc.ours != tc.kernel {
			t.Errorf("offset of %s = %d, giouring's %s = %d, kernel %d", tc.name, tc.ours, tc.path, theirs, tc.kernel)
		}
	}
}

// TestABIConstants compares every number gyre sends to or reads from the
// kernel with giouring's.
func TestABIConstants(t *testing.T) {
	for _, tc := range []struct {
		name         string
		ours, theirs uint64
	}{
		// Opcodes.
		{"IORING_OP_NOP", uint64(opNop), uint64(giouring.OpNop)},
		{"IORING_OP_POLL_ADD", uint64(opPollAdd), uint64(giouring.OpPollAdd)},
		{"IORING_OP_TIMEOUT", uint64(opTimeout), uint64(giouring.OpTimeout)},
		{"IORING_OP_ACCEPT", uint64(opAccept), uint64(giouring.OpAccept)},
		{"IORING_OP_ASYNC_CANCEL", uint64(opAsyncCancel), uint64(giouring.OpAsyncCancel)},
		{"IORING_OP_READ", uint64(opRead), uint64(giouring.OpRead)},
		{"IORING_OP_SEND", uint64(opSend), uint64(giouring.OpSend)},
		{"IORING_OP_RECV", uint64(opRecv), uint64(giouring.OpRecv)},
		{"IORING_OP_SHUTDOWN", uint64(opShutdown), uint64(giouring.OpShutdown)},
		{"IORING_OP_MSG_RING", uint64(opMsgRing), uint64(giouring.OpMsgRing)},
		// Setup flags and features.
		{"IORING_SETUP_CQSIZE", uint64(setupCQSize), uint64(giouring.SetupCQSize)},
		{"IORING_SETUP_CLAMP", uint64(setupClamp), uint64(giouring.SetupClamp)},
		{"IORING_SETUP_COOP_TASKRUN", uint64(setupCoopTaskrun), uint64(giouring.SetupCoopTaskrun)},
		{"IORING_SETUP_TASKRUN_FLAG", uint64(setupTaskrunFlag), uint64(giouring.SetupTaskrunFlag)},
		{"IORING_SETUP_SINGLE_ISSUER", uint64(setupSingleIssuer), uint64(giouring.SetupSingleIssuer)},
		{"IORING_SETUP_DEFER_TASKRUN", uint64(setupDeferTaskrun), uint64(giouring.SetupDeferTaskrun)},
		{"IORING_FEAT_SINGLE_MMAP", uint64(featSingleMmap), uint64(giouring.FeatSingleMMap)},
		{"IORING_FEAT_NODROP", uint64(featNoDrop), uint64(giouring.FeatNoDrop)},
		{"IORING_FEAT_EXT_ARG", uint64(featExtArg), uint64(giouring.FeatExtArg)},
		// io_uring_enter flags and SQ ring flags.
		{"IORING_ENTER_GETEVENTS", uint64(enterGetEvents), uint64(giouring.EnterGetEvents)},
		{"IORING_ENTER_EXT_ARG", uint64(enterExtArg), uint64(giouring.EnterExtArg)},
		{"IORING_SQ_NEED_WAKEUP", uint64(sqNeedWakeup), uint64(giouring.SQNeedWakeup)},
		{"IORING_SQ_CQ_OVERFLOW", uint64(sqCQOverflow), uint64(giouring.SQCQOverflow)},
		{"IORING_SQ_TASKRUN", uint64(sqTaskrun), uint64(giouring.SQTaskrun)},
		// SQE and CQE flags.
		{"IOSQE_BUFFER_SELECT", uint64(sqeBufferSelect), uint64(giouring.SqeBufferSelect)},
		{"IORING_CQE_F_BUFFER", uint64(cqeFBuffer), uint64(giouring.CQEFBuffer)},
		{"IORING_CQE_F_MORE", uint64(cqeFMore), uint64(giouring.CQEFMore)},
		{"IORING_CQE_BUFFER_SHIFT", cqeBufferShift, uint64(giouring.CQEBufferShift)},
		// Per-opcode flags.
		{"IORING_ACCEPT_MULTISHOT", uint64(acceptMultishot), uint64(giouring.AcceptMultishot)},
		{"IORING_RECV_MULTISHOT", uint64(recvMultishot), uint64(giouring.RecvMultishot)},
		{"IORING_POLL_ADD_MULTI", uint64(pollAddMulti), uint64(giouring.PollAddMulti)},
		{"IORING_MSG_DATA", msgData, uint64(giouring.MsgData)},
		// io_uring_register opcodes.
		{"IORING_REGISTER_PROBE", uint64(registerProbe), uint64(giouring.RegisterProbe)},
		{"IORING_REGISTER_PBUF_RING", uint64(registerPbufRing), uint64(giouring.RegisterPbufRing)},
		{"IORING_UNREGISTER_PBUF_RING", uint64(unregisterPbufRing), uint64(giouring.UnregisterPbufRing)},
	} {
		if tc.ours != tc.theirs {
			t.Errorf("%s = %#x, giouring says %#x", tc.name, tc.ours, tc.theirs)
		}
	}
	// Every opcode gyre requires is one of the above.
	if len(requiredOps) != 8 {
		t.Errorf("requiredOps has %d opcodes; add the new ones to this test", len(requiredOps))
	}
}
