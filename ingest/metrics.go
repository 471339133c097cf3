package ingest

import (
	"errors"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gyre-io/gyre/reactor"
	"github.com/prometheus/client_golang/prometheus"
)

// CloseCause is why a TCP connection closed: the key of Stats.ClosedBy,
// and (String) the cause label of gyre_ingest_connections_closed_total.
type CloseCause int

const (
	CloseClient       CloseCause = iota // the client closed (EOF)
	CloseServer                         // closed by the server (protocol error, GOAWAY)
	CloseShutdown                       // Shutdown or Close
	CloseIdle                           // ServerConfig.IdleTimeout
	CloseReset                          // a socket error (reset by the peer, ...)
	CloseShed                           // the shed overload policy (ErrShed)
	CloseSlowReader                     // the client did not read its replies (ErrSlowReader)
	CloseInputLimit                     // unconsumed input over the reactor's bound
	CloseFrameTimeout                   // a frame not finished within ServerConfig.FrameTimeout
	CloseOther                          // anything else
	numCloseCauses
)

var closeCauseNames = [numCloseCauses]string{"client", "server", "shutdown", "idle", "reset", "shed", "slow_reader", "input_limit", "frame_timeout", "other"}

// String returns the cause's metric label ("client", "shed", ...).
func (c CloseCause) String() string {
	if c >= 0 && c < numCloseCauses {
		return closeCauseNames[c]
	}
	return "CloseCause(" + strconv.Itoa(int(c)) + ")"
}

// serverCounters are written on the reactors and workers and read by the
// Prometheus collector; atomics only, so reading never stops anything.
type serverCounters struct {
	connsActive, connsAccepted atomic.Int64
	refusedMaxConns            atomic.Uint64
	closedBy                   [numCloseCauses]atomic.Uint64
	messagesIn, bytesIn        atomic.Uint64
	acks                       atomic.Uint64
	nacks                      [NackStorageUnavailable + 1]atomic.Uint64
	backpressure, shed         atomic.Uint64
	slowReaders                atomic.Uint64
	sinkLatency                atomic.Pointer[prometheus.Histogram]
	sinkErrors                 atomic.Uint64
	frameRefusals              atomic.Uint64 // large frames refused for want of frame memory (reassembly.go)
}

func (st *serverCounters) nack(code NackCode) {
	if int(code) < len(st.nacks) {
		st.nacks[code].Add(1)
	}
}

func (st *serverCounters) observeBatch(d time.Duration, _ int, err error) {
	if err != nil {
		st.sinkErrors.Add(1)
	}
	if h := st.sinkLatency.Load(); h != nil {
		(*h).Observe(d.Seconds())
	}
}

func (st *serverCounters) closed(cause error) {
	c := CloseOther
	var op interface{ Timeout() bool }
	switch {
	case cause == nil:
		c = CloseServer
	case errors.Is(cause, io.EOF):
		c = CloseClient
	case errors.Is(cause, reactor.ErrServerClosed):
		c = CloseShutdown
	case errors.Is(cause, reactor.ErrIdleTimeout):
		c = CloseIdle
	case errors.Is(cause, ErrShed):
		c = CloseShed
	case errors.Is(cause, ErrSlowReader), errors.Is(cause, reactor.ErrOutputFull), errors.Is(cause, reactor.ErrWriteTimeout):
		c = CloseSlowReader
		st.slowReaders.Add(1)
	case errors.Is(cause, reactor.ErrInputLimit):
		c = CloseInputLimit
	case errors.Is(cause, reactor.ErrReadTimeout):
		c = CloseFrameTimeout // the only read deadline the server sets
	case errors.As(cause, &op):
		c = CloseReset
	}
	st.closedBy[c].Add(1)
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	ConnsActive, ConnsAccepted int64
	// ConnsRefused: connections closed at once because MaxConns were
	// open. AcceptErrors: accepts that failed (EMFILE, ENFILE, ...).
	ConnsRefused, AcceptErrors uint64
	ClosedBy                   map[CloseCause]uint64
	MessagesIn, BytesIn        uint64
	Acks                       uint64
	Nacks                      map[NackCode]uint64
	Backpressure, Shed         uint64
	SlowReaders, SinkErrors    uint64
	// FrameMemory is the frame memory held now (TCP and QUIC together;
	// see DispatcherConfig.FrameMemory). FrameRefusals counts large TCP
	// frames refused with NACK 3 for want of it.
	FrameMemory   int64
	FrameRefusals uint64
	// Sessions are the producer-session table's figures (TCP and QUIC
	// together).
	Sessions SessionStats
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := &s.stats
	out := Stats{
		ConnsActive:   st.connsActive.Load(),
		ConnsAccepted: st.connsAccepted.Load(),
		ConnsRefused:  st.refusedMaxConns.Load(),
		AcceptErrors:  s.acc.Stats().AcceptErrors,
		ClosedBy:      map[CloseCause]uint64{},
		MessagesIn:    st.messagesIn.Load(),
		BytesIn:       st.bytesIn.Load(),
		Acks:          st.acks.Load(),
		Nacks:         map[NackCode]uint64{},
		Backpressure:  st.backpressure.Load(),
		Shed:          st.shed.Load(),
		SlowReaders:   st.slowReaders.Load(),
		SinkErrors:    st.sinkErrors.Load(),
		FrameMemory:   s.frames.Held(),
		FrameRefusals: st.frameRefusals.Load(),
		Sessions:      s.disp.sessions.Stats(),
	}
	for c := range numCloseCauses {
		if v := st.closedBy[c].Load(); v > 0 {
			out.ClosedBy[c] = v
		}
	}
	for code := NackMalformed; code <= NackStorageUnavailable; code++ {
		if v := st.nacks[code].Load(); v > 0 && code.valid() {
			out.Nacks[code] = v
		}
	}
	return out
}

