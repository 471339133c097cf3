package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gyre-io/gyre/ingest"
)

// Latency histograms count microseconds from 1 µs to 60 s; longer
// latencies are recorded as 60 s.
const (
	histMinUS = 1
	histMaxUS = 60_000_000
	// readBufSize is the reader's buffer; a reply frame is at most
	// HeaderSize+2+MaxNackReason = 274 bytes, so a partial frame always
	// leaves room for more.
	readBufSize = 64 << 10
	// batchBytes is the size a writer fills before one Write.
	batchBytes = 64 << 10
	// Slow clients: how long a writer must sit in one Write to count as
	// stalled, and how long the end-of-run probe reads.
	stallCheck = 100 * time.Millisecond
	probeTime  = 500 * time.Millisecond
	// slowReadBuffer is a slow client's socket receive buffer, so that the
	// server meets its backlog after a few KB of replies rather than after
	// megabytes; probeReadBuffer restores a normal one for the final probe.
	slowReadBuffer  = 4 << 10
	probeReadBuffer = 256 << 10
)

// histDigits is the HdrHistogram precision: 3 significant digits (0.1%)
// costs about 140 KB per histogram, so many connections get 2 (1%).
func histDigits(conns int) int {
	if conns <= 256 {
		return 3
	}
	return 2
}

// conn is one connection of the load: a writer goroutine sending DATA
// frames and a reader goroutine decoding the replies.
//
// Sequence numbers are 1, 2, 3, ... so the highest seq sent is also the
// number of DATA frames sent. Per-seq state lives in a ring indexed by
// seq&mask covering the live seqs [floor, sent]: the writer fills a slot
// (send time, size) before it publishes sent, and reuses a slot only once
// the reader has moved floor past it; the atomics order those accesses.
type conn struct {
	r  *runner
	id int
	rw io.ReadWriteCloser
	// offset is when this connection starts sending, ns since the start
	// (--ramp); its pacing runs on its own clock, now - offset.
	offset int64
	slow   bool // a slow client: stops reading at r.slowAfter

	// Shared by the writer and the reader.
	sent        atomic.Uint64 // highest seq sent
	answered    atomic.Uint64 // DATA frames ACKed or NACKed
	floor       atomic.Uint64 // lowest seq not yet answered
	measureFrom atomic.Uint64 // first seq sent after the warmup (MaxUint64: none yet)
	inWrite     atomic.Bool   // slow clients: the writer is inside Write
	writes      atomic.Uint64 // slow clients: Writes completed
	slowDisc    atomic.Bool   // slow clients: the server dropped the connection
	progress    chan struct{} // capacity 1: the reader answered something
	stop        chan struct{} // closed when the connection must stop sending
	stopOnce    sync.Once
	readerDone  chan struct{}

	mu    sync.Mutex
	ended bool  // (mu) closed, by an error or on purpose
	err   error // (mu) the error that ended the connection, if any

	mask   uint64
	times  []int64  // send time of each live seq, ns since the run started
	sizes  []uint32 // payload size of each live seq
	nacked []bool   // reader-only: the live seq was NACKed

	rd readerState // reader-owned until readerDone
	wr writerState // writer-owned until the writer returns
}

type readerState struct {
	floor         uint64 // lowest unanswered seq (published in conn.floor)
	ackedThrough  uint64 // seq of the last ACK
	acked         uint64
	nackTotal     uint64
	nacks         [7]uint64 // by code: 1..4 and 6
	measuredAcked uint64    // acked messages sent after the warmup
	measuredBytes uint64    // their payload bytes
	lastAnswer    int64     // ns since the start, of the last ACK/NACK
	pongs         uint64
	goaway        bool
	goawaySeq     uint64
	hist          *hdrhistogram.Histogram
	slowStalled   bool // slow client alive, but the server stopped reading it
}

type writerState struct {
	rng     *rand.Rand // payload sizes when ranged
	stopped int64      // ns since the start when sending stopped
}

func newConn(r *runner, id int, slow bool) *conn {
	ring := uint64(1) << bits.Len64(uint64(max(2*r.cfg.Window, 64))-1)
	c := &conn{
		r:          r,
		id:         id,
		slow:       slow,
		progress:   make(chan struct{}, 1),
		stop:       make(chan struct{}),
		readerDone: make(chan struct{}),
		mask:       ring - 1,
		times:      make([]int64, ring),
		sizes:      make([]uint32, ring),
		nacked:     make([]bool, ring),
	}
	c.offset = int64(r.cfg.Ramp) * int64(id) / int64(max(r.cfg.loadStreams(), 1))
	c.rd.floor = 1
	c.floor.Store(1)
	c.measureFrom.Store(math.MaxUint64)
	if r.warmup == 0 {
		c.measureFrom.Store(1)
	}
	c.rd.hist = hdrhistogram.New(histMinUS, histMaxUS, histDigits(r.cfg.loadStreams()))
	if r.cfg.SizeMin != r.cfg.SizeMax {
		c.wr.rng = rand.New(rand.NewPCG(uint64(id), 0x9e3779b97f4a7c15))
	}
	return c
}

