package ingest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gyre-io/gyre/internal/framemem"
)

// Producer is where queued messages come from: a TCP connection or a QUIC
// stream. The shard's worker calls Done once per message, in the order the
// producer pushed them, after the sink accepted (err nil) or refused
// (err non-nil) it. Done runs on the worker goroutine and must not block.
type Producer interface {
	Done(seq uint64, size int, err error)
}

// Defaults for DispatcherConfig's zero fields.
const (
	DefaultQueueMessages = 16384
	DefaultQueueBytes    = 64 << 20
	DefaultBatchMessages = 1024
)

// DefaultFrameMemory is DispatcherConfig.FrameMemory's default: room for
// 64 maximal (1 MiB) frames arriving at once, over all connections. Frames
// up to a receive buffer (16 KiB on TCP and QUIC by default), which is
// what most producers send, never draw from it; a producer of large frames
// waits for room only while 64 others are mid-frame. It is also what an
// attack of stalled large frames can cost the node, besides what
// connections hold anyway.
const DefaultFrameMemory = 64 << 20

// ErrQueueFull is returned by Shard.Push when the message does not fit.
var ErrQueueFull = errors.New("ingest: shard queue full")

// ErrTooBigForQueue is returned by Shard.Push for a payload larger than the
// whole queue: it can never fit, so waiting would deadlock.
var ErrTooBigForQueue = errors.New("ingest: payload larger than the shard queue")

// DispatcherConfig sizes a dispatcher. Sink is required.
type DispatcherConfig struct {
	// Shards is the number of independent queues; a server uses one per
	// reactor so each reactor pushes without contending with the others.
	Shards int
	// QueueMessages and QueueBytes bound each shard's queue; a push that
	// would exceed either fails (the caller applies its overload policy).
	QueueMessages int
	QueueBytes    int
	// BatchMessages caps the records handed to one Sink.Write.
	BatchMessages int
	// Sink stores the records.
	Sink Sink
	// NonBlockingSink promises that Sink.Write never blocks and returns
	// quickly: it counts, or hands records to machinery of its own without
	// waiting (DiscardSink; an in-memory ring; an asynchronous producer
	// that copies). Producers (a reactor, a QUIC stream, a connection's
	// goroutine) then write a shard's batches themselves whenever its
	// worker is not already writing, instead of waking the worker: no
	// wake-up and no thread switch per batch. Acknowledgements still follow
	// Write's return. Never set it for a sink that may block (fsync, the
	// network): a reactor would stall in Write. A flag rather than a method
	// on the Sink, so wrapping a DiscardSink in something slower cannot
	// inherit the promise by embedding.
	NonBlockingSink bool
	// OnBatch, if set, observes every sink write (for metrics).
	OnBatch func(d time.Duration, records int, err error)
	// FrameMemory bounds the memory of frames that arrive in pieces and
	// are too big for a receive buffer, over every producer feeding this
	// dispatcher (TCP connections and QUIC streams alike), in bytes
	// (default DefaultFrameMemory). It must hold one maximal frame.
	// A connection that finds it used up waits with reading paused, or
	// has its frame refused with NACK 3; see docs/ingest.md.
	FrameMemory int64
	// SessionTTL is how long a producer session is kept after its
	// connection ended (default DefaultSessionTTL); MaxSessions bounds the
	// sessions so kept, the least recently seen going first (default
	// DefaultMaxSessions). Attached sessions are bounded by the
	// connections.
	SessionTTL  time.Duration
	MaxSessions int
}

