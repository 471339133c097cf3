package ingest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/gyre-io/gyre/internal/framemem"
	"github.com/gyre-io/gyre/internal/ratelog"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gyre-io/gyre/acceptor"
	"github.com/gyre-io/gyre/reactor"
)

// Overload is what a server does with a DATA frame its shard queue cannot
// take.
type Overload uint8

const (
	// OverloadBlock stops reading the connection until the queue has room,
	// so TCP (or QUIC) flow control pushes back on the client. The default.
	OverloadBlock Overload = iota
	// OverloadReject answers NACK 3 (overloaded); the client may resend.
	OverloadReject
	// OverloadShed closes the connection holding the most queued bytes.
	OverloadShed
)

func (o Overload) String() string {
	switch o {
	case OverloadBlock:
		return "block"
	case OverloadReject:
		return "reject"
	case OverloadShed:
		return "shed"
	}
	return fmt.Sprintf("overload(%d)", int(o))
}

// ParseOverload parses "block", "reject" or "shed".
func ParseOverload(s string) (Overload, error) {
	switch strings.ToLower(s) {
	case "block":
		return OverloadBlock, nil
	case "reject":
		return OverloadReject, nil
	case "shed":
		return OverloadShed, nil
	}
	return 0, fmt.Errorf("ingest: overload policy %q: want block, reject or shed", s)
}

// Close causes counted by the server.
var (
	// ErrShed closes a connection dropped by the shed overload policy.
	ErrShed = errors.New("ingest: connection shed under overload")
	// ErrSlowReader closes a connection whose client does not read its
	// acknowledgements (its unsent output reached the cap).
	ErrSlowReader = errors.New("ingest: client does not read its acknowledgements")
)

// The ingest server's receive buffer ring per reactor, when
// ServerConfig.ReceiveBuffers is zero: 256 buffers of 64 KiB (16 MiB,
// mapped outside the Go heap).
// Ingest clients stream: larger buffers than the reactor's default (1024
// of 4 KiB) mean one completion, one handler call and one shard lock per
// 64 KiB received instead of per 4 KiB, which with 1 KiB payloads raised
// messages per server CPU-second by about a fifth.
const (
	DefaultReceiveBufferCount = 256
	DefaultReceiveBufferSize  = 64 << 10
)

// DefaultFrameTimeout is ServerConfig.FrameTimeout's default: a healthy
// client sends a whole frame (at most MaxFramePayload bytes) in far less;
// a client that has not in 10 s is stalled or hostile, and the partial
// frame it holds (up to the largest frame) is memory it costs the node.
const DefaultFrameTimeout = 10 * time.Second

// ConnsReserve is how many descriptors DefaultMaxConns keeps back from
// client connections: for the sink's segments and directory, the metrics
// listener and its clients, the QUIC socket, the listeners, the reactors'
// rings and eventfds, and recovery's reads at restart.
const ConnsReserve = 256

// ServerConfig configures a Server. Sink is required; the zero value of
// every other field is a documented default.
type ServerConfig struct {
	// Addr is the TCP listen address (default 127.0.0.1:7400).
	Addr string
	// Reactors is the number of reactors (default: number of CPUs); each
	// has its own dispatcher shard.
	Reactors int
	// CPUs pins reactors to CPUs (see reactor.Config.CPUs).
	CPUs []int
	// Engine is the reactors' engine (see reactor.Config.Engine); the zero
	// value picks io_uring where it may be used and epoll where not.
	Engine reactor.Engine
	// MaxPayload is the largest DATA payload accepted (default 1 MiB);
	// larger frames get NACK 2 and the connection is closed, without the
	// payload being read into memory.
	MaxPayload int
	// QueueMessages and QueueBytes bound each shard's queue (defaults
	// DefaultQueueMessages, DefaultQueueBytes).
	QueueMessages, QueueBytes int
	// Overload is the policy when a shard queue is full (default block).
	Overload Overload
	// IdleTimeout closes connections silent for this long (default 0: off).
	IdleTimeout time.Duration
	// MaxConns bounds the TCP connections open at once. A connection past
	// it is closed as soon as it is accepted (so clients see a refusal at
	// once rather than wait in the backlog), and counted. 0 means
	// DefaultMaxConns(); negative means no bound.
	MaxConns int
	// FrameTimeout closes a connection that started a frame (sent part of
	// its header or payload) and did not finish it within this time:
	// bytes trickling in (slowloris) do not extend it, unlike IdleTimeout.
	// 0 means DefaultFrameTimeout; negative turns it off.
	FrameTimeout time.Duration
	// OutputCap bounds the unsent output per connection (acks, nacks,
	// pongs; default 1 MiB). Past half of it the server stops reading the
	// connection; a client that then does not read its replies for
	// SlowReaderTimeout is disconnected.
	OutputCap int
	// SlowReaderTimeout is how long a connection may stay stopped on unread
	// replies before it is closed (default 10 s).
	SlowReaderTimeout time.Duration
	// ReceiveBuffers sizes each reactor's receive buffer ring (default
	// DefaultReceiveBufferCount x DefaultReceiveBufferSize, taken at
	// start: see reactor.BufferConfig.Lazy).
	ReceiveBuffers reactor.BufferConfig
	// FrameMemory bounds the memory of large frames arriving in pieces,
	// over every connection and the QUIC bridge fed by this server's
	// dispatcher (see DispatcherConfig.FrameMemory; default
	// DefaultFrameMemory). It must hold one maximal frame.
	FrameMemory int64
	// SessionTTL and MaxSessions bound the producer sessions kept after
	// their connection ended (see DispatcherConfig; defaults
	// DefaultSessionTTL, DefaultMaxSessions).
	SessionTTL  time.Duration
	MaxSessions int
	// Sink stores accepted messages.
	Sink Sink
	// NonBlockingSink: Sink.Write never blocks (DiscardSink); reactors
	// then write batches themselves. See DispatcherConfig.NonBlockingSink.
	NonBlockingSink bool
	// Logger receives events; each line about a connection carries its id.
	Logger *slog.Logger
}