// stopSending tells the writer to stop (an error, GOAWAY, or the end).
func (c *conn) stopSending() { c.stopOnce.Do(func() { close(c.stop) }) }

// end closes the connection once; err (nil for a deliberate close) is
// kept if it is the first. Errors after the connection ended are echoes of
// the close and are dropped.
func (c *conn) end(err error) {
	c.mu.Lock()
	first := !c.ended
	if first {
		c.ended = true
		c.err = err
	}
	c.mu.Unlock()
	if first {
		c.stopSending()
		_ = c.rw.Close()
	}
}

func (c *conn) fail(err error) { c.end(fmt.Errorf("conn %d: %w", c.id, err)) }

func (c *conn) isEnded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended
}

// run runs the writer on the calling goroutine and the reader on another;
// it returns when both are done and the connection is closed.
func (c *conn) run() {
	go c.readLoop()
	c.writeLoop()
}

// writeLoop sends DATA frames until the run, the message count or the
// connection ends, then waits (bounded) for the outstanding answers.
func (c *conn) writeLoop() {
	r := c.r
	buf := make([]byte, 0, r.batchCap)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var seq uint64
	measuring := r.warmup == 0
	slowMode := false
	window := uint64(r.cfg.Window)
	ringCap := c.mask + 1
	limit := r.cfg.Messages
	var werr error // a failed Write (normal connections)

send:
	for {
		select {
		case <-r.stopSend:
			break send
		case <-c.stop:
			break send
		default:
		}
		if limit > 0 && seq >= limit {
			break
		}
		now := r.since()
		if c.slow && !slowMode && now >= r.slowAfter {
			slowMode = true // from now on: no window, no per-seq records
		}
		if now < c.offset { // --ramp: not started yet
			if !c.sleep(timer, time.Duration(c.offset-now)) {
				break
			}
			continue
		}
		n := r.maxBatch
		if limit > 0 {
			n = min(n, limit-seq)
		}
		allow, wait := r.sched.allowance(now-c.offset, seq)
		if allow == 0 {
			if !c.sleep(timer, wait) {
				break
			}
			continue
		}
		n = min(n, uint64(allow))
		if !slowMode {
			free := window - (seq - c.answered.Load())
			span := ringCap - (seq + 1 - c.floor.Load())
			n = min(n, free, span)
			if n == 0 {
				if !c.waitProgress(timer, now) {
					break
				}
				continue
			}
		}
		if !measuring && now >= r.warmup {
			c.measureFrom.Store(seq + 1)
			measuring = true
		}
		buf = c.fill(buf[:0], seq, n, now, !slowMode)
		seq += n
		c.sent.Store(seq)
		if c.slow {
			c.inWrite.Store(true)
		}
		_, err := c.rw.Write(buf)
		if c.slow {
			c.inWrite.Store(false)
			c.writes.Add(1)
		}
		if err != nil {
			switch {
			case slowMode && !c.isEnded():
				c.slowDisc.Store(true) // what a slow client expects
				c.end(nil)
			case c.slow:
				c.fail(fmt.Errorf("write: %w", err)) // dropped if we closed it
			default:
				werr = err
				c.stopSending()
			}
			break
		}
	}
	c.wr.stopped = r.since()
	if c.slow {
		// A slow client's reader decides how it ended (see slowEnd).
		<-c.readerDone
		c.end(nil)
		return
	}
	r.sendDone()
	c.drain(seq)
	r.drained()
	if werr != nil {
		// Reported only now: the reader may first have read why the
		// server dropped us (a NACK), or failed on the same reset.
		c.fail(fmt.Errorf("write: %w", werr))
	}
	if !c.isEnded() {
		// --hold: stay connected, idle, until released; a server that
		// drops the connection meanwhile is seen by the reader.
		select {
		case <-r.release:
		case <-c.readerDone:
		}
	}
	c.end(nil)
	<-c.readerDone
}

