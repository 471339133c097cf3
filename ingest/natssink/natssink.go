// Package natssink is an ingest.Sink that stores records in a NATS
// JetStream stream: a Write returns nil only once JetStream has PubAcked
// every record of the batch, so a record the ingest server acknowledges
// is stored by the stream (as durably as the stream is configured to
// store: see docs/scale-out.md).
//
// Each record is one message on Config.Subject with the record's payload
// as its data and a Nats-Msg-Id header that names the record: with a
// producer session, "s-<session id, 32 hex digits>-<seq>"; without one,
// "c-<instance>-<conn>-<seq>", where instance is 16 hex digits drawn at
// random when the sink opens (connection ids and seqs start over when the
// process restarts, so they alone would repeat). JetStream stores a
// message whose id it has seen within the stream's duplicate window
// (duplicate_window, default 2 minutes) only once, and answers its
// publish with a PubAck marked duplicate, which the sink counts as
// stored. So a record sent again under the same session and seq, after a
// reconnect or after a NACK 6 for a publish that in fact landed, is
// stored once, as long as the second publish comes within the window.
//
// Writes publish asynchronously (nats.go coalesces many messages per
// socket write) with at most Config.MaxInFlight records waiting for
// their PubAck, and fail on the first record that is not PubAcked: a
// publish that times out, that JetStream refuses, that no stream answers,
// or that is cut by a lost connection. The whole batch is then refused;
// some of its records may have been stored, and are deduplicated when
// they come again.
//
// The sink connects by itself: if NATS is unreachable when it opens, or
// goes away later, it keeps trying (Config.ReconnectWait) and Writes fail
// at once meanwhile; Health says why.
//
// Producer sessions belong to the cluster: the sink is an
// ingest.SessionStore. It keeps each session's highest stored seq in a
// JetStream key-value bucket (Config.SessionBucket), updated after the
// PubAcks by a goroutine of its own, so that a session resumes on any
// node that writes to the stream, and after every node restarted
// (sessions.go explains the bucket, its lag and why the lag is safe).
package natssink

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Retry backoff of the stream check while the sink cannot store.
const (
	minCheckBackoff = 250 * time.Millisecond
	maxCheckBackoff = 5 * time.Second
	// faultHold: after a publish failed for a reason other than a missing
	// stream (a timeout, a refusal), the stream check that may clear the
	// fault waits this long, so that Health does not flip back to nil
	// between two failing Writes.
	faultHold = time.Second
)

// noRetry turns off nats.go's own resending of a publish that no stream
// answered: the resend could run after Write returned, reading the
// payload the dispatcher reuses. The client resends instead.
var noRetry = []jetstream.PublishOpt{jetstream.WithRetryAttempts(0)}

// Sink publishes records to a JetStream stream. All methods are safe for
// concurrent use.
type Sink struct {
	cfg      Config
	urls     string // redacted, for messages
	log      *slog.Logger
	instance string // hex; names records without a session
	// nc is set once by Open (under mu: the connection's callbacks may
	// read it before Open returns).
	nc *nats.Conn
	js jetstream.JetStream

	// slots holds one token per record waiting for its PubAck.
	slots chan struct{}
	// scratch pools the per-Write buffers (messages, futures, times).
	scratch sync.Pool

	// ctx is canceled by Close: it ends stream checks.
	ctx    context.Context
	cancel context.CancelFunc
	// check nudges the monitor goroutine; monitorDone is closed when it
	// has exited.
	check       chan struct{}
	monitorDone chan struct{}

	mu      sync.Mutex
	closed  bool
	writers sync.WaitGroup
	// connErr is why the connection is down (the last disconnect or failed
	// attempt), nil while connected.
	connErr error
	// fault is why the sink cannot store while connected (a missing stream,
	// failed publishes), nil when it can; faultAt is when it was set and
	// faultReason the failure's metric reason.
	fault       error
	faultAt     time.Time
	faultReason string
	recheck     bool // a stream check is due (after a (re)connect)
	// openChecks: Open made the first connection and checks the stream
	// itself; that connection's onConnect asks for no check.
	openChecks bool
	// streamLogged: the stream's settings were logged (once).
	streamLogged bool
	unhealthy    bool // as last logged
	changed      chan struct{}
	// denied is closed, and replaced, when NATS reports a permissions
	// violation; deniedErr is the last one.
	denied    chan struct{}
	deniedErr error
	faulty    atomic.Bool // fault != nil, for Write's fast path

	// sess is the session store: the bucket and its updater.
	sess sessionTable

	stats counters
}