func (c ServerConfig) withDefaults() (ServerConfig, error) {
	if c.Sink == nil {
		return c, errors.New("ingest: ServerConfig.Sink is nil")
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:7400"
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = DefaultMaxPayload
	}
	if c.OutputCap == 0 {
		c.OutputCap = 1 << 20
	}
	if c.SlowReaderTimeout == 0 {
		c.SlowReaderTimeout = 10 * time.Second
	}
	if c.FrameTimeout == 0 {
		c.FrameTimeout = DefaultFrameTimeout
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ReceiveBuffers == (reactor.BufferConfig{}) {
		c.ReceiveBuffers = reactor.BufferConfig{Count: DefaultReceiveBufferCount, Size: DefaultReceiveBufferSize}
	}
	switch {
	case c.MaxPayload < 0 || c.MaxPayload > MaxFramePayload:
		return c, fmt.Errorf("ingest: MaxPayload %d out of range", c.MaxPayload)
	case c.IdleTimeout < 0, c.OutputCap < 0, c.QueueMessages < 0, c.QueueBytes < 0, c.SlowReaderTimeout < 0:
		return c, errors.New("ingest: negative limit in ServerConfig")
	case c.Overload > OverloadShed:
		return c, fmt.Errorf("ingest: unknown overload policy %d", c.Overload)
	}
	if c.FrameMemory == 0 {
		c.FrameMemory = DefaultFrameMemory
	}
	if maxFrame := c.MaxPayload + HeaderSize; c.FrameMemory < int64(maxFrame) && maxFrame > smallPartSize {
		return c, fmt.Errorf("ingest: FrameMemory %d cannot hold one maximal frame of %d bytes (MaxPayload + %d)", c.FrameMemory, maxFrame, HeaderSize)
	}
	if qb := c.QueueBytes; qb != 0 && qb < c.MaxPayload {
		return c, fmt.Errorf("ingest: QueueBytes %d is smaller than MaxPayload %d: a maximal message could never be queued", qb, c.MaxPayload)
	}
	return c, nil
}

// Server is the ingest node's TCP side: reactors decoding ingest-v1 frames
// into dispatcher shards (one per reactor), acknowledging after the sink.
type Server struct {
	cfg   ServerConfig
	disp  *Dispatcher
	group *reactor.Group
	acc   *acceptor.Acceptor
	rs    []*reactorState
	log   *slog.Logger
	stats serverCounters

	accepting atomic.Bool
	stopOnce  sync.Once
	refuseLog ratelog.OncePerSecond // refusals over MaxConns

	frames   *framemem.Budget      // the dispatcher's frame memory
	frameLog ratelog.OncePerSecond // frames refused for want of frame memory
}

// NewServer starts the reactors, the dispatcher and the listener.
func NewServer(cfg ServerConfig) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	rcfg := reactor.Config{
		Reactors:    cfg.Reactors,
		CPUs:        cfg.CPUs,
		Engine:      cfg.Engine,
		IdleTimeout: cfg.IdleTimeout,
		// A frame may sit whole in the input buffer while it waits for
		// queue room: allow the largest frame plus one receive buffer.
		MaxInput:       cfg.MaxPayload + HeaderSize + 64<<10,
		WriteHighWater: max(cfg.OutputCap/2, 1),
		WriteLowWater:  max(cfg.OutputCap/8, 1),
		MaxOutput:      max(cfg.OutputCap, 2),
		Buffers:        cfg.ReceiveBuffers,
		Logger:         cfg.Logger,
	}
	g, err := reactor.NewGroup(rcfg, &tcpHandler{s: s})
	if err != nil {
		return nil, err
	}
	s.group = g
	d, err := NewDispatcher(DispatcherConfig{
		Shards:          len(g.Reactors()),
		QueueMessages:   cfg.QueueMessages,
		QueueBytes:      cfg.QueueBytes,
		Sink:            cfg.Sink,
		NonBlockingSink: cfg.NonBlockingSink,
		OnBatch:         s.stats.observeBatch,
		FrameMemory:     cfg.FrameMemory,
		SessionTTL:      cfg.SessionTTL,
		MaxSessions:     cfg.MaxSessions,
	})
	if err != nil {
		_ = g.Close()
		return nil, err
	}
	s.disp = d
	s.frames = d.budget()
	for i, r := range g.Reactors() {
		rs := &reactorState{s: s, r: r, shard: d.Shard(i)}
		rs.flusher = r.NewNotifier(rs.flush)
		rs.wakeFn = rs.wakeShard
		d.Shard(i).notify = rs.schedule
		s.rs = append(s.rs, rs)
	}
	a, err := acceptor.Listen(acceptor.Config{Addrs: []string{cfg.Addr}, Logger: cfg.Logger}, g)
	if err != nil {
		_ = g.Close()
		d.Close()
		return nil, err
	}
	s.acc = a
	s.accepting.Store(true)
	s.log.Info("ingest listening", "transport", "tcp", "addr", a.Addrs()[0].String(),
		"reactors", len(g.Reactors()), "engine", g.Engine().String(), "overload", cfg.Overload.String(), "max_payload", cfg.MaxPayload)
	return s, nil
}

