package ingest

import (
	"encoding/binary"

	"github.com/gyre-io/gyre/internal/framemem"
)

// A TCP frame cut at the end of a receive is completed in the connection's
// reassembly buffer (tcpConn.part). Where that memory comes from depends
// on the frame's size:
//
//   - up to smallPartSize bytes (and while only the start of the header
//     is in): a buffer from the reactor's free list. The cost is bounded
//     per connection; a connection holds one only while a frame is cut.
//   - larger: a buffer of exactly the frame's size, paid for from the
//     dispatcher's frame budget (DispatcherConfig.FrameMemory), shared
//     with the QUIC bridge, and mapped outside the Go heap, so an attack
//     of stalled large frames costs at most the budget and its memory goes
//     back to the system when the connections go.
//
// A large frame that finds the budget used up is refused with NACK 3
// (overloaded: resend later, with a new seq), and its payload is read and
// dropped as it arrives, so the connection stays usable and holds nothing.
// It does not wait for room with reading paused, as a QUIC stream does:
// a TCP connection's bytes are already in the socket buffer (up to
// megabytes, with receive autotuning) and keep arriving until a pause
// takes effect, so a waiting connection would hold them anyway.
const (
	// smallPartSize is the largest frame reassembled without the budget:
	// the QUIC bridge's read buffer size, so both transports draw from the
	// budget for the same frames.
	smallPartSize = 16 << 10
	// smallPartsKept bounds each reactor's free list of small buffers.
	smallPartsKept = 64
)

// refuseReason is the NACK 3 reason for a frame refused for want of frame
// memory.
const refuseReason = "frame memory exhausted"

// getSmall returns an empty small reassembly buffer.
func (rs *reactorState) getSmall() []byte {
	if n := len(rs.small); n > 0 {
		b := rs.small[n-1]
		rs.small[n-1] = nil
		rs.small = rs.small[:n-1]
		return b
	}
	return make([]byte, 0, smallPartSize)
}

// putSmall gives back a small reassembly buffer.
func (rs *reactorState) putSmall(b []byte) {
	if len(rs.small) < smallPartsKept {
		rs.small = append(rs.small, b[:0])
	}
}

// budget is the frame memory shared with the QUIC bridge.
func (rs *reactorState) budget() *framemem.Budget { return rs.s.frames }

// frameLen returns the total length of the frame whose header starts p
// (which holds at least HeaderSize bytes the decoder accepted).
func frameLen(p []byte) int { return 4 + int(binary.BigEndian.Uint32(p)) }

// keepCut keeps rest, the start of a frame cut at the end of a receive,
// in part (which is empty), or refuses the frame (see reserve).
func (tc *tcpConn) keepCut(rest []byte) {
	if len(rest) < HeaderSize || frameLen(rest) <= smallPartSize {
		tc.part = append(tc.rs.getSmall(), rest...)
		return
	}
	tc.reserve(frameLen(rest), rest)
}

// reserve finds memory for a large frame of total bytes, whose first bytes
// are tc.part (possibly empty) followed by more (which holds no bytes past
// the frame). On return the frame's bytes so far are either in a budget
// buffer of total bytes, or nowhere: the frame was refused (NACK 3 sent;
// skip counts the payload bytes still to discard).
func (tc *tcpConn) reserve(total int, more []byte) {
	b := tc.rs.budget()
	if b.TryTake(int64(total)) {
		tc.moveTo(b.Alloc(total), int64(total), more)
		return
	}
	tc.refuseFrame(total, more)
}

// moveTo moves the frame's bytes so far (part, then more) into buf, a
// budget buffer for held bytes, and makes it part.
func (tc *tcpConn) moveTo(buf []byte, held int64, more []byte) {
	buf = append(append(buf[:0], tc.part...), more...)
	tc.dropPart()
	tc.part, tc.partHeld = buf, held
}

// refuseFrame answers a large frame with NACK 3 for want of memory and
// arranges for its payload to be discarded as it arrives.
func (tc *tcpConn) refuseFrame(total int, more []byte) {
	s := tc.rs.s
	var hdr [HeaderSize]byte
	n := copy(hdr[:], tc.part)
	copy(hdr[n:], more)
	seq := binary.BigEndian.Uint64(hdr[8:16])
	tc.dec.lastSeq = seq // the frame is answered: seq order goes on from it
	tc.skip = total - len(tc.part) - len(more)
	tc.dropPart()
	s.stats.frameRefusals.Add(1)
	if s.frameLog.OK() {
		s.log.Warn("refusing large frames: frame memory is used up (a producer fleet sending large frames at once, or connections stalled mid-frame); they get NACK 3 and resend later",
			"frame_memory", tc.rs.budget().Size(), "refused_total", s.stats.frameRefusals.Load())
	}
	var buf [HeaderSize + 2 + len(refuseReason)]byte
	tc.send(AppendNack(buf[:0], seq, NackOverloaded, refuseReason))
	s.stats.nack(NackOverloaded)
	tc.nackedInSession()
}

// dropPart gives back part's memory (a small buffer, or a budget buffer
// and its bytes) and empties it.
func (tc *tcpConn) dropPart() {
	rs := tc.rs
	switch {
	case tc.part == nil:
	case tc.partHeld > 0:
		rs.budget().Free(tc.part)
		rs.budget().Release(tc.partHeld)
	default:
		rs.putSmall(tc.part)
	}
	tc.part, tc.partHeld = nil, 0
}

// discard drops the payload of a refused frame from the start of b and
// returns how many bytes it took.
func (tc *tcpConn) discard(b []byte) int {
	n := min(tc.skip, len(b))
	tc.skip -= n
	return n
}
