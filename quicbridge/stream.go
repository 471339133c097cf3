package quicbridge

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/quic-go/quic-go"
)

// stream is one ingest-v1 stream. Its reader goroutine (serve) decodes
// frames in place in a read buffer and pushes DATA into the connection's
// shard; the stream is the Producer of its messages. Replies (ACK, NACK,
// PONG, GOAWAY) are written by a writer goroutine that is started only
// when there is something to send and exits when there is nothing left,
// so an idle stream costs one goroutine, parked in Peek, and no buffer.
//
// Lifecycle: serve reads until EOF, an error, a protocol error, or stop
// (drain); then it marks readDone, takes over the writing itself, sends
// what remains once every pushed message is Done, and FIN.
//
// Sessions: a stream whose first frame is HELLO attaches a producer
// session (hello) and is then a SessionProducer. DATA at or below the
// WELCOME's seq is not pushed but covered by the ACKs. The stream ends
// like a drain (GOAWAY, the ACKs due, FIN) when another HELLO takes its
// session over, and after it sent NACK 3, 4 or 6, so that the client
// resends on a new stream everything above the next WELCOME's seq. It
// detaches the session once it reads no more and every pushed message is
// Done (detachDueLocked).
//
// Fields marked (mu) are shared with writers and the shard worker; the
// rest belong to serve.
type stream struct {
	c   *conn
	str *quic.Stream
	qid quic.StreamID
	pid uint64 // producer id in sink records: top bit set, then a bridge-wide counter
	dec ingest.Decoder

	buf        []byte  // nil, a pooled read buffer, or a large-frame buffer
	pooled     *[]byte // buf's pool entry when it is a read buffer
	largeHeld  int64   // large-frame budget held for buf
	have       int     // bytes of buf holding received, not yet consumed data
	lastPushed uint64  // highest seq queued to the shard
	deadlineAt time.Time

	mu       sync.Mutex
	cond     sync.Cond // (mu) serve's final phase waits on it
	stopping bool      // (mu) draining: read no more, then GOAWAY
	out      []byte    // (mu) NACK, PONG and GOAWAY frames to send, in order
	doneSeq  uint64    // (mu) highest seq the sink accepted
	acked    uint64    // (mu) highest seq acknowledged on the wire
	inflight int       // (mu) messages pushed and not yet Done
	writing  bool      // (mu) a writer is running (or serve is writing)
	readDone bool      // (mu) serve is done reading and owns the writing
	dead     bool      // (mu) writing is over: the connection is gone or a write failed
	finished bool      // (mu) serve returned: start no writer
	inRead   bool      // (mu) serve is handling a read's frames and writes the replies due after it (see afterRead)

	// Session streams only (nil otherwise), all set by serve at HELLO
	// before anything is pushed, so the shard worker may read them in
	// Done and Session.
	sess   *ingest.Session
	sctx   context.Context    // c.ctx, also ended by takeover or a NACK 3/4/6: bounds the waits (waitCtx)
	cancel context.CancelFunc // ends sctx; safe from any goroutine
	// detached (mu): Detach was called (or is being called) for sess.
	detached bool

	done chan struct{} // closed when the stream is finished
}

// ID identifies the stream in sink records.
func (s *stream) ID() uint64 { return s.pid }

// Session returns the stream's producer session, nil without HELLO. It
// makes the stream an ingest.SessionProducer.
func (s *stream) Session() *ingest.Session { return s.sess }

// Done records a completion. It runs on the shard's worker and does not
// block: it updates the pending state and starts a writer (or wakes serve).
// A failure on a session stream (the sink's, or the refusal of the
// records queued after it) also ends the stream: no more DATA, GOAWAY.
func (s *stream) Done(seq uint64, _ int, err error) {
	s.mu.Lock()
	if err != nil {
		s.out = ingest.AppendNack(s.out, seq, ingest.NackStorageUnavailable, "sink write failed")
		s.c.b.stats.nack(ingest.NackStorageUnavailable)
		if s.sess != nil {
			s.stopLocked()
			s.cancel()
		}
	} else if seq > s.doneSeq {
		s.doneSeq = seq
	}
	s.inflight--
	s.kickLocked()
	detach := s.detachDueLocked()
	s.mu.Unlock()
	if detach {
		s.sess.Detach()
	}
}

