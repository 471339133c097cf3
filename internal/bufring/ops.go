package bufring

import (
	"fmt"
	"unsafe"
)

// Group returns the buffer group ID the ring is registered as.
func (b *Ring) Group() uint16 { return b.bgid }

// Size returns the size of each buffer in bytes.
func (b *Ring) Size() int { return b.cfg.Size }

// Count returns the number of buffers.
func (b *Ring) Count() int { return b.cfg.Count }

// Take records that the kernel handed buffer id to the caller with n
// bytes in it, and returns a view of those bytes. The view stays valid
// until Release(id). Loop-only.
func (b *Ring) Take(id uint16, n int) []byte {
	if int(id) >= b.cfg.Count || n < 0 || n > b.cfg.Size {
		panic(fmt.Sprintf("bufring: kernel completion with buffer %d and %d bytes is out of range (%d x %d)", id, n, b.cfg.Count, b.cfg.Size))
	}
	w, bit := id/64, uint64(1)<<(id%64)
	if b.owned[w]&bit != 0 {
		panic(fmt.Sprintf("bufring: buffer %d taken while already owned", id))
	}
	b.owned[w] |= bit
	b.nOwned.Add(1)
	off := int(id) * b.cfg.Size
	return b.mem[off : off+n : off+n]
}

// Release gives buffer id back to the kernel. Releasing a buffer that is
// not owned panics: the kernel could be writing into it. Loop-only.
func (b *Ring) Release(id uint16) {
	if int(id) >= b.cfg.Count {
		panic(fmt.Sprintf("bufring: release of buffer %d out of range (%d)", id, b.cfg.Count))
	}
	w, bit := id/64, uint64(1)<<(id%64)
	if b.owned[w]&bit == 0 {
		panic(fmt.Sprintf("bufring: buffer %d released twice", id))
	}
	b.owned[w] &^= bit
	b.nOwned.Add(-1)
	b.push(id)
	b.publish()
}

// Free reports how many buffers the kernel may pick from. Loop-only.
func (b *Ring) Free() int { return b.cfg.Count - int(b.nOwned.Load()) }

// NoteExhausted counts a receive that found no buffer. Loop-only.
func (b *Ring) NoteExhausted() { b.exhausted.Add(1) }

// Stats returns a snapshot of the ring's counters. Safe for concurrent use.
func (b *Ring) Stats() Stats {
	return Stats{
		Count:     b.cfg.Count,
		Size:      b.cfg.Size,
		Owned:     int(b.nOwned.Load()),
		Exhausted: b.exhausted.Load(),
	}
}

// Addr returns the address of the first buffer (for leak checks and
// debugging); 0 after Close.
func (b *Ring) Addr() uintptr {
	if len(b.mem) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(&b.mem[0]))
}
