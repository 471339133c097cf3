package quicbridge

import (
	"errors"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
)

// CloseCause is why a QUIC connection closed: the key of Stats.ClosedBy,
// and (String) the cause label of gyre_quic_connections_closed_total.
type CloseCause int

const (
	CloseClient    CloseCause = iota // the client closed the connection
	CloseIdle                        // idle timeout (also: a client that vanished)
	CloseShutdown                    // Shutdown or Close
	CloseShed                        // the shed overload policy
	CloseHandshake                   // the handshake failed or timed out
	CloseReset                       // stateless reset
	CloseTransport                   // a QUIC transport error
	CloseOther                       // anything else
	numCloseCauses
)

var closeCauseNames = [numCloseCauses]string{"client", "idle", "shutdown", "shed", "handshake", "reset", "transport", "other"}

// String returns the cause's metric label ("client", "shed", ...).
func (c CloseCause) String() string {
	if c >= 0 && c < numCloseCauses {
		return closeCauseNames[c]
	}
	return "CloseCause(" + strconv.Itoa(int(c)) + ")"
}

// classify maps the error that ended a connection to a cause.
func classify(err error) CloseCause {
	var (
		app   *quic.ApplicationError
		trans *quic.TransportError
		idle  *quic.IdleTimeoutError
		hs    *quic.HandshakeTimeoutError
		reset *quic.StatelessResetError
	)
	switch {
	case errors.As(err, &app):
		switch {
		case app.Remote:
			return CloseClient
		case app.ErrorCode == CodeShed:
			return CloseShed
		case app.ErrorCode == CodeNoError, app.ErrorCode == CodeServerClosed:
			return CloseShutdown
		}
	case errors.As(err, &idle):
		return CloseIdle
	case errors.As(err, &hs):
		return CloseHandshake
	case errors.As(err, &reset):
		return CloseReset
	case errors.Is(err, quic.ErrTransportClosed), errors.Is(err, quic.ErrServerClosed):
		return CloseShutdown
	case errors.As(err, &trans):
		if trans.Remote && trans.ErrorCode == quic.NoError {
			return CloseClient
		}
		return CloseTransport
	}
	return CloseOther
}

// counters are written by the bridge's goroutines and the shard workers and
// read by Stats and the collector; atomics only.
type counters struct {
	connsActive                  atomic.Int64
	connsAccepted, connsRefused  atomic.Uint64
	connsRefusedQueue            atomic.Uint64
	closedBy                     [numCloseCauses]atomic.Uint64
	streamsActive                atomic.Int64
	streamsOpened                atomic.Uint64
	zeroRTTAccepted, zeroRTTRej  atomic.Uint64
	messagesIn, bytesIn, acks    atomic.Uint64
	nacks                        [ingest.NackStorageUnavailable + 1]atomic.Uint64
	queueFull, bufferWaits, shed atomic.Uint64
	largeBytes                   atomic.Int64 // frame memory held by this bridge's streams
	slowReaders, frameTimeouts   atomic.Uint64
	rttAtClose                   atomic.Pointer[prometheus.Histogram]
}

// nackCodes are the NACK codes the bridge counts (every code ingest-v1
// defines).
var nackCodes = [...]ingest.NackCode{ingest.NackMalformed, ingest.NackTooLarge, ingest.NackOverloaded,
	ingest.NackShuttingDown, ingest.NackUnknownSession, ingest.NackStorageUnavailable}

func (st *counters) nack(code ingest.NackCode) {
	if int(code) < len(st.nacks) {
		st.nacks[code].Add(1)
	}
}

// Stats is a snapshot of the bridge's counters.
type Stats struct {
	// ConnsActive is the number of connections being served;
	// ConnsAccepted and ConnsRefused count since Listen (refused: over
	// MaxConns, politely or statelessly). ConnsRefusedQueue counts
	// connections quic-go closed with CONNECTION_REFUSED before the
	// bridge could accept them: the handshake completed while its accept
	// queue (32) was full, or while the bridge was closing. ClosedBy counts closed
	// connections by cause.
	ConnsActive                 int64
	ConnsAccepted, ConnsRefused uint64
	ConnsRefusedQueue           uint64
	ClosedBy                    map[CloseCause]uint64
	// StreamsActive is the number of streams being served; StreamsOpened
	// counts them since Listen.
	StreamsActive int64
	StreamsOpened uint64
	// ZeroRTTAccepted counts connections that used 0-RTT; ZeroRTTRejected
	// those whose client offered it and did not get it (unknown or
	// expired ticket, changed limits, or Disable0RTT).
	ZeroRTTAccepted, ZeroRTTRejected uint64
	// MessagesIn and BytesIn count DATA frames (payload bytes) queued for
	// the sink; Acks the ACK frames sent; Nacks the NACK frames by code.
	MessagesIn, BytesIn, Acks uint64
	Nacks                     map[ingest.NackCode]uint64
	// QueueFull counts DATA frames that found their shard queue full (then
	// blocked, rejected or shed, by the Overload policy); BufferWaits the
	// times a stream had to wait for buffer memory. Both are flow-control
	// backpressure events: the stream stops reading meanwhile (under
	// block). Shed counts connections closed by the shed policy.
	QueueFull, BufferWaits, Shed uint64
	// SlowReaders counts streams reset because the client did not read its
	// replies; FrameTimeouts streams reset because a frame did not arrive
	// in full within IdleTimeout.
	SlowReaders, FrameTimeouts uint64
	// BufferBytes is the read buffer memory held now; LargeFrameBytes the
	// share of the dispatcher's frame memory the bridge's streams hold.
	BufferBytes, LargeFrameBytes int64
}