var _ ingest.SessionStore = (*Sink)(nil)

// Open connects to NATS and checks that cfg.Stream exists and captures
// cfg.Subject. If no server of cfg.URLs can be reached (connection
// refused, timeout, no route, DNS), Open still returns the sink: it goes
// on trying in the background, Health reports the cause and Writes fail
// until it is connected and has found the stream. Any other failure is
// returned: a server that refuses the credentials, a TLS certificate that
// does not verify, an unreadable credentials file, a missing stream or a
// subject the stream does not capture; and a session bucket that is
// missing and cannot be created (Config.SessionBucket; when NATS is
// unreachable at Open, the bucket is found or created once it is
// reachable). ctx bounds the stream check.
func Open(ctx context.Context, cfg Config) (*Sink, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var inst [8]byte
	if _, err := rand.Read(inst[:]); err != nil {
		return nil, fmt.Errorf("natssink: instance id: %w", err)
	}
	s := &Sink{
		cfg:         cfg,
		urls:        redactURLs(cfg.URLs),
		instance:    hex.EncodeToString(inst[:]),
		slots:       make(chan struct{}, cfg.MaxInFlight),
		check:       make(chan struct{}, 1),
		monitorDone: make(chan struct{}),
		changed:     make(chan struct{}),
		denied:      make(chan struct{}),
	}
	s.log = cfg.Logger.With("sink", "jetstream", "stream", cfg.Stream)
	s.stats.init()
	s.sess.init(&cfg)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	opts, err := s.natsOptions()
	if err != nil {
		s.cancel()
		return nil, err
	}
	url := strings.Join(cfg.URLs, ",")
	s.openChecks = true // a first connection made now is checked below
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		if !unreachable(err) {
			s.cancel()
			return nil, fmt.Errorf("natssink: connecting to NATS at %s: %w", s.urls, err)
		}
		s.mu.Lock()
		s.openChecks = false
		s.connErr, s.unhealthy = err, true
		s.mu.Unlock()
		s.log.Warn("natssink: NATS not reachable; retrying in the background, records are refused (NACK 6) meanwhile",
			"urls", s.urls, "err", err)
		if nc, err = nats.Connect(url, append(opts, nats.RetryOnFailedConnect(true))...); err != nil {
			s.cancel()
			return nil, fmt.Errorf("natssink: connecting to NATS at %s: %w", s.urls, err)
		}
	}
	s.mu.Lock() // the connection's callbacks may run already
	s.nc = nc
	s.mu.Unlock()
	s.js, err = jetstream.New(nc,
		// Never reached: slots admits no more. Set so nats.go does not
		// stall a publish at its own default of 4000.
		jetstream.WithPublishAsyncMaxPending(cfg.MaxInFlight),
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout))
	if err == nil {
		// The session bucket's updates: a publisher of their own, with
		// room for a chunk in flight.
		s.sess.js, err = jetstream.New(nc,
			jetstream.WithPublishAsyncMaxPending(2*sessionChunk),
			jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout))
	}
	if err != nil {
		nc.Close()
		s.cancel()
		return nil, fmt.Errorf("natssink: %w", err)
	}
	if nc.IsConnected() {
		info, err := s.checkStream(ctx)
		if err == nil {
			_, err = s.ensureBucket(ctx)
		}
		if err != nil {
			nc.Close()
			s.cancel()
			return nil, err
		}
		s.logStream(info)
		s.mu.Lock()
		s.streamLogged = true
		s.mu.Unlock()
	} else {
		s.mu.Lock()
		s.recheck = true
		s.mu.Unlock()
	}
	go s.monitor()
	go s.sessionLoop()
	return s, nil
}

// natsOptions turns the configuration into nats.go options.
func (s *Sink) natsOptions() ([]nats.Option, error) {
	cfg := &s.cfg
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.Timeout(cfg.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(cfg.ReconnectWait),
		// No buffering while disconnected: a publish then fails at once
		// instead of waiting in memory for a connection (and being stored
		// after its Write failed).
		nats.ReconnectBufSize(-1),
		// Keep trying a server that refused the credentials: they may be
		// fixed on the server's side.
		nats.IgnoreAuthErrorAbort(),
		nats.ConnectHandler(s.onConnect),
		nats.ReconnectHandler(s.onConnect),
		nats.DisconnectErrHandler(s.onDisconnect),
		nats.ReconnectErrHandler(s.onReconnectErr),
		nats.ErrorHandler(s.onAsyncErr),
	}
	switch {
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	case cfg.NkeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(cfg.NkeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("natssink: nkey seed file: %w", err)
		}
		opts = append(opts, o)
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCAFile))
	}
	if cfg.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCertFile, cfg.TLSKeyFile))
	}
	return opts, nil
}