// DoneRun records count successful completions ending with seq: one lock
// for a batch's worth of the stream's messages rather than one each.
func (s *stream) DoneRun(seq uint64, count, _ int) {
	s.mu.Lock()
	if seq > s.doneSeq {
		s.doneSeq = seq
	}
	s.inflight -= count
	s.kickLocked()
	detach := s.detachDueLocked()
	s.mu.Unlock()
	if detach {
		s.sess.Detach()
	}
}

// detachDueLocked reports, once, that the session must be detached now:
// serve reads no more and every message it pushed has been reported, so
// the session's accepted seq is final for this stream. The caller calls
// Detach after releasing mu (Detach may answer a waiting HELLO). Serve may
// have returned already: the connection died with messages queued.
//
// It does not wait for the last replies to be written: a takeover's
// WELCOME depends only on the sink, not on the old client reading.
func (s *stream) detachDueLocked() bool {
	if s.inflight != 0 || !s.readDone || s.sess == nil || s.detached {
		return false
	}
	s.detached = true
	return true
}

// endSession makes a session stream end like a drain: read no more DATA,
// end the waits for queue room and buffer memory, then GOAWAY, the ACKs
// due and FIN. It is the takeover func given to Sessions.Attach: safe from
// any goroutine, more than once, before or after serve returned.
func (s *stream) endSession() {
	s.mu.Lock()
	s.stopLocked()
	s.mu.Unlock()
	s.cancel()
}

// kickLocked gets pending replies written: while serve reads it starts a
// writer goroutine if none runs; afterwards serve writes and is woken.
// Nothing is written before the handshake completes: a DATA frame that
// arrived in 0-RTT may be a replay, and is acknowledged only once the
// client proved it holds the keys (conn.watchHandshake kicks again then).
func (s *stream) kickLocked() {
	if s.readDone {
		s.cond.Signal()
		return
	}
	if s.inRead {
		return // serve writes once the read's frames are handled (afterRead)
	}
	if s.writing || s.dead || s.finished || !s.c.handshook.Load() || !s.pendingLocked() {
		return
	}
	s.writing = true
	go s.writer()
}

func (s *stream) pendingLocked() bool { return len(s.out) > 0 || s.doneSeq > s.acked }

// writer writes until nothing is pending, then exits.
func (s *stream) writer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.pendingLocked() && !s.dead {
		s.writeLocked()
	}
	s.writing = false
	s.cond.Broadcast()
}

// writeLocked sends the pending replies: NACKs, PONGs and GOAWAY in queue
// order, then one cumulative ACK. An ACK must never cover a seq whose NACK
// is still unsent; both come from one snapshot under mu, and a NACK is
// queued before any later seq is pushed, so this order is enough. It
// releases mu while writing; the caller holds mu and has writing set.
func (s *stream) writeLocked() {
	bp := writeBufs.Get().(*[]byte)
	buf := append((*bp)[:0], s.out...)
	s.out = s.out[:0]
	if cap(s.out) > 4<<10 {
		s.out = nil // do not keep a burst's buffer for the stream's life
	}
	if s.doneSeq > s.acked {
		s.acked = s.doneSeq
		buf = ingest.AppendAck(buf, s.acked)
		s.c.b.stats.acks.Add(1)
	}
	s.mu.Unlock()
	_, err := s.str.Write(buf)
	if err == nil && cap(buf) <= 64<<10 {
		// Only after a complete Write: a failed one may leave quic-go
		// holding a reference to buf.
		*bp = buf
		writeBufs.Put(bp)
	}
	s.mu.Lock()
	if err != nil {
		s.dead = true
		s.c.log.Debug("stream write failed", "stream", int64(s.qid), "err", err)
	}
}

// writeBufs holds the buffers replies are assembled in while written.
var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// connGone wakes serve when the connection closed: nothing can be written.
func (s *stream) connGone() {
	s.mu.Lock()
	s.dead = true
	s.cond.Broadcast()
	s.mu.Unlock()
}

