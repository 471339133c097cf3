//go:build linux

package bufring

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// New maps the ring and its buffers and puts every buffer in the ring. The
// ring is not visible to the kernel until Register.
func New(cfg Config) (*Ring, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ringBytes := cfg.Count * int(unsafe.Sizeof(entry{}))
	rmem, err := unix.Mmap(-1, 0, roundPage(ringBytes), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANONYMOUS|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("bufring: mapping %d ring entries: %w", cfg.Count, err)
	}
	flags := unix.MAP_ANONYMOUS | unix.MAP_PRIVATE
	if !cfg.Lazy {
		flags |= unix.MAP_POPULATE
	}
	mem, err := unix.Mmap(-1, 0, cfg.Count*cfg.Size, unix.PROT_READ|unix.PROT_WRITE, flags)
	if err != nil {
		_ = unix.Munmap(rmem)
		return nil, fmt.Errorf("bufring: mapping %d buffers of %d bytes: %w", cfg.Count, cfg.Size, err)
	}
	b := &Ring{
		cfg:     cfg,
		entries: unsafe.Slice((*entry)(unsafe.Pointer(&rmem[0])), cfg.Count),
		mem:     mem,
		mask:    uint16(cfg.Count - 1),
		owned:   make([]uint64, (cfg.Count+63)/64),
	}
	for i := 0; i < cfg.Count; i++ {
		b.push(uint16(i))
	}
	b.publish()
	return b, nil
}

func roundPage(n int) int {
	p := unix.Getpagesize()
	return (n + p - 1) / p * p
}

// Register makes the ring buffer group bgid of r.
func (b *Ring) Register(r Registrar, bgid uint16) error {
	if b.reg != nil {
		return fmt.Errorf("bufring: already registered as group %d", b.bgid)
	}
	if err := r.RegisterBufRing(unsafe.Pointer(&b.entries[0]), uint32(b.cfg.Count), bgid, 0); err != nil {
		return err
	}
	b.reg, b.bgid = r, bgid
	return nil
}

// Close unregisters the ring and unmaps its memory. Every view handed out
// becomes invalid. Idempotent.
func (b *Ring) Close() error {
	var err error
	if b.reg != nil {
		err = b.reg.UnregisterBufRing(b.bgid)
		b.reg = nil
	}
	if b.mem != nil {
		rb := unsafe.Slice((*byte)(unsafe.Pointer(&b.entries[0])), roundPage(len(b.entries)*int(unsafe.Sizeof(entry{}))))
		_ = unix.Munmap(rb)
		_ = unix.Munmap(b.mem)
		b.mem, b.entries = nil, nil
	}
	return err
}