// unreachable reports whether a failed first connect means that no
// server answered (worth retrying in the background), rather than one
// that answered and refused (credentials, TLS).
func unreachable(err error) bool {
	for _, auth := range []error{nats.ErrAuthorization, nats.ErrAuthExpired, nats.ErrAuthRevoked, nats.ErrAccountAuthExpired} {
		if errors.Is(err, auth) {
			return false
		}
	}
	var verify *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	if errors.As(err, &verify) || errors.As(err, &unknownCA) || errors.As(err, &hostname) {
		return false
	}
	var netErr net.Error
	return errors.Is(err, nats.ErrNoServers) || errors.Is(err, nats.ErrTimeout) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// checkStream asks JetStream for the stream and for the stream that
// captures the subject, and returns the stream's info or an error that
// names what is wrong.
func (s *Sink) checkStream(ctx context.Context) (*jetstream.StreamInfo, error) {
	st, err := s.js.Stream(ctx, s.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("natssink: stream %q not found on NATS at %s (create it first, see docs/scale-out.md)", s.cfg.Stream, s.urls)
	}
	if err != nil {
		return nil, fmt.Errorf("natssink: looking up stream %q on NATS at %s: %w", s.cfg.Stream, s.urls, err)
	}
	name, err := s.js.StreamNameBySubject(ctx, s.cfg.Subject)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("natssink: stream %q does not capture subject %q (no stream does)", s.cfg.Stream, s.cfg.Subject)
	}
	if err != nil {
		return nil, fmt.Errorf("natssink: looking up the stream of subject %q: %w", s.cfg.Subject, err)
	}
	if name != s.cfg.Stream {
		return nil, fmt.Errorf("natssink: subject %q is captured by stream %q, not %q", s.cfg.Subject, name, s.cfg.Stream)
	}
	return st.CachedInfo(), nil
}

func (s *Sink) logStream(info *jetstream.StreamInfo) {
	s.log.Info("natssink: publishing to JetStream", "urls", s.urls, "server", s.nc.ConnectedUrlRedacted(),
		"subject", s.cfg.Subject, "replicas", info.Config.Replicas, "storage", info.Config.Storage.String(),
		"duplicate_window", info.Config.Duplicates, "max_in_flight", s.cfg.MaxInFlight, "publish_timeout", s.cfg.PublishTimeout)
	if info.Config.Duplicates < time.Minute {
		s.log.Warn("natssink: the stream's duplicate window is short: a record resent after it is stored twice",
			"duplicate_window", info.Config.Duplicates)
	}
}

// onConnect runs (on nats.go's callback goroutine) when the connection
// is up, at first or again.
func (s *Sink) onConnect(nc *nats.Conn) {
	s.mu.Lock()
	was := s.connErr
	s.connErr = nil
	if s.openChecks {
		s.openChecks = false // Open checks the stream of the first connection itself
	} else {
		s.recheck = true
	}
	s.mu.Unlock()
	s.stats.connects.Add(1)
	if was != nil {
		s.log.Info("natssink: connected to NATS", "server", nc.ConnectedUrlRedacted())
	}
	s.nudge()
	s.sess.nudge() // session updates that waited for the connection
	s.healthChanged()
}

// onDisconnect runs when an established connection is lost (err nil
// when the sink closed it).
func (s *Sink) onDisconnect(nc *nats.Conn, err error) {
	if err == nil {
		err = errors.New("connection closed")
	}
	s.mu.Lock()
	closed := s.closed
	s.connErr = err
	s.mu.Unlock()
	if !closed {
		s.log.Warn("natssink: lost the connection to NATS; reconnecting, records are refused (NACK 6) meanwhile", "err", err)
	}
	s.healthChanged()
}

// onReconnectErr runs for every failed attempt to reach a server.
func (s *Sink) onReconnectErr(nc *nats.Conn, err error) {
	if err == nil {
		return
	}
	s.mu.Lock()
	prev := s.connErr
	s.connErr = err
	s.mu.Unlock()
	if prev == nil || prev.Error() != err.Error() {
		s.log.Warn("natssink: cannot reach NATS; still trying", "urls", s.urls, "err", err)
		s.healthChanged()
	} else {
		s.log.Debug("natssink: cannot reach NATS; still trying", "urls", s.urls, "err", err)
	}
}