// Stats returns a snapshot of the counters. Safe for concurrent use.
func (b *Bridge) Stats() Stats {
	st := &b.stats
	out := Stats{
		ConnsActive:       st.connsActive.Load(),
		ConnsAccepted:     st.connsAccepted.Load(),
		ConnsRefused:      st.connsRefused.Load(),
		ConnsRefusedQueue: st.connsRefusedQueue.Load(),
		ClosedBy:          map[CloseCause]uint64{},
		StreamsActive:     st.streamsActive.Load(),
		StreamsOpened:     st.streamsOpened.Load(),
		ZeroRTTAccepted:   st.zeroRTTAccepted.Load(),
		ZeroRTTRejected:   st.zeroRTTRej.Load(),
		MessagesIn:        st.messagesIn.Load(),
		BytesIn:           st.bytesIn.Load(),
		Acks:              st.acks.Load(),
		Nacks:             map[ingest.NackCode]uint64{},
		QueueFull:         st.queueFull.Load(),
		BufferWaits:       st.bufferWaits.Load(),
		Shed:              st.shed.Load(),
		SlowReaders:       st.slowReaders.Load(),
		FrameTimeouts:     st.frameTimeouts.Load(),
		BufferBytes:       b.bufBudget.held(),
		LargeFrameBytes:   st.largeBytes.Load(),
	}
	for c := range numCloseCauses {
		if v := st.closedBy[c].Load(); v > 0 {
			out.ClosedBy[c] = v
		}
	}
	for _, code := range nackCodes {
		if v := st.nacks[code].Load(); v > 0 {
			out.Nacks[code] = v
		}
	}
	return out
}

// Collector returns a Prometheus collector for the bridge's metrics
// (gyre_quic_*). Register it once.
func (b *Bridge) Collector() prometheus.Collector {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "gyre_quic_connection_rtt_at_close_seconds",
		Help:    "Smoothed RTT of each QUIC connection when it closed.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
	})
	b.stats.rttAtClose.Store(&h)
	return &collector{b: b, rttAtClose: h}
}

type collector struct {
	b          *Bridge
	rttAtClose prometheus.Histogram
}