// Addr returns the bound TCP address.
func (s *Server) Addr() string { return s.acc.Addrs()[0].String() }

// Dispatcher returns the dispatcher, so other transports (the QUIC
// bridge) push into the same shards.
func (s *Server) Dispatcher() *Dispatcher { return s.disp }

// Accepting reports whether the server takes new connections (for health
// checks).
func (s *Server) Accepting() bool { return s.accepting.Load() }

// Reactors returns the reactor group (for its statistics).
func (s *Server) Reactors() *reactor.Group { return s.group }

// Shutdown stops accepting, sends GOAWAY on every connection once its
// queued messages are acknowledged, closes the connections, and drains the
// dispatcher into the sink. At ctx's deadline the remaining connections are
// closed at once. It does not close the sink.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		s.accepting.Store(false)
		err = s.group.Shutdown(ctx)
		s.disp.Close()
	})
	return err
}

// Close stops everything at once: connections are closed without GOAWAY;
// queued messages are still written to the sink, but not acknowledged.
func (s *Server) Close() error {
	s.stopOnce.Do(func() {
		s.accepting.Store(false)
		_ = s.group.Close()
		s.disp.Close()
	})
	return nil
}

// reactorState is the server's per-reactor state: the shard it pushes to
// and the connections waiting for acks or for queue room. Fields marked
// (mu) are shared with the shard's worker; the rest are loop-only.
type reactorState struct {
	s     *Server
	r     *reactor.Reactor
	shard *Shard

	mu        sync.Mutex
	ready     []*tcpConn        // (mu) connections with completions to report
	spare     []*tcpConn        // (mu) the other half of ready's double buffer
	flusher   *reactor.Notifier // runs flush on the reactor
	wakeFn    func()            // rs.wakeShard, made once
	wakeAsked bool              // wakeFn is queued with Reactor.Later

	// Session events from other goroutines, handled by flush (mu).
	welcomes  []welcomeNote // answers to HELLOs that waited for a takeover
	takeovers []*tcpConn    // connections whose session a newer HELLO took

	blocked []*tcpConn // waiting for queue room (block policy)
	conns   []*tcpConn // open connections; tcpConn.slot is the index
	small   [][]byte   // free small reassembly buffers (see reassembly.go)
}

// schedule asks the reactor to run flush. Safe for concurrent use; called
// by the worker after completions and when queue room frees up. A Notifier
// rather than Post: it cannot be refused for a full inbox, and while the
// reactor is busy it costs two atomic flags instead of a lock and an
// eventfd write per sink batch.
func (rs *reactorState) schedule() { rs.flusher.Notify() }

// unlockPush ends a run of pushes by one of this reactor's connections.
// The shard's worker is woken once per loop iteration (Reactor.Later), not
// per receive: woken at once, it would preempt the reactor (on the same
// CPU when pinned) to take one receive's messages, a pair of thread
// switches per receive. Loop-only.
func (rs *reactorState) unlockPush() {
	rs.shard.unlockPushDeferred()
	if !rs.wakeAsked {
		rs.wakeAsked = true
		rs.r.Later(rs.wakeFn)
	}
}

func (rs *reactorState) wakeShard() {
	rs.wakeAsked = false
	rs.shard.wakeWorker()
}

// welcomeNote is the answer to a HELLO that waited for its session's
// previous connection to end.
type welcomeNote struct {
	tc   *tcpConn
	sess *Session
	seq  uint64
	err  error
}

// flush runs on the reactor: it writes NACKs and cumulative ACKs for
// completed messages, finishes draining connections, answers HELLOs that
// waited, ends connections whose session was taken over, and lets blocked
// connections try again.
func (rs *reactorState) flush() {
	rs.mu.Lock()
	ready := rs.ready
	rs.ready = rs.spare[:0]
	rs.spare = nil
	for _, tc := range ready {
		tc.takeDone()
	}
	var welcomes []welcomeNote
	var takeovers []*tcpConn
	if len(rs.welcomes) > 0 || len(rs.takeovers) > 0 {
		welcomes, takeovers = rs.welcomes, rs.takeovers
		rs.welcomes, rs.takeovers = nil, nil
	}
	rs.mu.Unlock()
	for _, tc := range takeovers {
		tc.endSession()
	}
	for _, w := range welcomes {
		w.tc.welcomed(w.sess, w.seq, w.err)
	}
	for i, tc := range ready {
		ready[i] = nil
		tc.report()
	}
	rs.mu.Lock()
	if rs.spare == nil {
		rs.spare = ready[:0]
	}
	rs.mu.Unlock()
	if len(rs.blocked) > 0 {
		b := rs.blocked
		rs.blocked = nil
		for _, tc := range b {
			tc.blocked = false
			if !tc.c.Closed() && tc.retryPart() {
				tc.c.ResumeReading() // presents the waiting frame again
			}
		}
		rs.blocked = append(b[:0], rs.blocked...)
	}
}