// onAsyncErr logs what nats.go reports outside of any call (a
// permissions violation, a slow consumer).
func (s *Sink) onAsyncErr(nc *nats.Conn, sub *nats.Subscription, err error) {
	s.log.Warn("natssink: NATS reports an error", "err", err)
	if errors.Is(err, nats.ErrPermissionViolation) {
		s.mu.Lock()
		s.deniedErr = err
		close(s.denied)
		s.denied = make(chan struct{})
		s.mu.Unlock()
	}
}

// nudge wakes the monitor without blocking.
func (s *Sink) nudge() {
	select {
	case s.check <- struct{}{}:
	default:
	}
}

// monitor checks the stream after every (re)connect and, while the sink
// has a fault, again with a backoff, until the stream answers; then it
// clears the fault.
func (s *Sink) monitor() {
	defer close(s.monitorDone)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	backoff := minCheckBackoff
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.check:
		case <-timer.C:
		}
		s.mu.Lock()
		due, wait := s.recheck, time.Duration(0)
		if s.fault != nil {
			due = true
			if s.faultReason != reasonNoStream {
				wait = faultHold - time.Since(s.faultAt)
			}
		}
		s.mu.Unlock()
		if !due || !s.nc.IsConnected() {
			continue // onConnect nudges again
		}
		if wait > 0 {
			timer.Reset(wait)
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.PublishTimeout)
		info, err := s.checkStream(ctx)
		cancel()
		if s.ctx.Err() != nil {
			return
		}
		if err != nil {
			s.setFault(err, reasonNoStream)
			timer.Reset(backoff)
			backoff = min(2*backoff, maxCheckBackoff)
			continue
		}
		backoff = minCheckBackoff
		if s.sess.kv.Load() == nil {
			// NATS was unreachable at Open: find or make the session
			// bucket now, to say at once if it cannot be (updates and
			// lookups try again by themselves).
			ctx, cancel := context.WithTimeout(s.ctx, s.cfg.PublishTimeout)
			if _, err := s.ensureBucket(ctx); err != nil && s.ctx.Err() == nil {
				s.log.Error("natssink: producer sessions cannot be kept: a session resuming on another node is refused (NACK 6) until they can", "err", err)
			}
			cancel()
		}
		s.mu.Lock()
		first := !s.streamLogged
		s.streamLogged, s.recheck = true, false
		s.mu.Unlock()
		if first {
			s.logStream(info)
		}
		s.clearFault() // and tells of the recheck done
	}
}

// setFault records why the sink cannot store (a Write's failure or a
// failed stream check) and has the monitor check the stream.
func (s *Sink) setFault(err error, reason string) {
	s.mu.Lock()
	if s.fault == nil || reason == reasonNoStream || s.faultReason != reasonNoStream {
		s.fault, s.faultReason = err, reason
		s.faultAt = time.Now()
	}
	s.faulty.Store(true)
	s.mu.Unlock()
	s.nudge()
	s.healthChanged()
}

// clearFault records that the stream answered or PubAcked.
func (s *Sink) clearFault() {
	s.mu.Lock()
	s.fault = nil
	s.faulty.Store(false)
	s.mu.Unlock()
	s.healthChanged()
}

// Health returns nil while the sink can store records, and otherwise why
// it cannot: not connected to NATS (with the last connection error: a
// refused connection, an authorization violation...), the stream missing
// or not capturing the subject (or not checked yet since the connection
// came up, for the few milliseconds that takes), or the last Write's
// failure (a PubAck timeout, a refusal by JetStream). Meanwhile Writes fail (or, for a
// fault found by a Write, may fail). The sink keeps reconnecting and
// checking the stream on its own; Health returns nil again once it is
// connected and the stream answers (after a failed publish, at the
// earliest a second later) or a Write succeeds.
func (s *Sink) Health() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.healthLocked()
}

func (s *Sink) healthLocked() error {
	if s.closed {
		return ingest.ErrSinkClosed
	}
	if s.nc == nil || !s.nc.IsConnected() {
		cause := s.connErr
		if cause == nil {
			cause = errors.New("connecting")
		}
		return fmt.Errorf("natssink: not connected to NATS at %s: %w", s.urls, cause)
	}
	if s.fault == nil && s.recheck {
		return fmt.Errorf("natssink: connected to NATS, checking stream %q", s.cfg.Stream)
	}
	return s.fault
}

