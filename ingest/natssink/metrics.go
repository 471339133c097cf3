package natssink

import (
	"sync/atomic"
	"time"

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

	// The session bucket.
	sessionUpdates, sessionUpdateErrors, sessionConflicts atomic.Uint64
	lookupsFound, lookupsUnknown, lookupErrors            atomic.Uint64
	bucketReady                                           atomic.Bool
	lag                                                   prometheus.Histogram
	lagSum, lagMax                                        atomic.Int64 // nanoseconds
}

// observeLag records the time from a session's seq being stored to its
// being in the bucket.
func (c *counters) observeLag(d time.Duration) {
	c.lag.Observe(d.Seconds())
	c.lagSum.Add(int64(d))
	for {
		m := c.lagMax.Load()
		if int64(d) <= m || c.lagMax.CompareAndSwap(m, int64(d)) {
			return
		}
	}
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
	c.lag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "gyre_jetstream_session_update_lag_seconds",
		Help: "Time from a Write storing records of a producer session to the session bucket holding their seq " +
			"(keep it far below the stream's duplicate window: docs/scale-out.md).",
		Buckets: prometheus.ExponentialBuckets(250e-6, 2, 16), // 250 µs … 8 s
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

	// The session bucket. SessionUpdates counts the sessions' seqs
	// written to it, SessionUpdateErrors those that failed (retried) and
	// rounds that could not start, SessionConflicts updates found already
	// superseded by another node's higher seq. SessionsPending is the
	// number of sessions whose seq waits to be written now. SessionLagMean
	// and SessionLagMax are the time from a Write storing a session's
	// records to the bucket holding their seq.
	SessionUpdates, SessionUpdateErrors, SessionConflicts uint64
	SessionsPending                                       int
	SessionLagMean, SessionLagMax                         time.Duration
	// SessionLookups counts LookupSession calls that answered (found or
	// not), SessionsFound those that found the session, and
	// SessionLookupErrors those that failed.
	SessionLookups, SessionsFound, SessionLookupErrors uint64
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

		SessionUpdates:      s.stats.sessionUpdates.Load(),
		SessionUpdateErrors: s.stats.sessionUpdateErrors.Load(),
		SessionConflicts:    s.stats.sessionConflicts.Load(),
		SessionLagMax:       time.Duration(s.stats.lagMax.Load()),
		SessionsFound:       s.stats.lookupsFound.Load(),
		SessionLookupErrors: s.stats.lookupErrors.Load(),
	}
	st.SessionLookups = st.SessionsFound + s.stats.lookupsUnknown.Load()
	if st.SessionUpdates > 0 {
		st.SessionLagMean = time.Duration(s.stats.lagSum.Load() / int64(st.SessionUpdates))
	}
	s.sess.mu.Lock()
	st.SessionsPending = len(s.sess.pending)
	s.sess.mu.Unlock()
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
	descBucketReady = prometheus.NewDesc("gyre_jetstream_session_bucket_ready",
		"1 once the session bucket was found or created, 0 before (or after it was found missing).", nil, nil)
	descSessionUpdates = prometheus.NewDesc("gyre_jetstream_session_updates_total",
		"Producer sessions' seqs written to the session bucket.", nil, nil)
	descSessionUpdateErrors = prometheus.NewDesc("gyre_jetstream_session_update_errors_total",
		"Session bucket updates that failed (retried with a backoff), and rounds of updates that could not start.", nil, nil)
	descSessionConflicts = prometheus.NewDesc("gyre_jetstream_session_update_conflicts_total",
		"Session bucket updates not written because another node had written a higher seq for the session.", nil, nil)
	descSessionsPending = prometheus.NewDesc("gyre_jetstream_sessions_pending",
		"Producer sessions whose stored seq waits to be written to the session bucket.", nil, nil)
	descLookups = prometheus.NewDesc("gyre_jetstream_session_lookups_total",
		"Session lookups (a HELLO resuming a session) that the bucket answered, by result: found, unknown.", []string{"result"}, nil)
	descLookupErrors = prometheus.NewDesc("gyre_jetstream_session_lookup_errors_total",
		"Session lookups that failed (NATS unreachable or slow, the bucket missing): the HELLO gets NACK 6.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnected, descPublishes, descDuplicates, descErrors, descInFlight, descConnects,
		descBucketReady, descSessionUpdates, descSessionUpdateErrors, descSessionConflicts, descSessionsPending, descLookups, descLookupErrors} {
		ch <- d
	}
	c.s.stats.pubAck.Describe(ch)
	c.s.stats.lag.Describe(ch)
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
	ready := 0.0
	if st.bucketReady.Load() {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(descBucketReady, prometheus.GaugeValue, ready)
	ch <- prometheus.MustNewConstMetric(descSessionUpdates, prometheus.CounterValue, float64(st.sessionUpdates.Load()))
	ch <- prometheus.MustNewConstMetric(descSessionUpdateErrors, prometheus.CounterValue, float64(st.sessionUpdateErrors.Load()))
	ch <- prometheus.MustNewConstMetric(descSessionConflicts, prometheus.CounterValue, float64(st.sessionConflicts.Load()))
	c.s.sess.mu.Lock()
	pending := len(c.s.sess.pending)
	c.s.sess.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descSessionsPending, prometheus.GaugeValue, float64(pending))
	ch <- prometheus.MustNewConstMetric(descLookups, prometheus.CounterValue, float64(st.lookupsFound.Load()), "found")
	ch <- prometheus.MustNewConstMetric(descLookups, prometheus.CounterValue, float64(st.lookupsUnknown.Load()), "unknown")
	ch <- prometheus.MustNewConstMetric(descLookupErrors, prometheus.CounterValue, float64(st.lookupErrors.Load()))
	st.lag.Collect(ch)
}