// tcpHandler adapts reactor events to ingest connections.
type tcpHandler struct {
	s *Server
}

func (h *tcpHandler) OnOpen(c *reactor.Conn) {
	if n := h.s.stats.connsActive.Add(1); h.s.cfg.MaxConns > 0 && n > int64(h.s.cfg.MaxConns) {
		h.s.stats.connsActive.Add(-1)
		h.s.stats.refusedMaxConns.Add(1)
		if h.s.refuseLog.OK() {
			h.s.log.Warn("refusing TCP connections: MaxConns are open; clients should retry with backoff or go elsewhere",
				"max_conns", h.s.cfg.MaxConns, "refused_total", h.s.stats.refusedMaxConns.Load())
		}
		c.Abort() // no context: OnClose ignores it
		return
	}
	rs := h.s.rs[c.Reactor().ID()]
	tc := &tcpConn{c: c, rs: rs, dec: NewDecoder(h.s.cfg.MaxPayload), id: c.ID()}
	c.SetContext(tc)
	tc.slot = int32(len(rs.conns))
	rs.conns = append(rs.conns, tc)
	h.s.stats.connsAccepted.Add(1)
}

func (h *tcpHandler) OnData(c *reactor.Conn, b []byte) int {
	return c.Context().(*tcpConn).onData(b)
}

func (h *tcpHandler) OnClose(c *reactor.Conn, cause error) {
	tc, _ := c.Context().(*tcpConn)
	if tc == nil {
		return
	}
	tc.rs.forget(tc)
	tc.dropPart()
	tc.maybeDetach()
	h.s.stats.connsActive.Add(-1)
	switch {
	case tc.slow:
		cause = ErrSlowReader
	case tc.shed:
		cause = ErrShed
	}
	h.s.stats.closed(cause)
	if errors.Is(cause, reactor.ErrWriteTimeout) {
		h.s.log.Warn("disconnected a client that did not read its replies", "conn", tc.id,
			"timeout", h.s.cfg.SlowReaderTimeout)
	} else if cause != nil && !errors.Is(cause, reactor.ErrServerClosed) && !errors.Is(cause, io.EOF) {
		h.s.log.Debug("connection closed", "conn", tc.id, "cause", cause.Error())
	}
}

// OnPressure starts (or stops) the slow-reader clock: while the client
// leaves its replies unread, the reactor has stopped reading from it; if
// that lasts SlowReaderTimeout, the write deadline closes the connection.
func (h *tcpHandler) OnPressure(c *reactor.Conn, paused bool) {
	if paused {
		c.SetWriteTimeoutAt(time.Now().Add(h.s.cfg.SlowReaderTimeout))
	} else {
		c.SetWriteTimeoutAt(time.Time{})
	}
}

// OnShutdown starts a graceful goodbye: stop reading, wait for the queued
// messages to be acknowledged, send GOAWAY, close.
func (h *tcpHandler) OnShutdown(c *reactor.Conn) {
	tc := c.Context().(*tcpConn)
	tc.draining = true
	c.PauseReading()
	if tc.inflight == 0 {
		tc.goaway()
	}
}

// tcpConn is one ingest connection. Loop-only except the fields marked
// (mu), which the shard's worker writes under rs.mu.
type tcpConn struct {
	c   *reactor.Conn
	rs  *reactorState
	dec Decoder
	id  uint64
	// part reassembles a frame cut at the end of a receive; see
	// reassembly.go for where its memory comes from. Nil while no frame is
	// cut, so an idle connection holds no buffer.
	part     []byte
	partHeld int64 // frame budget bytes held for part (a budget buffer)
	// skip is the payload of a refused frame still to be discarded.
	skip int

	inflight int    // messages pushed and not yet reported
	acked    uint64 // highest seq acknowledged on the wire
	// sess is the producer session (HELLO), nil without one; floor is
	// its seq at WELCOME: DATA at or below it is a duplicate. Set before
	// the first DATA is pushed, never changed after.
	sess  *Session
	floor uint64
	// frameClock: part holds an unfinished frame and the read deadline
	// (FrameTimeout) runs for it.
	frameClock bool
	draining   bool
	blocked    bool
	helloWait  bool  // the HELLO waits for the session's previous connection: reading paused
	detached   bool  // sess was detached (the connection is over)
	slow       bool  // closed for not reading its replies
	shed       bool  // closed by the shed overload policy
	slot       int32 // index in rs.conns
	// Pushed during the current onData, published by publishCounts.
	pushedMsgs, pushedBytes int32
	queued                  atomic.Int64 // payload bytes in the shard (for shed)

	// Completions from the worker. The common case (success) touches only
	// atomics; failures take rs.mu. inReady is set by the worker that
	// queues the connection on rs.ready and cleared by flush before it
	// reads the rest, so no completion is missed.
	inReady   atomic.Bool
	doneSeq   atomic.Uint64
	doneCount atomic.Int64
	// Taken from the worker's fields by flush, then reported (loop).
	tDoneSeq   uint64
	tDoneCount int
	// fails holds the seqs the sink failed to store, until they are
	// NACKed; allocated at the first failure, so the many connections that
	// never see one do not carry two slices.
	fails *sinkFailures
}