// HealthChanged returns a channel that is closed the next time Health's
// answer may have changed (a connection lost or made, a fault found or
// cleared, Close). Read Health after taking the channel, not before, to
// miss no change.
func (s *Sink) HealthChanged() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// healthChanged wakes HealthChanged's waiters and logs a transition
// between storing and not storing.
func (s *Sink) healthChanged() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	err := s.healthLocked()
	was := s.unhealthy
	s.unhealthy = err != nil
	closed := s.closed
	s.mu.Unlock()
	switch {
	case closed:
	case err != nil && !was:
		s.log.Error("natssink: cannot store; records are refused (NACK 6) until it can", "err", err)
	case err == nil && was:
		s.log.Info("natssink: storing again")
	}
}

// Write publishes every record of the batch to the stream and returns
// once JetStream has PubAcked them all (a PubAck that says duplicate
// counts: the record was stored before), or returns the first failure;
// then none of the batch may be acknowledged, though some of it may be in
// the stream. It fails at once while the sink is not connected, and stops
// publishing at the first failure; either way it returns only when every
// record it published has been answered or has timed out, and keeps no
// reference to the batch afterwards.
//
// The records PubAcked before the first failure (all of them, when it
// returns nil) advance their sessions' seqs in the session bucket: Write
// notes them in memory and the updater writes them afterwards, so the
// bucket costs Write one lock.
//
// Write after Close returns ErrSinkClosed.
func (s *Sink) Write(batch []ingest.Record) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ingest.ErrSinkClosed
	}
	s.writers.Add(1)
	s.mu.Unlock()
	defer s.writers.Done()
	if len(batch) == 0 {
		return nil
	}
	if !s.nc.IsConnected() {
		s.stats.errors[reasonNotConnected].Add(uint64(len(batch)))
		if err := s.Health(); err != nil {
			return err
		}
		return fmt.Errorf("natssink: not connected to NATS at %s", s.urls)
	}
	w := s.getScratch(len(batch))
	defer s.putScratch(w)
	var first error
	var firstReason string
	fail := func(err error, reason string) {
		s.stats.errors[reason].Add(1)
		if first == nil {
			first, firstReason = err, reason
		}
	}
	// Records [oldest, sent) are published and not yet answered.
	oldest, sent := 0, 0
	// prefix: every record awaited so far was PubAcked. Only those count
	// for their sessions: a session's seq in the bucket must never pass a
	// record that may not be stored.
	prefix := true
	stored := func(i int) {
		if prefix {
			w.sess.add(&batch[i])
		}
	}
	for i := 0; i < len(batch) && first == nil; i++ {
		// Take a slot: at once if one is free; else by waiting for the
		// oldest of our own PubAcks; else, holding none, for another
		// Write's.
		took := false
		for !took && first == nil {
			select {
			case s.slots <- struct{}{}:
				took = true
				continue
			default:
			}
			if oldest < sent {
				if reason, err := s.await(w, oldest); err != nil {
					fail(err, reason)
					prefix = false
				} else {
					stored(oldest)
				}
				oldest++
			} else if err := s.waitSlot(); err != nil {
				fail(err, reasonTimeout)
			} else {
				took = true
			}
		}
		if !took {
			break
		}
		m := &w.msgs[i]
		m.Subject = s.cfg.Subject
		m.Data = batch[i].Payload
		w.id = s.appendMsgID(w.id[:0], &batch[i])
		m.Header[jetstream.MsgIDHeader][0] = string(w.id)
		w.sentAt[i] = time.Now()
		f, err := s.js.PublishMsgAsync(m, noRetry...)
		if err != nil {
			<-s.slots
			reason, err := s.publishErr(err)
			fail(err, reason)
			break
		}
		w.futs[i] = f
		sent = i + 1
	}
	for ; oldest < sent; oldest++ {
		if reason, err := s.await(w, oldest); err != nil {
			fail(err, reason)
			prefix = false
		} else {
			stored(oldest)
		}
	}
	s.noteSessions(w.sess.list)
	if first != nil {
		s.setFault(first, firstReason)
		return first
	}
	if s.faulty.Load() {
		s.clearFault()
	}
	return nil
}

// waitSlot blocks until a slot is free (and takes it), for at most the
// publish timeout: every slot is given back within it.
func (s *Sink) waitSlot() error {
	t := time.NewTimer(s.cfg.PublishTimeout)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return nil
	case <-t.C:
		return fmt.Errorf("natssink: stream %q: %d records waiting for PubAcks for %v", s.cfg.Stream, s.cfg.MaxInFlight, s.cfg.PublishTimeout)
	}
}