// stop makes serve finish: no more frames are taken, GOAWAY follows. The
// caller also cancels the connection's drain context, which ends waits for
// queue room or buffer memory. Safe for concurrent use.
func (s *stream) stop() {
	s.mu.Lock()
	s.stopLocked()
	s.mu.Unlock()
}

// stopLocked sets stopping and makes any read return at once. The caller
// holds mu, or serve has not started. Every deadline change goes through
// mu and checks stopping, so the reader cannot undo this one.
func (s *stream) stopLocked() {
	if !s.stopping {
		s.stopping = true
		_ = s.str.SetReadDeadline(time.Now())
	}
}

func (s *stream) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// ending says how serve stopped reading, hence what it still owes.
type ending int

const (
	endEOF      ending = iota // the client finished its half: ACKs, then FIN
	endGone                   // reset by the client or connection gone: ACKs if possible, FIN
	endProtocol               // NACK queued, reading half cancelled: ACKs, FIN
	endDrain                  // stop, takeover, or a session stream's NACK 3/4/6: GOAWAY, ACKs, FIN, then cancel the reading half
	endAborted                // both halves reset; nothing more to send
)

func (s *stream) serve() {
	c := s.c
	defer c.wg.Done()
	defer close(s.done)
	defer c.removeStream(s)
	defer func() {
		if s.cancel != nil {
			s.cancel() // release sctx; takeover may still call it
		}
	}()

	end := s.readLoop()
	s.releaseBuffer()

	s.mu.Lock()
	if end == endDrain {
		s.out = ingest.AppendGoaway(s.out, s.lastPushed)
	}
	s.readDone = true
	if s.detachDueLocked() {
		s.mu.Unlock()
		s.sess.Detach()
		s.mu.Lock()
	}
	// Take over the writing: wait for a running writer, then send what
	// is pending until every pushed message is Done.
	fin := false
	for {
		if s.writing { // a writer is still out, maybe in Write: never outlive it
			s.cond.Wait()
			continue
		}
		if s.dead {
			break
		}
		if !c.handshook.Load() {
			s.cond.Wait() // the handshake, or the connection's end
			continue
		}
		if s.pendingLocked() {
			s.writing = true
			s.writeLocked()
			s.writing = false
			continue
		}
		if s.inflight == 0 {
			fin = true
			break
		}
		s.cond.Wait() // a completion (Done), or the connection's end
	}
	s.finished = true
	s.mu.Unlock()
	if fin && end != endAborted {
		_ = s.str.Close() // FIN: the client gets its stream credit back once it read everything
	}
	if end == endDrain {
		s.str.CancelRead(StreamCodeShuttingDown) // completes the reading half
	}
}

// readLoop reads, decodes and pushes until the stream ends for any reason.
func (s *stream) readLoop() ending {
	var one [1]byte
	for {
		if s.buf == nil {
			// Between frames: wait for data without holding a buffer, so
			// an idle stream costs no buffer memory.
			if !s.deadlineAt.IsZero() {
				s.setDeadline(time.Time{})
			}
			if _, err := s.str.Peek(one[:]); err != nil {
				return s.readFailed(err)
			}
			if err := s.takeReadBuffer(); err != nil {
				return s.readFailed(err)
			}
		}
		n, err := s.str.Read(s.buf[s.have:])
		if n > 0 {
			s.have += n
			s.mu.Lock()
			s.inRead = true
			s.mu.Unlock()
			end, ok := s.process()
			s.afterRead()
			if !ok {
				return end
			}
		}
		if err != nil {
			return s.readFailed(err)
		}
	}
}

// afterRead writes the replies that came due while serve handled a read:
// with a sink that the pushing goroutine writes itself (the discard sink),
// a read's messages are usually stored by the time process returns, and
// serve writing their ACK costs less than starting a writer goroutine for
// it. A writer already running, or replies that cannot go yet, are left
// as kickLocked would leave them.
func (s *stream) afterRead() {
	s.mu.Lock()
	s.inRead = false
	if len(s.out) == 0 && !s.writing && !s.dead && !s.finished && s.c.handshook.Load() && s.doneSeq > s.acked {
		// Only an ACK is due: 16 bytes, cumulative. NACKs and PONGs go
		// through a writer goroutine, so that a client that does not read
		// them blocks that goroutine, not this reader, and reply can
		// detect it (maxPendingOutput).
		s.writing = true
		s.writeLocked()
		s.writing = false
		s.cond.Broadcast()
	}
	s.kickLocked() // whatever is still due
	s.mu.Unlock()
}

