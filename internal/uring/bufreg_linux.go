//go:build linux

package uring

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"github.com/pawelgaczynski/giouring"
)

// RegisterBufRing registers a provided-buffer ring of entries slots at addr
// (page-aligned memory outside the Go heap) as buffer group bgid. flags is
// io_uring_buf_reg.flags (e.g. IOU_PBUF_RING_INC); giouring ignores its
// own flags argument, so they travel in the field the kernel reads.
func (r *Ring) RegisterBufRing(addr unsafe.Pointer, entries uint32, bgid uint16, flags uint16) error {
	reg := giouring.BufReg{
		RingAddr:    uint64(uintptr(addr)),
		RingEntries: entries,
		Bgid:        bgid,
		Pad:         flags, // struct io_uring_buf_reg: __u16 flags follows bgid
	}
	if _, err := r.ring.RegisterBufferRing(&reg, 0); err != nil {
		return fmt.Errorf("uring: registering buffer ring %d (%d entries): %w", bgid, entries, syscallErr("io_uring_register", err))
	}
	return nil
}

// UnregisterBufRing removes buffer group bgid from the ring. The memory
// stays mapped: its owner unmaps it.
func (r *Ring) UnregisterBufRing(bgid uint16) error {
	if _, err := r.ring.UnregisterBufferRing(int(bgid)); err != nil {
		return fmt.Errorf("uring: unregistering buffer ring %d: %w", bgid, syscallErr("io_uring_register", err))
	}
	return nil
}

func syscallErr(name string, err error) error {
	if errno, ok := err.(syscall.Errno); ok {
		return os.NewSyscallError(name, errno)
	}
	return err
}