func (c DispatcherConfig) withDefaults() (DispatcherConfig, error) {
	if c.Sink == nil {
		return c, errors.New("ingest: DispatcherConfig.Sink is nil")
	}
	if c.Shards == 0 {
		c.Shards = 1
	}
	if c.QueueMessages == 0 {
		c.QueueMessages = DefaultQueueMessages
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = DefaultQueueBytes
	}
	if c.BatchMessages == 0 {
		c.BatchMessages = DefaultBatchMessages
	}
	if c.FrameMemory == 0 {
		c.FrameMemory = DefaultFrameMemory
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.SessionTTL < 0 || c.MaxSessions < 0 {
		return c, fmt.Errorf("ingest: negative session limit (SessionTTL %v, MaxSessions %d)", c.SessionTTL, c.MaxSessions)
	}
	if c.Shards < 0 || c.QueueMessages < 1 || c.QueueBytes < 1 || c.BatchMessages < 1 || c.FrameMemory < 0 {
		return c, fmt.Errorf("ingest: invalid dispatcher limits %+v", c)
	}
	return c, nil
}

// Dispatcher is a set of shards in front of one sink, and the frame
// memory of everything that feeds them.
type Dispatcher struct {
	frameMemory // quicbridge finds the budget through it (framemem.Of)
	cfg         DispatcherConfig
	shards      []*Shard
	sessions    *Sessions
	wg          sync.WaitGroup
}

// frameMemory embeds the dispatcher's frame budget without naming it in
// the public API.
type frameMemory = framemem.Embed

// budget returns the frame memory budget.
func (d *Dispatcher) budget() *framemem.Budget { return framemem.Of(d) }

// NewDispatcher starts one worker goroutine per shard.
func NewDispatcher(cfg DispatcherConfig) (*Dispatcher, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{cfg: cfg, frameMemory: framemem.NewEmbed(framemem.New(cfg.FrameMemory)),
		sessions: newSessions(sessionConfig{ttl: cfg.SessionTTL, max: cfg.MaxSessions})}
	if sr, ok := cfg.Sink.(SessionRecoverer); ok {
		d.sessions.restore(sr.RecoveredSessions())
	}
	if ss, ok := cfg.Sink.(SessionStore); ok {
		d.sessions.store = ss
	}
	for i := 0; i < cfg.Shards; i++ {
		s := newShard(i, cfg)
		d.shards = append(d.shards, s)
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			s.run()
		}()
	}
	return d, nil
}

// Shard returns shard i (i modulo the number of shards).
func (d *Dispatcher) Shard(i int) *Shard { return d.shards[i%len(d.shards)] }

// Sessions returns the producer-session table the transports feeding this
// dispatcher share.
func (d *Dispatcher) Sessions() *Sessions { return d.sessions }

// Shards returns every shard.
func (d *Dispatcher) Shards() []*Shard { return d.shards }

// Close stops accepting pushes, lets every worker write what is queued
// (every producer gets its Done calls), and waits for the workers. It does
// not close the sink.
func (d *Dispatcher) Close() {
	for _, s := range d.shards {
		s.close()
	}
	d.wg.Wait()
	d.budget().Close()
	for _, s := range d.shards {
		// Nothing reads the arena once the workers are done: a push after
		// close reads only its length, and no drainer starts on a closed
		// shard.
		framemem.Unmap(s.arena)
	}
}

// entry is one queued message, or a run of a producer's messages pushed in
// one go (pushRunLocked): its bytes live in the shard's arena at
// [off, off+n). A run keeps its messages as the ingest-v1 DATA frames they
// arrived in, headers included, so the TCP server queues every frame of a
// receive with one copy and one entry, and the drainer splits them.
type entry struct {
	p     Producer
	seq   uint64 // the message's seq; a run's last
	off   int
	n     int // arena bytes: the payload, or the run's frames
	span  int // arena bytes reserved: n, or 1 for an empty payload so every entry owns a byte
	count int // messages: 1, or the run's frames
	bytes int // payload bytes
	run   bool
	// skip (in a drainer's taken copy): the producer's session failed, so
	// the entry is refused without being written (errSessionFailed).
	skip bool
}

// Shard is a bounded FIFO of messages in front of the sink, drained by one
// worker goroutine. Payloads are copied into a ring-shaped arena allocated
// once, so a steady stream of pushes allocates nothing; it is mapped
// outside the Go heap (framemem.Map), so its tens of megabytes do not
// raise the garbage collector's goal. Push is safe for
// concurrent use.
type Shard struct {
	id  int
	cfg DispatcherConfig

	mu sync.Mutex
	// wake holds one pending wake-up for the worker: a send never blocks
	// and is never lost, so it may happen after mu is released.
	wake    chan struct{}
	q       []entry // ring of cfg.QueueMessages entries
	qHead   int     // oldest entry
	qLen    int
	arena   []byte
	aHead   int // oldest byte in use
	aTail   int // next free byte
	aUsed   int // bytes in use, including padding skipped at a wrap
	closed  bool
	working bool // the worker runs or a wake-up is pending (mu)

	// nonBlocking: DispatcherConfig.NonBlockingSink, so producers write
	// batches themselves when nobody else is (inlineBusy, mu; inline is
	// that drainer's memory).
	nonBlocking bool
	inlineBusy  bool
	inline      batchScratch
	waiting     bool   // a push was refused: call notify when room frees
	notify      func() // set before the first push; see waiting
	room        *sync.Cond
	sleepers    int // goroutines blocked in PushWait

	qBytes int // payload bytes queued (mu); published in bytes
	qMsgs  int // messages queued (mu), runs counted by their messages; published in depth

	depth    atomic.Int64
	bytes    atomic.Int64
	rejected atomic.Uint64
}