// await waits for record i's PubAck (or failure; nats.go times every
// publish out after PublishTimeout) and gives its slot back.
func (s *Sink) await(w *scratch, i int) (string, error) {
	f := w.futs[i]
	w.futs[i] = nil
	var err error
	var ack *jetstream.PubAck
	select {
	case ack = <-f.Ok():
	case err = <-f.Err():
	}
	<-s.slots
	if err != nil {
		return s.publishErr(err)
	}
	s.stats.pubAck.Observe(time.Since(w.sentAt[i]).Seconds())
	if ack.Stream != s.cfg.Stream {
		return reasonRefused, fmt.Errorf("natssink: subject %q is captured by stream %q, not %q", s.cfg.Subject, ack.Stream, s.cfg.Stream)
	}
	s.stats.published.Add(1)
	if ack.Duplicate {
		s.stats.duplicates.Add(1)
	}
	return "", nil
}

// publishErr explains a failed publish and returns its metric reason.
func (s *Sink) publishErr(err error) (string, error) {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout):
		return reasonTimeout, fmt.Errorf("natssink: stream %q: no PubAck within %v", s.cfg.Stream, s.cfg.PublishTimeout)
	case errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders):
		return reasonNoStream, fmt.Errorf("natssink: no stream answered on subject %q (is stream %q there, and JetStream up?)", s.cfg.Subject, s.cfg.Stream)
	case errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrReconnectBufExceeded) ||
		errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionReconnecting):
		return reasonDisconnected, fmt.Errorf("natssink: connection to NATS at %s lost before the PubAck: %w", s.urls, err)
	case errors.As(err, &apiErr):
		return reasonRefused, fmt.Errorf("natssink: stream %q refused the record: %w", s.cfg.Stream, err)
	}
	return reasonOther, fmt.Errorf("natssink: publishing to stream %q: %w", s.cfg.Stream, err)
}

// appendMsgID appends the record's Nats-Msg-Id to b.
func (s *Sink) appendMsgID(b []byte, r *ingest.Record) []byte {
	if !r.Session.IsZero() {
		b = append(b, "s-"...)
		b = hex.AppendEncode(b, r.Session[:])
	} else {
		b = append(b, "c-"...)
		b = append(b, s.instance...)
		b = append(b, '-')
		b = strconv.AppendUint(b, r.Conn, 10)
	}
	b = append(b, '-')
	return strconv.AppendUint(b, r.Seq, 10)
}

// scratch is one Write's messages, futures and send times, kept in a
// pool: nats.go reads a message only while publishing it, so once every
// future of a Write is answered its messages can serve the next Write.
type scratch struct {
	msgs   []nats.Msg
	futs   []jetstream.PubAckFuture
	sentAt []time.Time
	id     []byte
	sess   scratchSessions // the sessions the Write stored
}

func (s *Sink) getScratch(n int) *scratch {
	w, _ := s.scratch.Get().(*scratch)
	if w == nil {
		w = &scratch{}
	}
	for len(w.msgs) < n {
		w.msgs = append(w.msgs, nats.Msg{Header: nats.Header{jetstream.MsgIDHeader: []string{""}}})
	}
	if cap(w.futs) < n {
		w.futs = make([]jetstream.PubAckFuture, n)
		w.sentAt = make([]time.Time, n)
	}
	w.futs, w.sentAt = w.futs[:n], w.sentAt[:n]
	w.sess.reset()
	return w
}

func (s *Sink) putScratch(w *scratch) {
	for i := range w.msgs {
		w.msgs[i].Data = nil // the dispatcher's memory
		w.msgs[i].Header[jetstream.MsgIDHeader][0] = ""
	}
	clear(w.futs)
	s.scratch.Put(w)
}

// Close stops accepting Writes, waits for the Writes under way (each
// ends within the publish timeout), writes the sessions' seqs still
// pending to the session bucket (if NATS is reachable; bounded by the
// publish timeout), and closes the connection. It returns nil; later
// calls do nothing.
func (s *Sink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.writers.Wait()
	close(s.sess.stop)
	<-s.sess.done
	s.cancel()
	<-s.monitorDone
	s.nc.Close()
	s.healthChanged()
	return nil
}

// Collector returns a Prometheus collector for the sink's metrics
// (gyre_jetstream_*). Register it once.
func (s *Sink) Collector() prometheus.Collector { return &collector{s: s} }
