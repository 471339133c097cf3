//go:build unix

package framemem

import (
	"golang.org/x/sys/unix"
)

// mapBuffer maps n bytes (rounded up to whole pages) of anonymous memory.
// If the system refuses the mapping, it falls back to the heap: the frame
// is still served, its memory just returns to the system later.
func mapBuffer(n int) []byte {
	page := unix.Getpagesize()
	size := (n + page - 1) &^ (page - 1)
	buf, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return make([]byte, n, size)
	}
	return buf[:n]
}

// unmapBuffer unmaps a buffer from mapBuffer (a heap fallback is left to
// the garbage collector).
func unmapBuffer(buf []byte) {
	_ = unix.Munmap(buf[:cap(buf)]) // EINVAL for a heap fallback: nothing to do
}