// sinkFailures is a connection's failed seqs: failed from the worker
// (under rs.mu), taken into taken by flush and NACKed from there (loop).
type sinkFailures struct {
	failed, taken []uint64
}

// ID identifies the producer in sink records.
func (tc *tcpConn) ID() uint64 { return tc.id }

// Session returns the connection's producer session, or nil (see
// SessionProducer).
func (tc *tcpConn) Session() *Session { return tc.sess }

// Done records a completion; runs on the shard's worker, in push order.
func (tc *tcpConn) Done(seq uint64, size int, err error) {
	if err != nil {
		tc.queued.Add(-int64(size))
		tc.rs.mu.Lock()
		if tc.fails == nil {
			tc.fails = &sinkFailures{}
		}
		tc.fails.failed = append(tc.fails.failed, seq)
		tc.rs.mu.Unlock()
		tc.completed(1)
		return
	}
	tc.DoneRun(seq, 1, size)
}

// DoneRun records count successful completions ending with seq, of bytes
// payload bytes (the worker's shortcut for a run of Done calls: a receive's
// worth of frames costs a few atomics, not a few per message).
func (tc *tcpConn) DoneRun(seq uint64, count, bytes int) {
	tc.queued.Add(-int64(bytes))
	tc.doneSeq.Store(seq)
	tc.completed(count)
}

// completed counts completions and queues the connection for the
// reactor's flush if it is not queued already.
func (tc *tcpConn) completed(count int) {
	rs := tc.rs
	tc.doneCount.Add(int64(count))
	if tc.inReady.CompareAndSwap(false, true) {
		rs.mu.Lock()
		rs.ready = append(rs.ready, tc)
		rs.mu.Unlock()
		rs.schedule()
	}
}

// takeDone moves the worker's completions to the loop side (caller holds
// mu). doneSeq is read before failed: a failure recorded before a later
// success is then always seen with it, so its NACK precedes the ACK that
// covers it.
func (tc *tcpConn) takeDone() {
	tc.inReady.Store(false) // a Done from now on queues the connection again
	tc.tDoneSeq = max(tc.tDoneSeq, tc.doneSeq.Load())
	tc.tDoneCount += int(tc.doneCount.Swap(0))
	if f := tc.fails; f != nil {
		f.taken, f.failed = append(f.taken[:0], f.failed...), f.failed[:0]
	}
}

// report writes what takeDone collected: NACKs before the ACK that covers
// them, as the protocol requires.
func (tc *tcpConn) report() {
	st := &tc.rs.s.stats
	tc.inflight -= tc.tDoneCount
	tc.tDoneCount = 0
	var taken []uint64
	if tc.fails != nil {
		taken = tc.fails.taken
		tc.fails.taken = taken[:0]
	}
	if tc.c.Closed() {
		tc.maybeDetach()
		return
	}
	var buf [HeaderSize + 2 + 64]byte
	for _, seq := range taken {
		// Nothing of a failed sink write is stored (the file sink cuts what
		// it wrote back off): the client should go elsewhere and resend.
		tc.send(AppendNack(buf[:0], seq, NackStorageUnavailable, "sink write failed"))
		st.nack(NackStorageUnavailable)
	}
	if len(taken) > 0 {
		tc.nackedInSession()
	}
	if tc.tDoneSeq > tc.acked {
		tc.acked = tc.tDoneSeq
		tc.send(AppendAck(buf[:0], tc.acked))
		st.acks.Add(1)
	}
	if tc.draining && tc.inflight == 0 {
		tc.goaway()
	}
}

func (tc *tcpConn) goaway() {
	var buf [HeaderSize]byte
	tc.send(AppendGoaway(buf[:0], tc.acked))
	_ = tc.c.Close()
}

// send writes a reply; a client that does not read its replies is
// disconnected rather than allowed to grow the server's memory.
func (tc *tcpConn) send(frame []byte) {
	if _, err := tc.c.Write(frame); err != nil {
		if errors.Is(err, reactor.ErrOutputFull) {
			tc.slow = true // OnClose counts it
			tc.rs.s.log.Warn("disconnecting a client that does not read its replies", "conn", tc.id, "output_cap", tc.rs.s.cfg.OutputCap)
			tc.c.Abort()
		}
	}
}