func newShard(id int, cfg DispatcherConfig) *Shard {
	s := &Shard{id: id, cfg: cfg, wake: make(chan struct{}, 1), q: make([]entry, cfg.QueueMessages), arena: framemem.Map(cfg.QueueBytes)}
	if cfg.NonBlockingSink {
		s.nonBlocking = true
		s.inline = newBatchScratch(cfg.BatchMessages)
	}
	s.room = sync.NewCond(&s.mu)
	return s
}

// ID returns the shard's index.
func (s *Shard) ID() int { return s.id }

// Depth returns the number of queued messages.
func (s *Shard) Depth() int { return int(s.depth.Load()) }

// Bytes returns the number of queued payload bytes.
func (s *Shard) Bytes() int { return int(s.bytes.Load()) }

// Full counts pushes refused because the queue was full.
func (s *Shard) Full() uint64 { return s.rejected.Load() }

// Push copies payload into the queue. It never blocks: it returns
// ErrQueueFull when the message does not fit now, ErrTooBigForQueue when it
// never will, and ErrSinkClosed after Close.
func (s *Shard) Push(p Producer, seq uint64, payload []byte) error {
	if len(payload) > len(s.arena) {
		return ErrTooBigForQueue
	}
	s.mu.Lock()
	err := s.pushLocked(p, seq, payload)
	s.unlockPush()
	return err
}

// pushLocked is Push with mu held, for a caller that queues several
// messages under one lock (the TCP handler queues every DATA frame of a
// receive that way). The caller ends the run with unlockPush, which
// publishes the counters and wakes the worker once for the whole run.
func (s *Shard) pushLocked(p Producer, seq uint64, payload []byte) error {
	n := len(payload)
	if n > len(s.arena) {
		return ErrTooBigForQueue
	}
	if s.closed {
		return ErrSinkClosed
	}
	if s.qMsgs == s.cfg.QueueMessages {
		s.waiting = true
		s.rejected.Add(1)
		return ErrQueueFull
	}
	span := max(n, 1)
	off, ok := s.alloc(span)
	if !ok {
		s.waiting = true
		s.rejected.Add(1)
		return ErrQueueFull
	}
	s.enqueue(p, seq, payload, off, span)
	return nil
}

// maxRun bounds the messages of one run: a batch never splits a run, so a
// run must fit in one (BatchMessages).
func (s *Shard) maxRun() int { return min(s.cfg.BatchMessages, 256) }

// pushRunLocked queues count DATA messages of p as one entry: frames holds
// their ingest-v1 frames back to back (headers included, already
// validated), the last with seq lastSeq, bytes payload bytes in all, and
// count is at most maxRun. It is all or nothing: it returns ErrQueueFull
// when the run does not fit now, without counting a refusal (the caller
// then pushes the frames one by one, which takes what fits and counts what
// does not), and ErrSinkClosed after Close. The caller holds mu.
func (s *Shard) pushRunLocked(p Producer, frames []byte, count int, lastSeq uint64, bytes int) error {
	if s.closed {
		return ErrSinkClosed
	}
	if s.qMsgs+count > s.cfg.QueueMessages {
		return ErrQueueFull
	}
	off, ok := s.alloc(len(frames))
	if !ok {
		return ErrQueueFull
	}
	copy(s.arena[off:], frames)
	s.append(entry{p: p, seq: lastSeq, off: off, n: len(frames), span: len(frames), count: count, bytes: bytes, run: true})
	return nil
}