// fill appends n DATA frames with seqs seq+1 .. seq+n to buf, recording
// their send time and size unless record is false. It allocates nothing
// (buf has room for a batch).
func (c *conn) fill(buf []byte, seq, n uint64, now int64, record bool) []byte {
	r := c.r
	size := r.cfg.SizeMin
	for i := uint64(1); i <= n; i++ {
		if c.wr.rng != nil {
			size = r.cfg.SizeMin + c.wr.rng.IntN(r.cfg.SizeMax-r.cfg.SizeMin+1)
		}
		s := seq + i
		buf, _ = ingest.AppendData(buf, s, r.payload[:size]) // size <= MaxFramePayload
		if record {
			c.times[s&c.mask] = now
			c.sizes[s&c.mask] = uint32(size)
		}
	}
	return buf
}

// sleep waits d, or less if the send phase or the connection ends; it
// reports whether sending may go on.
func (c *conn) sleep(t *time.Timer, d time.Duration) bool {
	t.Reset(d)
	select {
	case <-t.C:
		return true
	case <-c.r.stopSend:
	case <-c.stop:
	}
	t.Stop()
	return false
}

// waitProgress waits for the reader to answer something (the window is
// full); a slow client also wakes when it is time to go slow.
func (c *conn) waitProgress(t *time.Timer, now int64) bool {
	var wake <-chan time.Time
	if c.slow && now < c.r.slowAfter {
		t.Reset(time.Duration(c.r.slowAfter - now))
		defer t.Stop()
		wake = t.C
	}
	select {
	case <-c.progress:
	case <-wake:
	case <-c.r.stopSend:
		return false
	case <-c.stop:
		return false
	}
	return true
}

// drain waits, at most --drain-timeout, until every DATA frame up to seq
// is answered or the reader stops.
func (c *conn) drain(seq uint64) {
	if c.answered.Load() >= seq {
		return
	}
	t := time.NewTimer(c.r.cfg.DrainTimeout)
	defer t.Stop()
	for c.answered.Load() < seq {
		select {
		case <-c.progress:
		case <-c.readerDone:
			return
		case <-t.C:
			return
		}
	}
}

// readLoop decodes replies until the connection ends.
func (c *conn) readLoop() {
	defer close(c.readerDone)
	r := c.r
	buf := make([]byte, readBufSize)
	dec := ingest.NewReplyDecoder()
	have := 0
	if d, ok := c.rw.(readDeadliner); ok && c.slow {
		// Wake up when it is time to stop reading, even with nothing to read.
		_ = d.SetReadDeadline(r.start.Add(time.Duration(r.slowAfter)))
	}
	for {
		n, err := c.rw.Read(buf[have:])
		now := r.since()
		if c.slow && (now >= r.slowAfter || isTimeout(err)) {
			c.slowEnd(buf)
			return
		}
		have += n
		used, perr := c.consume(&dec, buf[:have], now)
		if perr != nil {
			c.fail(perr)
			return
		}
		have = copy(buf, buf[used:have])
		if err != nil {
			c.readFailed(err)
			return
		}
	}
}

// consume handles every complete reply frame at the start of b and
// returns the bytes used. It allocates nothing unless it returns an error.
func (c *conn) consume(dec *ingest.Decoder, b []byte, now int64) (int, error) {
	used := 0
	answered := false
	for {
		f, n, err := dec.Decode(b[used:])
		if err == ingest.ErrNeedMore {
			break
		}
		if err != nil {
			return used, fmt.Errorf("bad reply: %w", err)
		}
		used += n
		switch f.Kind {
		case ingest.KindAck:
			if err := c.onAck(f.Seq, now); err != nil {
				return used, err
			}
			answered = true
		case ingest.KindNack:
			if err := c.onNack(f, now); err != nil {
				return used, err
			}
			answered = true
		case ingest.KindPong:
			c.rd.pongs++ // this client sends no PING: harmless, counted
		case ingest.KindGoaway:
			// Stop sending; the server sends the ACKs still due, then closes.
			c.rd.goaway = true
			c.rd.goawaySeq = f.Seq
			c.stopSending()
		}
	}
	if answered {
		c.floor.Store(c.rd.floor)
		c.answered.Store(c.rd.acked + c.rd.nackTotal)
		select {
		case c.progress <- struct{}{}:
		default:
		}
	}
	return used, nil
}