// onData decodes every complete frame in b and returns the bytes used.
// Frames are decoded in place; a frame cut at the end of b is copied into
// the connection's reassembly buffer (part) and completed from the next
// receive, so the reactor never has to accumulate whole receive buffers
// behind it. Consecutive DATA frames are queued as runs (see run): one
// copy and one queue entry for up to a batch of them. The shard's lock is
// held for the whole receive, released before anything else: a reply, a
// refusal, the overload policy.
func (tc *tcpConn) onData(b []byte) int {
	defer tc.publishCounts()
	defer tc.watchFrame()
	consumed := 0
	if tc.skip > 0 {
		consumed = tc.discard(b)
	}
	if len(tc.part) > 0 {
		n, done := tc.completePart(b[consumed:])
		consumed += n
		if !done {
			return consumed
		}
	}
	locked := false
	defer func() {
		if locked {
			tc.rs.unlockPush()
		}
	}()
	var r run
	maxRun := tc.rs.shard.maxRun()
	for consumed < len(b) && tc.skip == 0 && !tc.helloWait && !tc.c.Closed() {
		dec := tc.dec // commit only if the frame is consumed
		f, n, err := dec.Decode(b[consumed:])
		if err == nil && f.Kind == KindData && !tc.draining && f.Seq > tc.floor {
			if r.count == 0 {
				r.start, r.lastSeqBefore = consumed, tc.dec.lastSeq
			}
			r.count++
			r.bytes += len(f.Payload)
			r.lastSeq = f.Seq
			tc.dec = dec
			consumed += n
			if r.count < maxRun {
				continue
			}
		}
		if r.count > 0 {
			// The run ends here (b[r.start:consumed]): queue it before
			// anything after it.
			if used, ok := tc.pushRun(b[r.start:consumed], &r, &locked); !ok {
				return r.start + used // the rest stays unconsumed: reading paused
			}
			r = run{}
			if err == nil && f.Kind == KindData && !tc.draining && f.Seq > tc.floor {
				continue // the frame that ended the run was in it
			}
		}
		if errors.Is(err, ErrNeedMore) {
			// A cut frame: keep it here (or refuse it) and consume it.
			if locked {
				tc.rs.unlockPush()
				locked = false
			}
			tc.keepCut(b[consumed:])
			consumed = len(b)
			break
		}
		if err != nil {
			if locked {
				tc.rs.unlockPush()
				locked = false
			}
			tc.protocolError(err)
			return len(b)
		}
		if !tc.take(f, &locked) {
			return consumed // frame stays unconsumed: reading paused
		}
		tc.dec = dec
		consumed += n
	}
	if r.count > 0 {
		if used, ok := tc.pushRun(b[r.start:consumed], &r, &locked); !ok {
			return r.start + used
		}
	}
	return consumed
}

// run is a run of consecutive DATA frames of one receive being gathered
// for the shard: they start at start in the receive, the decoder's last
// seq before them was lastSeqBefore.
type run struct {
	start, count, bytes    int
	lastSeq, lastSeqBefore uint64
}

// pushRun queues a run of DATA frames (frames holds exactly them): as one
// entry when the shard has room for all, else frame by frame through take,
// which applies the overload policy to those that do not fit. It returns
// how many bytes of frames were taken and false when a frame must wait
// for room (block policy: the decoder is set back to before it).
func (tc *tcpConn) pushRun(frames []byte, r *run, locked *bool) (int, bool) {
	sh := tc.rs.shard
	if !*locked {
		sh.mu.Lock()
		*locked = true
	}
	if sh.pushRunLocked(tc, frames, r.count, r.lastSeq, r.bytes) == nil {
		tc.inflight += r.count
		tc.pushedMsgs += int32(r.count)
		tc.pushedBytes += int32(r.bytes)
		return len(frames), true
	}
	prev := r.lastSeqBefore
	for off := 0; off < len(frames); {
		end := off + 4 + int(binary.BigEndian.Uint32(frames[off:]))
		seq := binary.BigEndian.Uint64(frames[off+8 : off+16])
		f := Frame{Header: Header{Kind: KindData, Seq: seq, PayloadLen: uint32(end - off - HeaderSize)}, Payload: frames[off+HeaderSize : end : end]}
		if !tc.take(f, locked) {
			tc.dec.lastSeq = prev // the frame will be decoded again
			return off, false
		}
		prev = seq
		off = end
	}
	return len(frames), true
}

// watchFrame starts the frame deadline when a frame is left unfinished
// (the client has not sent all of it) and stops it once no frame is: a
// whole frame that waits for queue room waits for the server, not the
// client. Only transitions touch the reactor's timers.
func (tc *tcpConn) watchFrame() {
	timeout := tc.rs.s.cfg.FrameTimeout
	if timeout < 0 {
		return
	}
	// The payload of a refused frame is still the client's to send.
	cut := len(tc.part) > 0 && !wholeFrame(tc.part) || tc.skip > 0
	switch {
	case cut && !tc.frameClock:
		tc.frameClock = true
		tc.c.SetReadTimeoutAt(tc.c.Reactor().Now().Add(timeout))
	case !cut && tc.frameClock:
		tc.frameClock = false
		tc.c.SetReadTimeoutAt(time.Time{})
	}
}