// unlockPush ends a run of pushLocked calls: it publishes the queue depth
// and bytes, wakes the worker if it sleeps on a non-empty queue, and
// releases mu.
func (s *Shard) unlockPush() {
	s.publish()
	wake := s.qLen > 0 && !s.working && !s.inlineBusy && !s.closed
	if wake && s.nonBlocking {
		// Write on this goroutine: no wake-up, no thread switch.
		s.inlineBusy = true
		s.mu.Unlock()
		s.drainInline()
		return
	}
	if wake {
		s.working = true
	}
	s.mu.Unlock()
	if wake {
		// After Unlock: a worker woken while mu is held would find it
		// locked and park on it, a second trip through the scheduler.
		s.signalWorker()
	}
}

// unlockPushDeferred ends a run of pushLocked calls like unlockPush, but
// leaves the worker asleep: the caller wakes it with wakeWorker soon, once
// for many runs (a reactor, once per loop iteration).
func (s *Shard) unlockPushDeferred() {
	s.publish()
	s.mu.Unlock()
}

// wakeWorker wakes the worker if messages wait and it sleeps.
func (s *Shard) wakeWorker() {
	s.mu.Lock()
	s.unlockPush()
}

// signalWorker wakes the worker, or makes its next wait return at once.
// Through the Go scheduler on purpose: an eventfd the worker blocks on in
// read(2) was tried, and a goroutine blocked in a system call holds its P,
// so with GOMAXPROCS 1 every other goroutine waited for sysmon to take it
// back (the goroutine-per-connection baseline fell to half its speed).
func (s *Shard) signalWorker() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// publish stores the depth and bytes for readers outside the lock (caller
// holds mu): once per run of pushes or per batch, not per message.
func (s *Shard) publish() {
	s.depth.Store(int64(s.qMsgs))
	s.bytes.Store(int64(s.qBytes))
}

// PushWait is Push for producers that run on their own goroutine (a QUIC
// stream, a goroutine-per-connection server): when the queue is full it
// waits for room instead of failing, so the producer stops reading and the
// transport's flow control pushes back on the client. It returns ctx's
// error if ctx ends first, ErrTooBigForQueue or ErrSinkClosed.
func (s *Shard) PushWait(ctx context.Context, p Producer, seq uint64, payload []byte) error {
	n := len(payload)
	if n > len(s.arena) {
		return ErrTooBigForQueue
	}
	span := max(n, 1)
	s.mu.Lock()
	var stop func() bool
	for {
		if s.closed {
			s.mu.Unlock()
			return ErrSinkClosed
		}
		if err := ctx.Err(); err != nil {
			s.mu.Unlock()
			return err
		}
		if s.qMsgs < s.cfg.QueueMessages {
			if off, ok := s.alloc(span); ok {
				s.enqueue(p, seq, payload, off, span)
				s.unlockPush()
				if stop != nil {
					stop()
				}
				return nil
			}
		}
		if stop == nil {
			s.rejected.Add(1) // counted once per message that had to wait
			stop = context.AfterFunc(ctx, func() {
				s.mu.Lock()
				s.room.Broadcast()
				s.mu.Unlock()
			})
		}
		s.sleepers++
		s.room.Wait()
		s.sleepers--
	}
}

// enqueue appends an entry whose bytes were reserved at off (caller holds
// mu; unlockPush publishes the counters and wakes the worker).
func (s *Shard) enqueue(p Producer, seq uint64, payload []byte, off, span int) {
	copy(s.arena[off:], payload)
	s.append(entry{p: p, seq: seq, off: off, n: len(payload), span: span, count: 1, bytes: len(payload)})
}

// append adds e at the queue's tail (caller holds mu). The ring has a slot
// per message the queue may hold, so it has one for every entry.
func (s *Shard) append(e entry) {
	i := s.qHead + s.qLen
	if i >= len(s.q) {
		i -= len(s.q)
	}
	s.q[i] = e
	s.qLen++
	s.qMsgs += e.count
	s.qBytes += e.bytes
}

