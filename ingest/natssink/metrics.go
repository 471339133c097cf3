package natssink

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a record was not stored, as the metrics label them.
const (
	reasonNotConnected = "not_connected" // refused at once: no connection to NATS
	reasonTimeout      = "timeout"       // no PubAck within the publish timeout
	reasonDisconnected = "disconnected"  // the connection went down before the PubAck
	reasonNoStream     = "no_stream"     // no stream answered on the subject
	reasonRefused      = "refused"       // JetStream answered with an error
	reasonOther        = "other"
)

var reasons = [...]string{reasonNotConnected, reasonTimeout, reasonDisconnected, reasonNoStream, reasonRefused, reasonOther}

// counters are updated by Writes and the connection's callbacks; atomics
// and a histogram, safe for concurrent use.
type counters struct {
	published, duplicates atomic.Uint64
	connects              atomic.Uint64
	errors                map[string]*atomic.Uint64 // by reason; fixed after init
	pubAck                prometheus.Histogram
}

func (c *counters) init() {
	c.errors = make(map[string]*atomic.Uint64, len(reasons))
	for _, r := range reasons {
		c.errors[r] = new(atomic.Uint64)
	}
	c.pubAck = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "gyre_jetstream_puback_seconds",
		Help:    "Time from publishing a record to the sink seeing its PubAck (records are published in batches and their PubAcks read in order).",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18), // 50 µs … 6.5 s
	})
}

// Stats is a snapshot of the sink's counters.
type Stats struct {
	// Connected says whether the connection to NATS is up now.
	Connected bool
	// Published counts records JetStream PubAcked (stored, or found
	// stored already), Duplicates those of them whose PubAck said
	// duplicate (Nats-Msg-Id seen within the stream's duplicate window).
	Published, Duplicates uint64
	// Errors counts records not stored, by reason: not_connected (the
	// Write was refused at once; every record of it counts), timeout,
	// disconnected, no_stream, refused (JetStream answered with an
	// error), other. The records a Write did not publish after an earlier
	// one failed are not counted.
	Errors map[string]uint64
	// InFlight is the number of records waiting for their PubAck now.
	InFlight int
	// Connects counts the times the connection came up (the first one
	// included).
	Connects uint64
}

// Stats returns a snapshot of the counters. Safe for concurrent use.
func (s *Sink) Stats() Stats {
	st := Stats{
		Connected:  s.nc.IsConnected(),
		Published:  s.stats.published.Load(),
		Duplicates: s.stats.duplicates.Load(),
		Errors:     make(map[string]uint64),
		InFlight:   len(s.slots),
		Connects:   s.stats.connects.Load(),
	}
	for r, v := range s.stats.errors {
		if n := v.Load(); n > 0 {
			st.Errors[r] = n
		}
	}
	return st
}

type collector struct{ s *Sink }

var (
	descConnected = prometheus.NewDesc("gyre_jetstream_connected",
		"1 while the JetStream sink is connected to NATS, 0 while it is not (it reconnects by itself; records get NACK 6 meanwhile).", nil, nil)
	descPublishes = prometheus.NewDesc("gyre_jetstream_publishes_total",
		"Records JetStream PubAcked (stored, or already stored: see gyre_jetstream_duplicates_total).", nil, nil)
	descDuplicates = prometheus.NewDesc("gyre_jetstream_duplicates_total",
		"PubAcks marked duplicate: a record whose Nats-Msg-Id the stream had stored within its duplicate window (a resend after a NACK 6 or a reconnect).", nil, nil)
	descErrors = prometheus.NewDesc("gyre_jetstream_publish_errors_total",
		"Records not stored, by reason: not_connected, timeout (no PubAck within the publish timeout), disconnected, no_stream, refused (JetStream answered with an error), other. Their batches are NACKed with code 6.", []string{"reason"}, nil)
	descInFlight = prometheus.NewDesc("gyre_jetstream_inflight",
		"Records published and waiting for their PubAck.", nil, nil)
	descConnects = prometheus.NewDesc("gyre_jetstream_connects_total",
		"Times the connection to NATS came up (the first time included).", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnected, descPublishes, descDuplicates, descErrors, descInFlight, descConnects} {
		ch <- d
	}
	c.s.stats.pubAck.Describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := &c.s.stats
	connected := 0.0
	if c.s.nc.IsConnected() {
		connected = 1
	}
	ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, connected)
	ch <- prometheus.MustNewConstMetric(descPublishes, prometheus.CounterValue, float64(st.published.Load()))
	ch <- prometheus.MustNewConstMetric(descDuplicates, prometheus.CounterValue, float64(st.duplicates.Load()))
	for _, r := range reasons {
		ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(st.errors[r].Load()), r)
	}
	ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(len(c.s.slots)))
	ch <- prometheus.MustNewConstMetric(descConnects, prometheus.CounterValue, float64(st.connects.Load()))
	st.pubAck.Collect(ch)
}