// Collector returns a Prometheus collector for the server's metrics
// (gyre_ingest_*). Register it once.
func (s *Server) Collector() prometheus.Collector {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "gyre_ingest_sink_write_seconds",
		Help:    "Time one sink write (a batch) took, fsync included for the file sink.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
	})
	s.stats.sinkLatency.Store(&h)
	return &collector{s: s, sinkLatency: h}
}

type collector struct {
	s           *Server
	sinkLatency prometheus.Histogram
}

var (
	descConns        = prometheus.NewDesc("gyre_ingest_connections_active", "Open TCP connections.", nil, nil)
	descAccepted     = prometheus.NewDesc("gyre_ingest_connections_accepted_total", "TCP connections accepted.", nil, nil)
	descRefused      = prometheus.NewDesc("gyre_ingest_connections_refused_total", "TCP connections closed as soon as accepted, by reason (max_conns).", []string{"reason"}, nil)
	descAcceptErrors = prometheus.NewDesc("gyre_ingest_accept_errors_total", "TCP accepts that failed (EMFILE, ENFILE, ENOMEM, ...); the acceptor backs off and retries.", nil, nil)
	descClosed       = prometheus.NewDesc("gyre_ingest_connections_closed_total", "TCP connections closed, by cause.", []string{"cause"}, nil)
	descMessages     = prometheus.NewDesc("gyre_ingest_messages_total", "DATA messages queued for the sink.", nil, nil)
	descBytes        = prometheus.NewDesc("gyre_ingest_bytes_total", "DATA payload bytes queued for the sink.", nil, nil)
	descAcks         = prometheus.NewDesc("gyre_ingest_acks_total", "ACK frames sent.", nil, nil)
	descNacks        = prometheus.NewDesc("gyre_ingest_nacks_total", "NACK frames sent, by code.", []string{"code"}, nil)
	descQueueDepth   = prometheus.NewDesc("gyre_ingest_queue_messages", "Messages waiting in a dispatcher shard.", []string{"shard"}, nil)
	descQueueBytes   = prometheus.NewDesc("gyre_ingest_queue_bytes", "Payload bytes waiting in a dispatcher shard.", []string{"shard"}, nil)
	descBackpressure = prometheus.NewDesc("gyre_ingest_backpressure_events_total", "Pushes refused by a full shard queue (then blocked, rejected or shed).", nil, nil)
	descShed         = prometheus.NewDesc("gyre_ingest_shed_total", "Connections closed by the shed policy.", nil, nil)
	descSlow         = prometheus.NewDesc("gyre_ingest_slow_readers_total", "Connections closed because the client did not read its acks.", nil, nil)
	descSinkErrors   = prometheus.NewDesc("gyre_ingest_sink_errors_total", "Sink writes that failed (their messages were NACKed).", nil, nil)
	descFrameMem     = prometheus.NewDesc("gyre_ingest_frame_memory_bytes", "Memory held by frames arriving in pieces that are larger than a receive buffer, TCP and QUIC together.", nil, nil)
	descFrameMemMax  = prometheus.NewDesc("gyre_ingest_frame_memory_limit_bytes", "The frame memory budget (--frame-memory).", nil, nil)
	descFrameRefused = prometheus.NewDesc("gyre_ingest_frame_memory_refusals_total", "Large TCP frames refused with NACK 3 because frame memory was used up.", nil, nil)
	descSessions     = prometheus.NewDesc("gyre_ingest_sessions", "Producer sessions, attached to a connection or detached (kept for --session-ttl, at most --max-sessions).", []string{"state"}, nil)
	descSessionsNew  = prometheus.NewDesc("gyre_ingest_session_hellos_total", "HELLOs answered with WELCOME, by what they did: created a session, resumed a detached one, or took one over from a live connection.", []string{"result"}, nil)
	descSessionsGone = prometheus.NewDesc("gyre_ingest_sessions_dropped_total", "Detached sessions dropped, by reason: expired (--session-ttl) or evicted (--max-sessions, oldest first).", []string{"reason"}, nil)
	descDuplicates   = prometheus.NewDesc("gyre_ingest_duplicates_total", "DATA frames not stored again because their session had accepted their seq before (acknowledged as stored).", nil, nil)
	descBufExhausted = prometheus.NewDesc("gyre_reactor_buffer_ring_exhausted_total", "Receives that found the reactor's buffer ring empty.", nil, nil)
	descCQOverflow   = prometheus.NewDesc("gyre_reactor_cq_overflow_total", "Waits that found io_uring completions overflowed.", nil, nil)
	descInboxDepth   = prometheus.NewDesc("gyre_reactor_inbox_depth", "Tasks waiting in reactor inboxes.", nil, nil)
	descBytesOut     = prometheus.NewDesc("gyre_reactor_bytes_out_total", "Bytes sent by the reactors.", nil, nil)
	descEngine       = prometheus.NewDesc("gyre_engine_info", "The engine the reactors run on (always 1; the engine is the label).", []string{"engine"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConns, descAccepted, descRefused, descAcceptErrors, descClosed, descMessages, descBytes, descAcks,
		descNacks, descQueueDepth, descQueueBytes, descBackpressure, descShed, descSlow, descSinkErrors,
		descFrameMem, descFrameMemMax, descFrameRefused, descSessions, descSessionsNew, descSessionsGone, descDuplicates, descBufExhausted, descCQOverflow, descInboxDepth, descBytesOut, descEngine} {
		ch <- d
	}
	c.sinkLatency.Describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := &c.s.stats
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descConns, float64(st.connsActive.Load()))
	counter(descAccepted, uint64(st.connsAccepted.Load()))
	counter(descRefused, st.refusedMaxConns.Load(), "max_conns")
	counter(descAcceptErrors, c.s.acc.Stats().AcceptErrors)
	for c := range numCloseCauses {
		counter(descClosed, st.closedBy[c].Load(), c.String())
	}
	counter(descMessages, st.messagesIn.Load())
	counter(descBytes, st.bytesIn.Load())
	counter(descAcks, st.acks.Load())
	for code := NackMalformed; code <= NackStorageUnavailable; code++ {
		if code.valid() {
			counter(descNacks, st.nacks[code].Load(), code.String())
		}
	}
	for _, sh := range c.s.disp.Shards() {
		id := strconv.Itoa(sh.ID())
		gauge(descQueueDepth, float64(sh.Depth()), id)
		gauge(descQueueBytes, float64(sh.Bytes()), id)
	}
	counter(descBackpressure, st.backpressure.Load())
	counter(descShed, st.shed.Load())
	counter(descSlow, st.slowReaders.Load())
	counter(descSinkErrors, st.sinkErrors.Load())
	gauge(descFrameMem, float64(c.s.frames.Held()))
	gauge(descFrameMemMax, float64(c.s.frames.Size()))
	counter(descFrameRefused, st.frameRefusals.Load())
	ss := c.s.disp.sessions.Stats()
	gauge(descSessions, float64(ss.Attached), "attached")
	gauge(descSessions, float64(ss.Detached), "detached")
	counter(descSessionsNew, ss.Created, "created")
	counter(descSessionsNew, ss.Resumed, "resumed")
	counter(descSessionsNew, ss.Takeovers, "taken_over")
	counter(descSessionsGone, ss.Expired, "expired")
	counter(descSessionsGone, ss.Evicted, "evicted")
	counter(descDuplicates, ss.Duplicates)
	rstats := c.s.group.Stats()
	counter(descBufExhausted, rstats.BufExhausted)
	counter(descCQOverflow, rstats.CQOverflow)
	gauge(descInboxDepth, float64(rstats.InboxDepth))
	counter(descBytesOut, rstats.BytesOut)
	gauge(descEngine, 1, c.s.group.Engine().String())
	c.sinkLatency.Collect(ch)
}