// alloc reserves n contiguous arena bytes (caller holds mu). The arena is
// used as a ring: live bytes are [aHead, aTail) when not wrapped, or
// [aHead, end) plus [0, aTail) when wrapped. A request that does not fit
// before the end wraps to 0; the skipped tail counts as used until the
// entry before it is freed.
func (s *Shard) alloc(n int) (int, bool) {
	size := len(s.arena)
	if s.aUsed+n > size {
		return 0, false
	}
	if s.aUsed == 0 {
		s.aHead, s.aTail = 0, 0
	}
	wrapped := s.aUsed > 0 && s.aTail <= s.aHead
	switch {
	case !wrapped && size-s.aTail >= n:
		off := s.aTail
		s.aTail += n
		s.aUsed += n
		return off, true
	case !wrapped && s.aHead >= n:
		s.aUsed += size - s.aTail + n // padding to the end, then n at 0
		s.aTail = n
		return 0, true
	case wrapped && s.aHead-s.aTail >= n:
		off := s.aTail
		s.aTail += n
		s.aUsed += n
		return off, true
	}
	return 0, false
}

// release frees the arena bytes of the oldest k entries (caller holds mu).
func (s *Shard) release(k int) {
	size := len(s.arena)
	for i := 0; i < k; i++ {
		e := &s.q[s.qHead]
		if e.off != s.aHead {
			// Placed at 0 after a wrap: the skipped tail goes with it.
			s.aUsed -= size - s.aHead
		}
		s.aHead = e.off + e.span
		s.aUsed -= e.span
		s.qBytes -= e.bytes
		s.qMsgs -= e.count
		e.p = nil
		if s.qHead++; s.qHead == len(s.q) {
			s.qHead = 0
		}
		s.qLen--
	}
	if s.aUsed == 0 {
		s.aHead, s.aTail = 0, 0
	}
	s.publish()
}

func (s *Shard) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		s.working = true
		s.signalWorker()
	}
	s.room.Broadcast()
	s.mu.Unlock()
}

// batchScratch is the reusable memory of one drainer (the worker, or the
// producers draining inline; never both at once).
type batchScratch struct {
	batch []Record
	taken []entry
}

func newBatchScratch(n int) batchScratch {
	return batchScratch{batch: make([]Record, 0, n), taken: make([]entry, 0, n)}
}

// run is the shard's worker: it takes up to BatchMessages of the oldest
// entries, writes them to the sink outside the lock, reports each to its
// producer, and frees them. With NonBlockingSink set, producers usually
// drain the queue themselves (see unlockPush) and the worker only takes
// what is left when the shard closes.
func (s *Shard) run() {
	sc := newBatchScratch(s.cfg.BatchMessages)
	for {
		s.mu.Lock()
		for s.inlineBusy || (s.qLen == 0 && !s.closed) {
			s.working = false
			s.mu.Unlock()
			<-s.wake
			s.mu.Lock()
		}
		if s.qLen == 0 { // closed, nothing left, nobody draining inline
			s.mu.Unlock()
			return
		}
		s.working = true
		s.mu.Unlock()
		s.writeBatch(&sc)
	}
}

// drainInline writes what is queued on the calling producer's goroutine,
// for a NonBlockingSink (see DispatcherConfig): the caller set inlineBusy. When the shard closes
// meanwhile, the rest is left to the worker, which waits for inlineBusy to
// clear.
func (s *Shard) drainInline() {
	for {
		s.writeBatch(&s.inline)
		s.mu.Lock()
		if s.qLen > 0 && !s.closed {
			s.mu.Unlock()
			continue
		}
		s.inlineBusy = false
		wake := s.closed
		s.mu.Unlock()
		if wake {
			s.signalWorker()
		}
		return
	}
}