var (
	descConns        = prometheus.NewDesc("gyre_quic_connections_active", "Open QUIC connections.", nil, nil)
	descAccepted     = prometheus.NewDesc("gyre_quic_connections_accepted_total", "QUIC connections accepted.", nil, nil)
	descRefused      = prometheus.NewDesc("gyre_quic_connections_refused_total", "QUIC connections refused, by reason: max_conns (MaxConns reached) or accept_queue (quic-go closed a connection whose handshake completed while its accept queue of 32 was full, or while the server was closing).", []string{"reason"}, nil)
	descClosed       = prometheus.NewDesc("gyre_quic_connections_closed_total", "QUIC connections closed, by cause.", []string{"cause"}, nil)
	descStreams      = prometheus.NewDesc("gyre_quic_streams_active", "Open QUIC streams.", nil, nil)
	descStreamsTotal = prometheus.NewDesc("gyre_quic_streams_opened_total", "QUIC streams opened by clients.", nil, nil)
	desc0RTT         = prometheus.NewDesc("gyre_quic_0rtt_total", "Connections whose client offered 0-RTT, by result (accepted or rejected).", []string{"result"}, nil)
	descMessages     = prometheus.NewDesc("gyre_quic_messages_total", "DATA messages queued for the sink over QUIC.", nil, nil)
	descBytes        = prometheus.NewDesc("gyre_quic_bytes_total", "DATA payload bytes queued for the sink over QUIC.", nil, nil)
	descAcks         = prometheus.NewDesc("gyre_quic_acks_total", "ACK frames sent over QUIC.", nil, nil)
	descNacks        = prometheus.NewDesc("gyre_quic_nacks_total", "NACK frames sent over QUIC, by code.", []string{"code"}, nil)
	descBackpressure = prometheus.NewDesc("gyre_quic_backpressure_events_total",
		"Times a stream stopped reading, leaving QUIC flow control to push back: queue_full (shard queue full; under reject and shed the frame was refused instead), buffer_memory (waited for a read buffer).", []string{"reason"}, nil)
	descShed      = prometheus.NewDesc("gyre_quic_shed_total", "QUIC connections closed by the shed overload policy.", nil, nil)
	descSlow      = prometheus.NewDesc("gyre_quic_slow_readers_total", "QUIC streams reset because the client did not read its replies.", nil, nil)
	descTimeouts  = prometheus.NewDesc("gyre_quic_frame_timeouts_total", "QUIC streams reset because a frame did not arrive in full within the idle timeout.", nil, nil)
	descBufBytes  = prometheus.NewDesc("gyre_quic_buffer_bytes", "Stream buffer memory in use, by kind: read buffers, and large_frame, the share of the frame memory (gyre_ingest_frame_memory_bytes, shared with TCP) that streams hold.", []string{"kind"}, nil)
	descBufLimit  = prometheus.NewDesc("gyre_quic_buffer_limit_bytes", "Stream buffer memory limit (kind=read; large frames are bounded by gyre_ingest_frame_memory_limit_bytes).", []string{"kind"}, nil)
	descRTT       = prometheus.NewDesc("gyre_quic_connection_rtt_seconds", "Smoothed RTT over the open QUIC connections, computed at scrape time.", nil, nil)
	descMinRTTMax = prometheus.NewDesc("gyre_quic_connection_rtt_max_seconds", "Largest smoothed RTT among the open QUIC connections.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConns, descAccepted, descRefused, descClosed, descStreams, descStreamsTotal,
		desc0RTT, descMessages, descBytes, descAcks, descNacks, descBackpressure, descShed, descSlow, descTimeouts,
		descBufBytes, descBufLimit, descRTT, descMinRTTMax} {
		ch <- d
	}
	c.rttAtClose.Describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	b := c.b
	st := &b.stats
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descConns, float64(st.connsActive.Load()))
	counter(descAccepted, st.connsAccepted.Load())
	counter(descRefused, st.connsRefused.Load(), "max_conns")
	counter(descRefused, st.connsRefusedQueue.Load(), "accept_queue")
	for c := range numCloseCauses {
		counter(descClosed, st.closedBy[c].Load(), c.String())
	}
	gauge(descStreams, float64(st.streamsActive.Load()))
	counter(descStreamsTotal, st.streamsOpened.Load())
	counter(desc0RTT, st.zeroRTTAccepted.Load(), "accepted")
	counter(desc0RTT, st.zeroRTTRej.Load(), "rejected")
	counter(descMessages, st.messagesIn.Load())
	counter(descBytes, st.bytesIn.Load())
	counter(descAcks, st.acks.Load())
	for _, code := range nackCodes {
		counter(descNacks, st.nacks[code].Load(), code.String())
	}
	counter(descBackpressure, st.queueFull.Load(), "queue_full")
	counter(descBackpressure, st.bufferWaits.Load(), "buffer_memory")
	counter(descShed, st.shed.Load())
	counter(descSlow, st.slowReaders.Load())
	counter(descTimeouts, st.frameTimeouts.Load())
	gauge(descBufBytes, float64(b.bufBudget.held()), "read")
	gauge(descBufBytes, float64(st.largeBytes.Load()), "large_frame")
	gauge(descBufLimit, float64(b.bufBudget.size), "read")

	rtts := b.rtts()
	var sum float64
	for _, r := range rtts {
		sum += r.Seconds()
	}
	quantiles := map[float64]float64{}
	if len(rtts) > 0 {
		slices.Sort(rtts)
		for _, q := range []float64{0.5, 0.9, 0.99} {
			quantiles[q] = rtts[min(int(q*float64(len(rtts))), len(rtts)-1)].Seconds()
		}
		gauge(descMinRTTMax, rtts[len(rtts)-1].Seconds())
	} else {
		gauge(descMinRTTMax, 0)
	}
	ch <- prometheus.MustNewConstSummary(descRTT, uint64(len(rtts)), sum, quantiles)
	c.rttAtClose.Collect(ch)
}

// observeClose records a closed connection's RTT in the histogram, if the
// collector exists.
func (st *counters) observeClose(rtt time.Duration) {
	if h := st.rttAtClose.Load(); h != nil && rtt > 0 {
		(*h).Observe(rtt.Seconds())
	}
}