// onAck handles ACK n: every live seq <= n not NACKed is acknowledged.
func (c *conn) onAck(n uint64, now int64) error {
	rd := &c.rd
	if n < rd.ackedThrough {
		return fmt.Errorf("ACK %d after ACK %d: acknowledgements went backwards", n, rd.ackedThrough)
	}
	sent := c.sent.Load()
	if n > sent {
		return fmt.Errorf("ACK %d covers seqs never sent (highest sent %d)", n, sent)
	}
	measureFrom := c.measureFrom.Load() // stored before sent: see fill's caller
	rd.ackedThrough = n
	for s := rd.floor; s <= n; s++ {
		i := s & c.mask
		if c.nacked[i] {
			c.nacked[i] = false
			continue
		}
		rd.acked++
		if s >= measureFrom {
			us := (now - c.times[i]) / 1000
			_ = rd.hist.RecordValue(min(max(us, 0), histMaxUS)) // in range: never fails
			rd.measuredAcked++
			rd.measuredBytes += uint64(c.sizes[i])
		}
	}
	if n >= rd.floor {
		rd.floor = n + 1
		c.advanceFloor(sent)
	}
	rd.lastAnswer = now
	return nil
}

// onNack handles a NACK: the seq it names is answered; codes 1 and 2 end
// the connection and count as errors.
func (c *conn) onNack(f ingest.Frame, now int64) error {
	rd := &c.rd
	code := f.NackCode() // 1..4 or 6: the reply decoder refuses other codes
	rd.nacks[code]++
	s := f.Seq
	sent := c.sent.Load()
	if s < rd.floor || s > sent || c.nacked[s&c.mask] {
		return fmt.Errorf("NACK %d (%v) for seq %d, which is not outstanding (answered below %d, highest sent %d): %s",
			code, code, s, rd.floor, sent, f.NackReason())
	}
	c.nacked[s&c.mask] = true
	rd.nackTotal++
	if s == rd.floor {
		c.advanceFloor(sent)
	}
	rd.lastAnswer = now
	if code.Fatal() {
		return fmt.Errorf("NACK %d (%v) for seq %d: %s", code, code, s, f.NackReason())
	}
	return nil
}

// advanceFloor moves floor over NACKed seqs, which no ACK will cover.
func (c *conn) advanceFloor(sent uint64) {
	rd := &c.rd
	for rd.floor <= sent && c.nacked[rd.floor&c.mask] {
		c.nacked[rd.floor&c.mask] = false
		rd.floor++
	}
}

// readFailed classifies the error that ended reading.
func (c *conn) readFailed(err error) {
	if c.isEnded() {
		return // we closed it
	}
	if c.rd.goaway {
		// The close GOAWAY announced. It may come as a reset rather than
		// EOF: a server that closes with our DATA still unread in its
		// socket makes the kernel send RST.
		return
	}
	unanswered := c.sent.Load() - c.rd.acked - c.rd.nackTotal
	if errors.Is(err, io.EOF) {
		c.fail(fmt.Errorf("server closed the connection without GOAWAY (%d messages unanswered)", unanswered))
		return
	}
	c.fail(fmt.Errorf("read: %w (%d messages unanswered)", err, unanswered))
}

// slowEnd is the rest of a slow client's reader: it reads nothing until
// the send phase ends (or the writer saw the connection drop), then finds
// out how the connection ended: dropped by the server (closed or reset),
// stalled (still open, but the server stopped reading it: a Write is
// stuck), or alive.
func (c *conn) slowEnd(buf []byte) {
	select {
	case <-c.r.stopSend:
	case <-c.stop:
	}
	if c.slowDisc.Load() || c.isEnded() {
		return
	}
	writes, blocked := c.writes.Load(), c.inWrite.Load()
	time.Sleep(stallCheck)
	stalled := blocked && c.inWrite.Load() && c.writes.Load() == writes
	// Even a stalled connection may have been closed by the server: its
	// FIN waits behind the replies we did not read, so read them.
	if c.probe(buf) {
		c.slowDisc.Store(true)
	} else {
		c.rd.slowStalled = stalled
	}
	c.end(nil)
}

// probe reads (discarding) for up to probeTime and reports whether the
// connection turned out to be closed or reset by the server.
func (c *conn) probe(buf []byte) bool {
	d, ok := c.rw.(readDeadliner)
	if !ok {
		return false // cannot tell without blocking: count it alive
	}
	if s, ok := c.rw.(readBufferSetter); ok {
		// Undo the small receive buffer: with the window open by more than
		// a segment, the peer learns at once that it may send again, and a
		// FIN queued behind our unread replies arrives.
		_ = s.SetReadBuffer(probeReadBuffer)
	}
	_ = d.SetReadDeadline(time.Now().Add(probeTime))
	for {
		if _, err := c.rw.Read(buf); err != nil {
			return !isTimeout(err)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