// writeBatch takes the oldest entries, up to BatchMessages messages
// (at least one entry), writes them to the sink outside the lock, reports
// each message to its producer and frees them. Only one drainer runs at a
// time (working or inlineBusy).
func (s *Shard) writeBatch(sc *batchScratch) {
	s.mu.Lock()
	if s.qLen == 0 {
		s.mu.Unlock()
		return
	}
	batch, taken := sc.batch[:0], sc.taken[:0]
	msgs := 0
	for j := s.qHead; len(taken) < s.qLen; {
		e := s.q[j]
		if msgs > 0 && msgs+e.count > s.cfg.BatchMessages {
			break
		}
		taken = append(taken, e)
		msgs += e.count
		if j++; j == len(s.q) {
			j = 0
		}
	}
	k := len(taken)
	s.mu.Unlock()

	// The ID and session lookups are done once per entry, not per message.
	skipped := false
	for i := range taken {
		e := &taken[i]
		id, sess := producerID(e.p), sessionOf(e.p)
		var sid SessionID
		if sess != nil {
			if sess.failed.Load() {
				e.skip, skipped = true, true
				continue
			}
			sid = sess.id
		}
		if !e.run {
			batch = append(batch, Record{Conn: id, Seq: e.seq, Session: sid, Payload: s.arena[e.off : e.off+e.n : e.off+e.n]})
			continue
		}
		for f := s.arena[e.off : e.off+e.n]; len(f) > 0; {
			end := 4 + int(binary.BigEndian.Uint32(f))
			batch = append(batch, Record{Conn: id, Seq: binary.BigEndian.Uint64(f[8:16]), Session: sid, Payload: f[HeaderSize:end:end]})
			f = f[end:]
		}
	}
	var err error
	if len(batch) > 0 {
		began := time.Now()
		err = s.cfg.Sink.Write(batch)
		if s.cfg.OnBatch != nil {
			s.cfg.OnBatch(time.Since(began), len(batch), err)
		}
	}
	if skipped {
		s.reportSkipped(taken) // reads the frames in the arena: before the release
	}
	s.mu.Lock()
	s.release(k)
	notify := s.waiting && s.notify != nil
	s.waiting = false
	if s.sleepers > 0 {
		s.room.Broadcast()
	}
	s.mu.Unlock()
	// Completions only once the room is free: a producer told of them
	// (and its client, told by an ACK) may push again at once and must
	// find it. Only the records' seqs and lengths are read from here on,
	// never the arena bytes a new push may be writing.
	reportDone(taken, batch, err)
	clear(batch)
	clear(taken)
	if notify {
		s.notify() // a refused producer may try again
	}
}

// RunProducer is a Producer that takes a run of successful completions in
// one call: DoneRun(lastSeq, count, bytes) stands for count Done(…, nil)
// calls, the last with lastSeq, of bytes payload bytes in all. A run's
// messages are consecutive in push order, so the producer sees the same
// order either way; a failure is always reported with Done. The shard
// reports a batch's messages this way when their producer implements it:
// a few atomics or one lock per batch instead of per message (the TCP
// server's connections and the QUIC bridge's streams do).
type RunProducer interface {
	Producer
	DoneRun(lastSeq uint64, count, bytes int)
}

// reportDone reports every message of the taken entries (whose records
// are batch, in the same order) to its producer, in order, collapsing runs
// of one RunProducer's successes into one DoneRun call.
func reportDone(taken []entry, batch []Record, err error) {
	r := 0 // the first record of taken[i]
	for i := 0; i < len(taken); {
		if taken[i].skip {
			i++
			continue
		}
		p := taken[i].p
		sess := sessionOf(p)
		rp, ok := p.(RunProducer)
		if !ok || err != nil {
			if sess != nil && err != nil {
				sess.failed.Store(true) // before Done: the producer's next batch sees it
			}
			for _, rec := range batch[r : r+taken[i].count] {
				if sess != nil && err == nil {
					sess.accept(rec.Seq)
				}
				p.Done(rec.Seq, len(rec.Payload), err)
			}
			r += taken[i].count
			i++
			continue
		}
		j, count, bytes := i, 0, 0
		for j < len(taken) && taken[j].p == p && !taken[j].skip {
			count += taken[j].count
			bytes += taken[j].bytes
			j++
		}
		if sess != nil {
			sess.accept(taken[j-1].seq)
		}
		rp.DoneRun(taken[j-1].seq, count, bytes)
		r += count
		i = j
	}
}

// reportSkipped fails, in order, every message of the entries skipped
// because their session had failed; none of them reached the sink.
func (s *Shard) reportSkipped(taken []entry) {
	for _, e := range taken {
		if !e.skip {
			continue
		}
		if !e.run {
			e.p.Done(e.seq, e.bytes, errSessionFailed)
			continue
		}
		for f := s.arena[e.off : e.off+e.n]; len(f) > 0; {
			end := 4 + int(binary.BigEndian.Uint32(f))
			e.p.Done(binary.BigEndian.Uint64(f[8:16]), end-HeaderSize, errSessionFailed)
			f = f[end:]
		}
	}
}

// Identified is implemented by producers that have an ID for the sink's
// records (connection or stream ID).
type Identified interface {
	ID() uint64
}

func producerID(p Producer) uint64 {
	if id, ok := p.(Identified); ok {
		return id.ID()
	}
	return 0
}