// wholeFrame reports whether p holds exactly one complete frame.
func wholeFrame(p []byte) bool {
	return len(p) >= HeaderSize && len(p) == 4+int(binary.BigEndian.Uint32(p))
}

// completePart feeds the reassembly buffer from b until it holds a whole
// frame, then handles that frame. It returns the bytes of b it used and
// done, true when the frame was handled or refused (part is empty again)
// and onData may go on with the rest of b. Not done: b ran out first, the
// frame must wait for queue room (it stays in part; flush retries it), or
// the frame broke the protocol (the connection is closing).
func (tc *tcpConn) completePart(b []byte) (n int, done bool) {
	for {
		dec := tc.dec
		f, _, err := dec.Decode(tc.part)
		if err == nil {
			locked := false
			ok := tc.take(f, &locked)
			if locked {
				tc.rs.unlockPush()
			}
			if !ok {
				return n, false
			}
			tc.dec = dec
			tc.dropPart()
			return n, true
		}
		if !errors.Is(err, ErrNeedMore) {
			tc.dropPart()
			tc.protocolError(err)
			return len(b), false
		}
		if n == len(b) {
			return n, false
		}
		// The header comes first; once it is whole (and valid: Decode
		// checked it), the frame's size is known.
		want := HeaderSize
		if len(tc.part) >= HeaderSize {
			want = frameLen(tc.part)
		}
		k := min(want-len(tc.part), len(b)-n)
		if want > cap(tc.part) {
			// A large frame whose header completed in a small buffer.
			tc.reserve(want, b[n:n+k])
			n += k
			if tc.part == nil {
				return n, true // refused; onData discards what is left of it
			}
			continue
		}
		tc.part = append(tc.part, b[n:n+k]...)
		n += k
	}
}

// take handles one decoded frame. It returns false only when a DATA frame
// must wait for queue room (block policy; reading is paused). *locked
// tells whether the shard's lock is held: DATA frames keep it for the next
// frame, anything else releases it first.
func (tc *tcpConn) take(f Frame, locked *bool) bool {
	s := tc.rs.s
	sh := tc.rs.shard
	if f.Kind == KindData && !tc.draining && f.Seq > tc.floor {
		if !*locked {
			sh.mu.Lock()
			*locked = true
		}
		err := sh.pushLocked(tc, f.Seq, f.Payload)
		if err == nil {
			tc.inflight++
			tc.pushedMsgs++
			tc.pushedBytes += int32(len(f.Payload))
			return true
		}
		tc.rs.unlockPush()
		*locked = false
		return tc.refused(f, err)
	}
	if *locked {
		tc.rs.unlockPush()
		*locked = false
	}
	switch f.Kind {
	case KindPing:
		var buf [HeaderSize + MaxPingPayload]byte
		pong, _ := AppendPong(buf[:0], f.Seq, f.Payload)
		tc.send(pong)
	case KindHello:
		tc.hello(f)
	case KindData:
		if tc.sess != nil && !tc.draining && tc.sess.Duplicate(f.Seq) {
			// Stored before: covered by an ACK now. Duplicates come
			// before any new DATA (seqs increase), so nothing of this
			// connection is in flight and the ACK is true at once.
			if f.Seq > tc.acked && tc.inflight == 0 {
				var buf [HeaderSize]byte
				tc.acked = f.Seq
				tc.send(AppendAck(buf[:0], f.Seq))
				s.stats.acks.Add(1)
			}
			return true
		}
		var buf [HeaderSize + 2 + 32]byte // draining
		tc.send(AppendNack(buf[:0], f.Seq, NackShuttingDown, "server draining"))
		s.stats.nack(NackShuttingDown)
	}
	return true
}

// hello answers a HELLO: WELCOME at once for a new or detached session;
// for a session attached elsewhere, reading pauses until that connection
// has ended (welcomed is called then, through flush).
func (tc *tcpConn) hello(f Frame) {
	rs := tc.rs
	id, name := f.Hello()
	req := &attachRequest{
		takeover: func() {
			rs.mu.Lock()
			rs.takeovers = append(rs.takeovers, tc)
			rs.mu.Unlock()
			rs.schedule()
		},
		ready: func(sess *Session, seq uint64, err error) {
			rs.mu.Lock()
			rs.welcomes = append(rs.welcomes, welcomeNote{tc, sess, seq, err})
			rs.mu.Unlock()
			rs.schedule()
		},
	}
	sess, seq, pending, err := rs.s.disp.sessions.attach(id, string(name), req)
	if pending {
		tc.helloWait = true
		tc.c.PauseReading() // what follows the HELLO waits for the WELCOME
		return
	}
	tc.welcomed(sess, seq, err)
}

// welcomed finishes a HELLO: it sends WELCOME and resumes reading, or
// refuses the HELLO. A connection that closed while it waited gives the
// session back at once.
func (tc *tcpConn) welcomed(sess *Session, seq uint64, err error) {
	waited := tc.helloWait
	tc.helloWait = false
	if err != nil {
		if errors.Is(err, ErrSessionTakenOver) {
			// A newer HELLO for the same session came while this one
			// waited: this connection never had it.
			if !tc.c.Closed() {
				tc.goaway()
			}
			return
		}
		tc.protocolError(err)
		return
	}
	tc.sess, tc.floor = sess, seq
	if tc.c.Closed() {
		tc.maybeDetach()
		return
	}
	var buf [HeaderSize + SessionIDSize]byte
	tc.send(AppendWelcome(buf[:0], seq, sess.ID()))
	if waited && !tc.draining {
		tc.c.ResumeReading() // presents what followed the HELLO
	}
}