// process decodes and handles every complete frame in buf[:have], keeps
// the partial frame that may follow at the start of buf (growing buf into
// a large-frame buffer when the frame needs it), and releases buf when
// nothing is left. ok is false when the stream must end.
func (s *stream) process() (end ending, ok bool) {
	off, frames, need := 0, 0, 0
	for off < s.have {
		f, n, err := s.dec.Decode(s.buf[off:s.have])
		if errors.Is(err, ingest.ErrNeedMore) {
			need = n
			break
		}
		if err != nil {
			var pe *ingest.ProtocolError
			if !errors.As(err, &pe) {
				pe = &ingest.ProtocolError{Code: ingest.NackMalformed, Reason: err.Error()}
			}
			s.refuse(pe.Seq, pe.Code, pe.Reason)
			return endProtocol, false
		}
		switch f.Kind {
		case ingest.KindHello:
			if end, ok := s.hello(f); !ok {
				return end, false
			}
		case ingest.KindPing:
			pong, _ := ingest.AppendPong(nil, f.Seq, f.Payload)
			if !s.reply(pong) {
				return endAborted, false
			}
		case ingest.KindData:
			if end, ok := s.push(f); !ok {
				return end, false
			}
		}
		off += n
		frames++
	}
	s.have = copy(s.buf, s.buf[off:s.have])
	if s.have == 0 {
		s.releaseBuffer()
		return 0, true
	}
	if need > len(s.buf) {
		if err := s.grow(need); err != nil {
			return s.readFailed(err), false
		}
	}
	// A frame has started: it must arrive in full within IdleTimeout (at
	// least half of it when the deadline is only moved forward).
	idle := s.c.b.cfg.IdleTimeout
	if now := time.Now(); s.deadlineAt.IsZero() || frames > 0 && s.deadlineAt.Sub(now) < idle/2 {
		s.setDeadline(now.Add(idle))
	}
	return 0, true
}

// hello attaches the session a HELLO names (a new one for the zero id)
// and queues the WELCOME. It waits while the session's previous stream
// (maybe on another connection) ends: that needs only its records to be
// reported by the sink, never a buffer this stream holds, and takeover
// ends the other stream's waits for queue room and buffer memory.
func (s *stream) hello(f ingest.Frame) (ending, bool) {
	c := s.c
	s.sctx, s.cancel = context.WithCancel(c.ctx)
	// A HELLO that arrived in 0-RTT may be a replay: it must not take a
	// session over before the client proved it holds the keys. Its
	// WELCOME could not be sent earlier anyway.
	if !c.handshook.Load() {
		select {
		case <-c.qc.HandshakeComplete():
		case <-s.sctx.Done():
			return s.helloFailed(s.sctx.Err())
		}
	}
	sess, seq, err := c.b.disp.Sessions().Attach(s.sctx, f, s.endSession)
	if err != nil {
		return s.helloFailed(err)
	}
	s.sess = sess
	_, name := f.Hello()
	c.log.Debug("session attached", "stream", int64(s.qid), "session", sess.ID().String(), "seq", seq, "client", string(name))
	if !s.reply(ingest.AppendWelcome(nil, seq, sess.ID())) {
		return endAborted, false
	}
	return 0, true
}

// helloFailed ends a stream whose HELLO got no session: NACK 5 for an
// unknown one, GOAWAY when a newer HELLO took it first or the bridge
// drains, nothing more when the connection is gone.
func (s *stream) helloFailed(err error) (ending, bool) {
	var pe *ingest.ProtocolError
	switch {
	case errors.As(err, &pe):
		s.refuse(pe.Seq, pe.Code, pe.Reason)
		return endProtocol, false
	case errors.Is(err, ingest.ErrSessionTakenOver):
		s.c.log.Debug("session taken over while waiting for it", "stream", int64(s.qid))
		return endDrain, false
	case s.isStopping():
		return endDrain, false
	case errors.Is(err, context.Canceled):
		return endGone, false
	}
	s.c.log.Warn("session not attached", "stream", int64(s.qid), "err", err)
	return endDrain, false // GOAWAY 0: the client tries again, maybe elsewhere
}

