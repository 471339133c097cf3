//go:build linux

package uring

import (
	"fmt"
	"os"
	"unsafe"
)

// RegisterBufRing registers a provided-buffer ring of entries slots at addr
// (page-aligned memory outside the Go heap) as buffer group bgid. flags is
// io_uring_buf_reg.flags (e.g. IOU_PBUF_RING_INC).
func (r *Ring) RegisterBufRing(addr unsafe.Pointer, entries uint32, bgid uint16, flags uint16) error {
	errno := r.inject.at(StageBufRing)
	if errno == 0 {
		reg := bufReg{ringAddr: uint64(uintptr(addr)), ringEntries: entries, bgid: bgid, flags: flags}
		_, errno = ioUringRegister(r.fd, registerPbufRing, unsafe.Pointer(&reg), 1)
	}
	if errno != 0 {
		return refused(fmt.Sprintf("registering buffer ring %d (%d entries, IORING_REGISTER_PBUF_RING)", bgid, entries),
			"io_uring_register", errno,
			fmt.Sprintf("the kernel refused the buffer ring: entries must be a power of two up to 32768 in page-aligned memory, the group unused, the flags known (gyre needs Linux >= %d.%d)",
				minKernel[0], minKernel[1]), false)
	}
	return nil
}

// UnregisterBufRing removes buffer group bgid from the ring. The memory
// stays mapped: its owner unmaps it.
func (r *Ring) UnregisterBufRing(bgid uint16) error {
	reg := bufReg{bgid: bgid}
	if _, errno := ioUringRegister(r.fd, unregisterPbufRing, unsafe.Pointer(&reg), 1); errno != 0 {
		return fmt.Errorf("uring: unregistering buffer ring %d: %w", bgid, os.NewSyscallError("io_uring_register", errno))
	}
	return nil
}