// endSession ends a connection whose session a newer HELLO took over:
// like a shutdown, it stops reading, and GOAWAY follows once what it
// queued is acknowledged; the session is detached after that.
func (tc *tcpConn) endSession() {
	if tc.c.Closed() || tc.draining {
		return
	}
	tc.draining = true
	tc.c.PauseReading()
	if tc.inflight == 0 {
		tc.goaway()
	}
}

// nackedInSession ends a session's connection after a NACK 3, 4 or 6 for
// one of its DATA frames: nothing after a refused record may be accepted,
// or the session's seq would pass a record that is not stored. The client
// resends from WELCOME's seq on a new connection.
func (tc *tcpConn) nackedInSession() {
	if tc.sess != nil {
		tc.endSession()
	}
}

// maybeDetach gives the session back once the connection is closed and
// every record it queued has been reported.
func (tc *tcpConn) maybeDetach() {
	if tc.sess != nil && !tc.detached && tc.inflight == 0 && tc.c.Closed() {
		tc.detached = true
		tc.sess.Detach()
	}
}

// protocolError answers a frame that broke the protocol and closes.
func (tc *tcpConn) protocolError(err error) {
	s := tc.rs.s
	var pe *ProtocolError
	if errors.As(err, &pe) {
		var buf [HeaderSize + 2 + MaxNackReason]byte
		tc.send(AppendNack(buf[:0], pe.Seq, pe.Code, pe.Reason))
		s.stats.nack(pe.Code)
		// Debug, not Info: a misbehaving client fleet would flood the
		// log; gyre_ingest_nacks_total counts every one.
		s.log.Debug("protocol error; closing", "conn", tc.id, "code", pe.Code.String(), "seq", pe.Seq, "reason", pe.Reason)
	}
	_ = tc.c.Close() // flushes the NACK first
}

// retryPart tries again the whole frame that waits in part for queue room
// (flush, when room freed up). It reports whether reading may resume.
func (tc *tcpConn) retryPart() bool {
	if len(tc.part) == 0 {
		return true
	}
	tc.completePart(nil)
	tc.publishCounts()
	return !tc.blocked && !tc.c.Closed()
}

// publishCounts adds what onData pushed to the shared counters: once per
// receive rather than three atomic adds per message.
func (tc *tcpConn) publishCounts() {
	if tc.pushedMsgs == 0 {
		return
	}
	st := &tc.rs.s.stats
	tc.queued.Add(int64(tc.pushedBytes))
	st.messagesIn.Add(uint64(tc.pushedMsgs))
	st.bytesIn.Add(uint64(tc.pushedBytes))
	tc.pushedMsgs, tc.pushedBytes = 0, 0
}

// refused applies the overload policy to a DATA frame the shard did not
// take (err from pushLocked). It returns false only under the block
// policy, when the frame must wait.
func (tc *tcpConn) refused(f Frame, err error) bool {
	s := tc.rs.s
	var buf [HeaderSize + 2 + 32]byte
	if !errors.Is(err, ErrQueueFull) {
		tc.send(AppendNack(buf[:0], f.Seq, NackShuttingDown, "server draining"))
		s.stats.nack(NackShuttingDown)
		tc.nackedInSession()
		return true
	}
	s.stats.backpressure.Add(1)
	switch s.cfg.Overload {
	case OverloadBlock:
		if !tc.blocked {
			tc.blocked = true
			tc.rs.blocked = append(tc.rs.blocked, tc)
		}
		tc.c.PauseReading() // the shard notifies when room frees up
		return false
	case OverloadShed:
		victim := tc.rs.biggest()
		if victim != nil {
			s.stats.shed.Add(1)
			s.log.Warn("shedding the connection with the most queued bytes", "conn", victim.id, "queued_bytes", victim.queued.Load())
			victim.shed = true // OnClose counts it
			victim.c.Abort()
			if victim == tc {
				return true
			}
		}
	}
	tc.send(AppendNack(buf[:0], f.Seq, NackOverloaded, "queue full"))
	s.stats.nack(NackOverloaded)
	tc.nackedInSession()
	return true
}

// forget removes a closed connection from conns (the last one takes its
// slot).
func (rs *reactorState) forget(tc *tcpConn) {
	last := len(rs.conns) - 1
	moved := rs.conns[last]
	rs.conns[tc.slot] = moved
	moved.slot = tc.slot
	rs.conns[last] = nil
	rs.conns = rs.conns[:last]
}

// biggest returns the open connection with the most queued bytes.
func (rs *reactorState) biggest() *tcpConn {
	var best *tcpConn
	for _, tc := range rs.conns {
		if tc.c.Closed() {
			continue
		}
		if best == nil || tc.queued.Load() > best.queued.Load() {
			best = tc
		}
	}
	return best
}