// waitCtx bounds serve's waits for queue room and buffer memory: the
// connection's context, or on a session stream its own, which takeover
// and a NACK 3/4/6 end too.
func (s *stream) waitCtx() context.Context {
	if s.sctx != nil {
		return s.sctx
	}
	return s.c.ctx
}

// push queues one DATA frame, applying the overload policy when the shard
// is full.
func (s *stream) push(f ingest.Frame) (ending, bool) {
	b := s.c.b
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return endDrain, false
	}
	if len(s.out) > maxPendingOutput {
		s.mu.Unlock()
		s.slowReader()
		return endAborted, false
	}
	if s.sess != nil && s.sess.Duplicate(f.Seq) {
		// Stored before the session attached here: not again, but the
		// ACKs cover it (written after the read, see afterRead). No NACK
		// can be due yet: duplicates come before any pushed seq.
		if f.Seq > s.doneSeq {
			s.doneSeq = f.Seq
		}
		s.mu.Unlock()
		s.lastPushed = f.Seq
		return 0, true
	}
	s.inflight++
	s.mu.Unlock()

	err := s.c.shard.Push(s, f.Seq, f.Payload)
	if errors.Is(err, ingest.ErrQueueFull) {
		b.stats.queueFull.Add(1)
		switch b.cfg.Overload {
		case ingest.OverloadBlock:
			// Stop reading until there is room: QUIC flow control then
			// stops the client within the stream window.
			err = s.c.shard.PushWait(s.waitCtx(), s, f.Seq, f.Payload)
		case ingest.OverloadReject:
			s.unpush()
			b.stats.nack(ingest.NackOverloaded)
			if !s.reply(ingest.AppendNack(nil, f.Seq, ingest.NackOverloaded, "queue full")) {
				return endAborted, false
			}
			return s.afterNack()
		case ingest.OverloadShed:
			s.unpush()
			s.c.shedConn()
			return endGone, false
		}
	}
	if err != nil {
		s.unpush()
		switch {
		case errors.Is(err, ingest.ErrTooBigForQueue):
			s.refuse(f.Seq, ingest.NackTooLarge, "payload larger than the server's queue")
			return endProtocol, false
		case errors.Is(err, ingest.ErrSinkClosed):
			b.stats.nack(ingest.NackShuttingDown)
			if !s.reply(ingest.AppendNack(nil, f.Seq, ingest.NackShuttingDown, "server draining")) {
				return endAborted, false
			}
			return s.afterNack()
		case s.isStopping():
			return endDrain, false
		}
		return endGone, false // the connection closed while waiting
	}
	s.lastPushed = f.Seq
	b.stats.messagesIn.Add(1)
	b.stats.bytesIn.Add(uint64(len(f.Payload)))
	return 0, true
}

// afterNack ends a session stream after a NACK 3 or 4 (GOAWAY, the ACKs
// due, FIN): the client resends above the next WELCOME's seq on a new
// stream. A stream without a session goes on.
func (s *stream) afterNack() (ending, bool) {
	if s.sess != nil {
		return endDrain, false
	}
	return 0, true
}

func (s *stream) unpush() {
	s.mu.Lock()
	s.inflight--
	s.mu.Unlock()
}

// reply queues a frame for the writer. It returns false, after resetting
// the stream, when the client has let too many replies pile up.
func (s *stream) reply(frame []byte) bool {
	s.mu.Lock()
	if len(s.out) > maxPendingOutput {
		s.mu.Unlock()
		s.slowReader()
		return false
	}
	s.out = append(s.out, frame...)
	s.kickLocked()
	s.mu.Unlock()
	return true
}

// refuse answers a fatal protocol error: stop reading (STOP_SENDING), then
// the writer sends the NACK, the ACKs due and FIN.
func (s *stream) refuse(seq uint64, code ingest.NackCode, reason string) {
	s.c.log.Info("protocol error; closing the stream", "stream", int64(s.qid), "code", code.String(), "seq", seq, "reason", reason)
	s.str.CancelRead(quic.StreamErrorCode(code))
	s.mu.Lock()
	s.out = ingest.AppendNack(s.out, seq, code, reason)
	s.kickLocked()
	s.mu.Unlock()
	s.c.b.stats.nack(code)
}

