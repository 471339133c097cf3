package framemem

import "slices"

// The budget keeps a few freed buffers for the next frames rather than
// return each to the system at once: a client that streams large frames
// then costs no mapping per frame. The cache holds at most cacheShare of
// the budget (and cacheMax: four maximal frames), so what an attack leaves
// behind is small.
const (
	cacheShare = 8
	cacheMax   = 4 << 20
)

// bufCache is the budget's idle buffers (guarded by Budget.mu).
type bufCache struct {
	free   [][]byte
	bytes  int64
	closed bool // buffers freed from now on are unmapped at once
}

// Alloc returns a buffer of n bytes for a frame whose n bytes the caller
// holds from the budget. Where the system allows, it is mapped outside the
// Go heap, so Free returns it to the system at once instead of leaving it
// to the garbage collector (which, with nothing else allocating, would not
// run for minutes). The buffer's contents are not zeroed. Give it back
// with Free, and keep no slice of it afterwards.
func (b *Budget) Alloc(n int) []byte {
	b.mu.Lock()
	best := -1
	for i, buf := range b.cache.free {
		if cap(buf) >= n && (best < 0 || cap(buf) < cap(b.cache.free[best])) {
			best = i
		}
	}
	if best >= 0 {
		buf := b.cache.free[best]
		b.cache.free = slices.Delete(b.cache.free, best, best+1)
		b.cache.bytes -= int64(cap(buf))
		b.mu.Unlock()
		return buf[:n]
	}
	b.mu.Unlock()
	return mapBuffer(n)
}

// Free gives back a buffer from Alloc.
func (b *Budget) Free(buf []byte) {
	if buf == nil {
		return
	}
	limit := min(b.size/cacheShare, cacheMax)
	b.mu.Lock()
	if !b.cache.closed && b.cache.bytes+int64(cap(buf)) <= limit {
		b.cache.free = append(b.cache.free, buf[:0])
		b.cache.bytes += int64(cap(buf))
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	unmapBuffer(buf)
}

// Close returns the cached buffers to the system; buffers freed later go
// back at once. Call it when no more frames will be read.
func (b *Budget) Close() {
	b.mu.Lock()
	free := b.cache.free
	b.cache = bufCache{closed: true}
	b.mu.Unlock()
	for _, buf := range free {
		unmapBuffer(buf)
	}
}

// Map returns n bytes of zeroed memory outside the Go heap, for a
// long-lived buffer (a dispatcher shard's queue) that would otherwise count
// as live heap: the garbage collector lets the heap grow to twice what is
// live before it collects, so tens of megabytes of queue would let as much
// garbage pile up, unreturned, after a burst. Give it back with Unmap once
// nothing uses it.
func Map(n int) []byte { return mapBuffer(n) }

// Unmap returns a buffer from Map to the system.
func Unmap(b []byte) { unmapBuffer(b) }
