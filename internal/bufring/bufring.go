// Package bufring owns a provided-buffer ring: a set of equal-sized
// receive buffers, outside the Go heap, that the kernel picks from when a
// multishot receive completes.
//
// # Buffer states
//
// Every buffer ID is in exactly one of two states:
//
//	in ring   the kernel may pick it for the next receive
//	owned     the kernel picked it and posted a completion; the runtime, or a
//	          handler that kept it, owns it until Release
//
// [Ring.Take] moves a buffer from "in ring" to "owned" when its completion is
// seen; [Ring.Release] moves it back. Taking an owned buffer or releasing a
// buffer twice is a bookkeeping bug that would let the kernel overwrite bytes
// somebody still reads, so both panic.
//
// A Ring is loop-only: it belongs to one reactor and only that reactor's
// goroutine may call its methods, except the Stats methods.
package bufring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Defaults for Config's zero fields.
const (
	// DefaultCount buffers per ring: enough for hundreds of busy connections
	// per reactor while the kernel refills; pages are only touched when used.
	DefaultCount = 1024
	// DefaultSize bytes per buffer: one page holds a typical request.
	DefaultSize = 4096
	// MaxCount is the largest ring the runtime accepts (a power of two; the
	// ring's 16-bit tail arithmetic and buffer IDs stay unambiguous).
	MaxCount = 4096
)

// ErrConfig is wrapped by every error about an invalid Config.
var ErrConfig = errors.New("bufring: invalid config")

// Config sizes a ring. The zero value means DefaultCount buffers of
// DefaultSize bytes.
type Config struct {
	// Count is the number of buffers: a power of two, at most MaxCount.
	Count int
	// Size is the size of each buffer in bytes, at least 64, at most 1 MiB.
	Size int
	// Lazy leaves the buffer pages unmapped until the kernel first fills
	// them (see reactor.BufferConfig); by default they are mapped at once.
	Lazy bool
}

// Check reports whether cfg (with defaults for zero fields) is valid.
func Check(cfg Config) error {
	_, err := cfg.withDefaults()
	return err
}

func (c Config) withDefaults() (Config, error) {
	if c.Count == 0 {
		c.Count = DefaultCount
	}
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	if c.Count < 1 || c.Count > MaxCount || c.Count&(c.Count-1) != 0 {
		return c, fmt.Errorf("%w: Count %d must be a power of two between 1 and %d", ErrConfig, c.Count, MaxCount)
	}
	if c.Size < 64 || c.Size > 1<<20 {
		return c, fmt.Errorf("%w: Size %d must be between 64 and %d bytes", ErrConfig, c.Size, 1<<20)
	}
	return c, nil
}

// Registrar is the ring a buffer ring registers with (the reactor's
// io_uring). addr is page-aligned memory outside the Go heap.
type Registrar interface {
	RegisterBufRing(addr unsafe.Pointer, entries uint32, bgid uint16, flags uint16) error
	UnregisterBufRing(bgid uint16) error
}

// entry mirrors struct io_uring_buf. The ring's tail overlays the resv
// field of entry 0 (struct io_uring_buf_ring).
type entry struct {
	addr uint64
	len  uint32
	bid  uint16
	resv uint16
}

// Stats is a snapshot of a ring's counters.
type Stats struct {
	Count     int    // buffers in the ring
	Size      int    // bytes per buffer
	Owned     int    // buffers currently out of the kernel's reach
	Exhausted uint64 // times a receive found no buffer (ENOBUFS)
}

// Ring is a provided-buffer ring and the buffers it hands out.
type Ring struct {
	cfg     Config
	entries []entry // mmap'd ring of cfg.Count entries
	mem     []byte  // mmap'd buffers, cfg.Count * cfg.Size bytes
	tail    uint16
	mask    uint16
	owned   []uint64 // bitmap: 1 = owned
	reg     Registrar
	bgid    uint16

	nOwned    atomic.Int64
	exhausted atomic.Uint64
}

// push writes buffer id at the local tail; publish makes it visible.
func (b *Ring) push(id uint16) {
	e := &b.entries[b.tail&b.mask]
	e.addr = uint64(uintptr(unsafe.Pointer(&b.mem[int(id)*b.cfg.Size])))
	e.len = uint32(b.cfg.Size)
	e.bid = id
	b.tail++
}

// publish stores the tail with release semantics. bid and resv (the tail)
// of entry 0 share one aligned 32-bit word; a 32-bit atomic store is how Go
// gets a release store for the 16-bit tail.
func (b *Ring) publish() {
	w := (*uint32)(unsafe.Pointer(&b.entries[0].bid))
	atomic.StoreUint32(w, uint32(b.tail)<<16|uint32(b.entries[0].bid))
}