func (s *stream) slowReader() {
	s.c.b.stats.slowReaders.Add(1)
	s.c.log.Warn("resetting a stream whose client does not read its replies", "stream", int64(s.qid))
	s.abort(StreamCodeSlowReader)
}

func (s *stream) abort(code quic.StreamErrorCode) {
	s.str.CancelRead(code)
	s.str.CancelWrite(code)
}

// readFailed classifies the error that ended reading.
func (s *stream) readFailed(err error) ending {
	var se *quic.StreamError
	switch {
	case err == io.EOF:
		var one [1]byte
		_, _ = s.str.Read(one[:]) // after Peek: consume the EOF so the reading half completes
		if s.have > 0 {
			s.c.log.Debug("stream ended inside a frame", "stream", int64(s.qid), "bytes", s.have)
		}
		return endEOF
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.Canceled):
		if s.isStopping() {
			return endDrain
		}
		if errors.Is(err, context.Canceled) {
			return endGone
		}
		s.c.b.stats.frameTimeouts.Add(1)
		s.c.log.Info("resetting a stream: a frame did not arrive in time", "stream", int64(s.qid),
			"timeout", s.c.b.cfg.IdleTimeout, "bytes", s.have)
		s.abort(StreamCodeFrameTimeout)
		return endAborted
	case errors.As(err, &se) && se.Remote:
		var one [1]byte
		_, _ = s.str.Read(one[:]) // after Peek: consume the reset so the reading half completes
		s.c.log.Debug("stream reset by the client", "stream", int64(s.qid), "code", uint64(se.ErrorCode), "bytes_dropped", s.have)
	}
	return endGone
}

// setDeadline sets the read deadline unless stop already set one.
func (s *stream) setDeadline(t time.Time) {
	s.mu.Lock()
	if !s.stopping {
		_ = s.str.SetReadDeadline(t)
	}
	s.mu.Unlock()
	s.deadlineAt = t
}

// takeReadBuffer gets a read buffer, waiting for buffer memory if needed.
// The stream holds nothing while it waits (see budget).
func (s *stream) takeReadBuffer() error {
	b := s.c.b
	waited, err := b.bufBudget.acquire(s.waitCtx(), int64(b.cfg.ReadBufferSize))
	if waited {
		b.stats.bufferWaits.Add(1)
	}
	if err != nil {
		return err
	}
	s.pooled = b.bufPool.Get().(*[]byte)
	s.buf = *s.pooled
	return nil
}

// grow moves the partial frame in buf into a buffer of exactly need bytes
// from the frame memory. It may wait while holding the read buffer, which
// the budget's rule allows.
func (s *stream) grow(need int) error {
	b := s.c.b
	if s.largeHeld > 0 {
		// The start of the next frame sits in the previous frame's large
		// buffer: give that back before waiting for another, or streams
		// holding frame memory could wait on each other for good.
		have := s.have
		rest := append([]byte(nil), s.buf[:have]...)
		s.releaseBuffer()
		s.buf, s.have = rest, have
	}
	waited, err := b.frames.Acquire(s.waitCtx(), int64(need))
	if waited {
		b.stats.bufferWaits.Add(1)
	}
	if err != nil {
		return err
	}
	b.stats.largeBytes.Add(int64(need))
	nb := b.frames.Alloc(need)
	copy(nb, s.buf[:s.have])
	have := s.have
	s.releaseBuffer()
	s.buf, s.have, s.largeHeld = nb, have, int64(need)
	return nil
}

// releaseBuffer drops buf and whatever it held, returning the memory.
func (s *stream) releaseBuffer() {
	b := s.c.b
	if s.pooled != nil {
		b.bufPool.Put(s.pooled)
		b.bufBudget.release(int64(b.cfg.ReadBufferSize))
		s.pooled = nil
	}
	if s.largeHeld > 0 {
		b.frames.Free(s.buf)
		b.frames.Release(s.largeHeld)
		b.stats.largeBytes.Add(-s.largeHeld)
		s.largeHeld = 0
	}
	s.buf, s.have = nil, 0
}
