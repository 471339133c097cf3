package natssink

// Producer sessions that belong to the cluster: the sink is an
// ingest.SessionStore. For every producer session whose records it
// stored, it keeps in a JetStream key-value bucket (Config.SessionBucket)
// the highest seq up to which the stream has PubAcked all of them, so
// that a HELLO for the session on any node writing to the stream, or on
// a node that restarted, is answered with the right WELCOME.
//
// Layout of the bucket: one key per session, the session id as 32
// lower-case hex digits; its value the seq in decimal ASCII ("1234"), as
// `nats kv get` shows it. History 1; the bucket's age limit (max_age) is
// the session TTL, so a session is forgotten a TTL after its last stored
// record.
//
// Writes do not wait for the bucket. After a Write, the seqs it stored
// are noted in memory (pending, one entry per session, the highest seq
// wins) and one goroutine, the updater, writes them to the bucket in
// rounds: every pending session of a round is published at once
// (asynchronously, a chunk at a time), and a round starts at most every
// sessionRound. So the bucket lags the stream by a round and a KV round
// trip (docs/scale-out.md has the measured figures), and a node killed
// with SIGKILL leaves its last round unwritten. A client that resumes on
// another node then gets a WELCOME seq a little below what is stored and
// sends those records again, under their seqs: their Nats-Msg-Id is in
// the stream's duplicate window, so JetStream answers with a PubAck
// marked duplicate (counted as stored) and keeps one copy. The lag must
// therefore stay far below the duplicate window (2 minutes by default;
// the lag is milliseconds, and seconds at worst while NATS is slow).
//
// Updates are compare-and-set on the key's revision
// (Nats-Expected-Last-Subject-Sequence), so a value never goes down: two
// nodes that wrote the same session one after the other (a takeover, or
// a node whose round was late) leave the higher seq. A node that finds
// the key changed by another reads it again and writes only a higher seq.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// sessionRound is the shortest time between the starts of two rounds
	// of bucket updates: under load each session is written at most 100
	// times a second, however many batches it stores, which keeps the
	// bucket's cost to NATS small beside the records', and the lag short
	// beside the duplicate window.
	sessionRound = 10 * time.Millisecond
	// sessionChunk is the number of updates published before the updater
	// waits for their PubAcks.
	sessionChunk = 256
	// maxKnownSessions bounds the revisions the updater remembers (about
	// 60 bytes each); past it a quarter is forgotten, and the next update
	// of one of those reads the key first.
	maxKnownSessions = ingest.DefaultMaxSessions
	// Retry backoff of the updater after a failed round.
	minSessionBackoff = 100 * time.Millisecond
	maxSessionBackoff = 5 * time.Second
	// kvOperationHeader marks a KV delete or purge (nats.go's own
	// constant is unexported).
	kvOperationHeader = "KV-Operation"
)

// sessSeq is a session's highest seq in one Write.
type sessSeq struct {
	id  ingest.SessionID
	seq uint64
}

// pendingSeq is a seq PubAcked and not yet in the bucket, and since when
// the session has had one pending (the oldest: the lag is counted from
// it).
type pendingSeq struct {
	seq   uint64
	since time.Time
}

// kvState is what the updater knows of a key: the seq it holds, its
// revision (the bucket stream's sequence of that value), and when it was
// learnt.
type kvState struct {
	seq, rev uint64
	at       time.Time
}

// sessionTable is the sink's part of the session store.
type sessionTable struct {
	bucket  string // the bucket's name
	subject string // "$KV.<bucket>." : a key's subject is it + the key
	// js publishes the updates: a JetStream context of its own on the
	// sink's connection, so that they never take the records' async
	// publish slots.
	js jetstream.JetStream
	// kv is the bucket, nil until it was found or created.
	kv atomic.Pointer[jetstream.KeyValue]
	// ensureMu serialises finding or creating the bucket.
	ensureMu sync.Mutex

	// wake nudges the updater (capacity 1); stop asks it to write what is
	// pending and exit; done is closed when it has.
	wake, stop, done chan struct{}

	mu sync.Mutex
	// pending: seqs PubAcked, not yet in the bucket; inflight: those the
	// current round is writing (nil between rounds); spare is the map of
	// the previous round, emptied, for the next swap.
	pending, inflight, spare map[ingest.SessionID]pendingSeq
	// known: what this sink wrote or read of each key lately.
	known     map[ingest.SessionID]kvState
	lastSweep time.Time
	lastErr   string // the last failure logged, to log each once
}

func (t *sessionTable) init(cfg *Config) {
	t.bucket = cfg.SessionBucket
	t.subject = "$KV." + cfg.SessionBucket + "."
	t.wake = make(chan struct{}, 1)
	t.stop = make(chan struct{})
	t.done = make(chan struct{})
	t.pending = make(map[ingest.SessionID]pendingSeq)
	t.spare = make(map[ingest.SessionID]pendingSeq)
	t.known = make(map[ingest.SessionID]kvState)
}

// nudge wakes the updater without blocking.
func (t *sessionTable) nudge() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// scratchSessions collects, during a Write, the highest seq of each
// session among the records PubAcked before the Write's first failure.
type scratchSessions struct {
	list []sessSeq
	at   map[ingest.SessionID]int // index in list
	last int                      // index of the previous record's session, -1 for none
}

func (w *scratchSessions) reset() {
	w.list = w.list[:0]
	clear(w.at)
	w.last = -1
}

// add records that r is stored.
func (w *scratchSessions) add(r *ingest.Record) {
	if r.Session.IsZero() {
		return
	}
	if w.last >= 0 && w.list[w.last].id == r.Session {
		w.list[w.last].seq = max(w.list[w.last].seq, r.Seq)
		return
	}
	i, ok := w.at[r.Session]
	if !ok {
		if w.at == nil {
			w.at = make(map[ingest.SessionID]int)
		}
		i = len(w.list)
		w.at[r.Session] = i
		w.list = append(w.list, sessSeq{id: r.Session})
	}
	w.list[i].seq = max(w.list[i].seq, r.Seq)
	w.last = i
}

// noteSessions hands the seqs a Write stored to the updater. It takes one
// lock and never blocks on the network.
func (s *Sink) noteSessions(list []sessSeq) {
	if len(list) == 0 {
		return
	}
	now := time.Now()
	t := &s.sess
	t.mu.Lock()
	for _, e := range list {
		if k, ok := t.known[e.id]; ok && k.seq >= e.seq {
			continue // in the bucket already (a resend, PubAcked duplicate)
		}
		p, ok := t.pending[e.id]
		if !ok {
			p.since = now
		}
		p.seq = max(p.seq, e.seq)
		t.pending[e.id] = p
	}
	t.mu.Unlock()
	t.nudge()
}

// localSession returns the highest seq of id this sink stored that it
// knows of (pending, being written or written), 0 if none.
func (s *Sink) localSession(id ingest.SessionID) uint64 {
	t := &s.sess
	t.mu.Lock()
	defer t.mu.Unlock()
	return max(t.pending[id].seq, t.inflight[id].seq, t.known[id].seq)
}

// LookupSession returns the highest seq up to which the stream holds
// every record of session id, as the session bucket says (or higher, if
// this sink stored more of the session and has not written it to the
// bucket yet); found is false when neither knows the session (never
// stored anything, or expired after the session TTL). The answer may lag
// what other nodes stored in their last moments by a round of updates:
// the records the client then resends are duplicates the stream
// recognises by their Nats-Msg-Id.
//
// It reads the key from the bucket's stream leader (not a replica that
// may lag), bounded by ctx and by the publish timeout. It fails, naming
// the cause, when the sink is not connected to NATS, the bucket cannot be
// found or created, or NATS does not answer in time. Safe for concurrent
// use.
func (s *Sink) LookupSession(ctx context.Context, id ingest.SessionID) (seq uint64, found bool, err error) {
	seq, found, err = s.lookupSession(ctx, id)
	switch {
	case err != nil:
		s.stats.lookupErrors.Add(1)
	case found:
		s.stats.lookupsFound.Add(1)
	default:
		s.stats.lookupsUnknown.Add(1)
	}
	return seq, found, err
}

func (s *Sink) lookupSession(ctx context.Context, id ingest.SessionID) (uint64, bool, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return 0, false, ingest.ErrSinkClosed
	}
	if !s.nc.IsConnected() {
		cause := s.Health()
		if cause == nil {
			cause = errors.New("natssink: not connected to NATS")
		}
		return 0, false, fmt.Errorf("natssink: cannot look up session %s in bucket %q: %w", id, s.sess.bucket, cause)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	if _, err := s.ensureBucket(ctx); err != nil {
		return 0, false, err
	}
	seq, _, found, err := s.readKey(ctx, id)
	if err != nil {
		return 0, false, fmt.Errorf("natssink: looking up session %s in bucket %q: %w", id, s.sess.bucket, err)
	}
	if local := s.localSession(id); local > seq {
		return local, true, nil
	}
	return seq, found, nil
}

// msgGetResponse is JetStream's answer to $JS.API.STREAM.MSG.GET.
type msgGetResponse struct {
	Error   *jetstream.APIError `json:"error,omitempty"`
	Message *struct {
		Sequence uint64 `json:"seq"`
		Header   []byte `json:"hdrs,omitempty"`
		Data     []byte `json:"data,omitempty"`
	} `json:"message,omitempty"`
}

// readKey reads session id's key from the bucket's stream: its seq and
// revision, found false (revision 0, or the revision of a delete marker)
// when it has no value. It asks the stream leader through
// $JS.API.STREAM.MSG.GET rather than a direct get, which any replica may
// answer with a value a moment old.
func (s *Sink) readKey(ctx context.Context, id ingest.SessionID) (seq, rev uint64, found bool, err error) {
	req, _ := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{s.sess.subject + id.String()})
	msg, err := s.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+s.sess.bucket, req)
	if err != nil {
		return 0, 0, false, err
	}
	var resp msgGetResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, 0, false, fmt.Errorf("bad answer from JetStream: %w", err)
	}
	if resp.Error != nil {
		if resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return 0, 0, false, nil
		}
		if resp.Error.ErrorCode == jetstream.JSErrCodeStreamNotFound {
			s.sess.kv.Store(nil) // deleted: the next update or lookup makes it again
		}
		return 0, 0, false, resp.Error
	}
	if resp.Message == nil {
		return 0, 0, false, errors.New("bad answer from JetStream: no message")
	}
	m := resp.Message
	if len(m.Header) > 0 {
		if h, err := nats.DecodeHeadersMsg(m.Header); err == nil && h.Get(kvOperationHeader) != "" {
			return 0, m.Sequence, false, nil // deleted or purged
		}
	}
	seq, err = strconv.ParseUint(string(m.Data), 10, 64)
	if err != nil {
		return 0, 0, false, fmt.Errorf("the value %q of key %s is not a seq (delete the key, or the bucket, to reset it)", m.Data, id)
	}
	return seq, m.Sequence, true, nil
}

// ensureBucket returns the session bucket, finding it or creating it
// first if the sink has not yet. It creates it with the stream's replicas
// and storage, history 1 and the session TTL as its age limit.
func (s *Sink) ensureBucket(ctx context.Context) (jetstream.KeyValue, error) {
	t := &s.sess
	if kv := t.kv.Load(); kv != nil {
		return *kv, nil
	}
	t.ensureMu.Lock()
	defer t.ensureMu.Unlock()
	if kv := t.kv.Load(); kv != nil {
		return *kv, nil
	}
	// Bounded by the publish timeout, and cut short by a permissions
	// violation: NATS answers a request the user may not make with an
	// asynchronous error, never with a reply.
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	denied := s.permissionDenied()
	watch := make(chan struct{})
	defer close(watch)
	go func() {
		select {
		case <-denied:
			cancel()
		case <-watch:
		}
	}()
	kv, err := s.js.KeyValue(ctx, t.bucket)
	created := false
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		var st jetstream.Stream
		if st, err = s.js.Stream(ctx, s.cfg.Stream); err != nil {
			return nil, fmt.Errorf("natssink: looking up stream %q for its replicas, to create the session bucket %q: %w", s.cfg.Stream, t.bucket, err)
		}
		info := st.CachedInfo()
		kv, err = s.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      t.bucket,
			Description: fmt.Sprintf("gyre ingestd producer sessions of stream %s: key = session id (hex), value = highest seq stored (decimal)", s.cfg.Stream),
			History:     1,
			TTL:         s.cfg.SessionTTL,
			Replicas:    info.Config.Replicas,
			Storage:     info.Config.Storage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = s.js.KeyValue(ctx, t.bucket) // another node made it meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("natssink: cannot create the session bucket %q (a JetStream key-value bucket: create it, or let the sink's NATS user create it): %w", t.bucket, s.orDenied(denied, err))
		}
		created = true
	} else if err != nil {
		return nil, fmt.Errorf("natssink: looking up the session bucket %q: %w", t.bucket, s.orDenied(denied, err))
	}
	attrs := []any{"bucket", t.bucket, "created", created}
	if st, err := kv.Status(ctx); err == nil {
		attrs = append(attrs, "ttl", st.TTL(), "history", st.History())
		if ttl := st.TTL(); ttl > 0 && ttl < s.cfg.SessionTTL {
			s.log.Warn("natssink: the session bucket forgets sessions sooner than the session TTL: a session idle longer than its age limit resumes as unknown on other nodes",
				"bucket", t.bucket, "bucket_ttl", ttl, "session_ttl", s.cfg.SessionTTL)
		}
	}
	s.log.Info("natssink: producer sessions kept in JetStream key-value", attrs...)
	t.kv.Store(&kv)
	s.stats.bucketReady.Store(true)
	return kv, nil
}

// sessionLoop is the updater: it writes the pending seqs to the bucket in
// rounds, at most one every sessionRound, until Close; then it writes
// what is left, once, if it can.
func (s *Sink) sessionLoop() {
	t := &s.sess
	defer close(t.done)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	pace := time.NewTimer(time.Hour)
	pace.Stop()
	defer pace.Stop()
	backoff := time.Duration(0)
	var last time.Time
	for {
		select {
		case <-t.stop:
			s.sessionRound()
			return
		case <-t.wake:
		case <-retry.C:
		}
		if wait := sessionRound - time.Since(last); wait > 0 {
			pace.Reset(wait)
			select {
			case <-t.stop:
				s.sessionRound()
				return
			case <-pace.C:
			}
		}
		last = time.Now()
		err := s.sessionRound()
		switch {
		case err == nil:
			backoff = 0
		case errors.Is(err, errNotConnected):
			// onConnect wakes the updater.
		default:
			backoff = min(max(2*backoff, minSessionBackoff), maxSessionBackoff)
			retry.Reset(backoff)
		}
	}
}

var errNotConnected = errors.New("natssink: not connected to NATS")

// update is one session's write of a round.
type update struct {
	id    ingest.SessionID
	seq   uint64
	since time.Time
	rev   uint64 // the revision expected, 0 for a key that must not exist
	fut   jetstream.PubAckFuture
	msg   nats.Msg
}

// sessionRound writes every pending seq to the bucket. Updates that fail
// go back to pending, for the next round.
func (s *Sink) sessionRound() error {
	t := &s.sess
	t.mu.Lock()
	n := len(t.pending)
	t.mu.Unlock()
	if n == 0 {
		return nil
	}
	if !s.nc.IsConnected() {
		return errNotConnected
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PublishTimeout)
	defer cancel()
	if _, err := s.ensureBucket(ctx); err != nil {
		s.sessionFailed(err, 0)
		return err
	}
	t.mu.Lock()
	batch := t.pending
	t.pending, t.inflight, t.spare = t.spare, batch, nil
	ups := make([]update, 0, len(batch))
	for id, p := range batch {
		ups = append(ups, update{id: id, seq: p.seq, since: p.since, rev: t.known[id].rev})
	}
	t.mu.Unlock()

	var failed []update
	var firstErr error
	for i := 0; i < len(ups); i += sessionChunk {
		chunk := ups[i:min(i+sessionChunk, len(ups))]
		for j := range chunk {
			u := &chunk[j]
			u.msg = nats.Msg{
				Subject: t.subject + u.id.String(),
				Data:    strconv.AppendUint(nil, u.seq, 10),
				Header:  nats.Header{jetstream.ExpectedLastSubjSeqHeader: []string{strconv.FormatUint(u.rev, 10)}},
			}
			f, err := t.js.PublishMsgAsync(&u.msg, noRetry...)
			if err != nil {
				u.fut = nil
				failed = append(failed, *u)
				firstErr = cmpOr(firstErr, err)
				continue
			}
			u.fut = f
		}
		for j := range chunk {
			u := &chunk[j]
			if u.fut == nil {
				continue
			}
			var ack *jetstream.PubAck
			var err error
			select {
			case ack = <-u.fut.Ok():
			case err = <-u.fut.Err():
			}
			u.fut = nil
			if err == nil {
				s.sessionWritten(u, ack.Sequence)
				continue
			}
			if wrongLastSeq(err) {
				err = s.resolveConflict(ctx, u)
			}
			if err != nil {
				failed = append(failed, *u)
				firstErr = cmpOr(firstErr, err)
			}
		}
	}

	t.mu.Lock()
	t.inflight = nil
	clear(batch)
	t.spare = batch
	for _, u := range failed {
		p, ok := t.pending[u.id]
		if !ok || u.since.Before(p.since) {
			p.since = u.since
		}
		p.seq = max(p.seq, u.seq)
		t.pending[u.id] = p
	}
	now := time.Now()
	if len(t.known) > maxKnownSessions || now.Sub(t.lastSweep) > time.Minute {
		t.lastSweep = now
		s.sweepKnownLocked(now)
	}
	t.mu.Unlock()
	if firstErr != nil {
		s.sessionFailed(firstErr, len(failed))
		return firstErr
	}
	t.mu.Lock()
	if t.lastErr != "" {
		t.lastErr = ""
		s.log.Info("natssink: writing producer sessions to the bucket again", "bucket", t.bucket)
	}
	t.mu.Unlock()
	return nil
}

// sessionWritten records that u's seq is in the bucket at revision rev.
func (s *Sink) sessionWritten(u *update, rev uint64) {
	now := time.Now()
	lag := now.Sub(u.since)
	s.stats.sessionUpdates.Add(1)
	s.stats.observeLag(lag)
	t := &s.sess
	t.mu.Lock()
	if k := t.known[u.id]; k.rev < rev {
		t.known[u.id] = kvState{seq: u.seq, rev: rev, at: now}
	}
	t.mu.Unlock()
}

// resolveConflict handles an update refused because the key's revision
// is not the one expected: another node wrote the session (or this sink
// forgot the revision, or the key expired). It reads the key and writes
// u's seq only if it is higher, expecting the revision read, a few times
// at most.
func (s *Sink) resolveConflict(ctx context.Context, u *update) error {
	for range 3 {
		cur, rev, _, err := s.readKey(ctx, u.id)
		if err != nil {
			return fmt.Errorf("natssink: reading session %s from bucket %q: %w", u.id, s.sess.bucket, err)
		}
		if cur >= u.seq {
			s.stats.sessionConflicts.Add(1)
			s.sessionWritten(&update{id: u.id, seq: cur, since: u.since}, rev)
			return nil
		}
		u.msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
		ack, err := s.sess.js.PublishMsg(ctx, &u.msg, noRetry...)
		if err == nil {
			s.sessionWritten(u, ack.Sequence)
			return nil
		}
		if !wrongLastSeq(err) {
			return err
		}
	}
	return fmt.Errorf("natssink: session %s: its key in bucket %q kept changing", u.id, s.sess.bucket)
}

// wrongLastSeq reports whether err is JetStream refusing a
// compare-and-set (10071; 10164 from a replicated stream).
func wrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// sessionFailed counts n failed updates (0: the round could not start)
// and logs a failure once, until a round succeeds again.
func (s *Sink) sessionFailed(err error, n int) {
	s.stats.sessionUpdateErrors.Add(uint64(max(n, 1)))
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) {
		s.sess.kv.Store(nil) // the bucket is gone: make it again
		s.stats.bucketReady.Store(false)
	}
	t := &s.sess
	t.mu.Lock()
	first := t.lastErr != err.Error()
	t.lastErr = err.Error()
	pending := len(t.pending)
	t.mu.Unlock()
	if first {
		s.log.Warn("natssink: cannot write producer sessions to the bucket; retrying (a session resuming on another node meanwhile gets an older seq, and its resent records are deduplicated)",
			"bucket", t.bucket, "pending", pending, "err", err)
	}
}

// sweepKnownLocked forgets what the updater knew of keys it has not
// written for a session TTL (the bucket has dropped them), and, past
// maxKnownSessions, a quarter of the rest, whichever come first: the next
// update of one of those reads its key first.
func (s *Sink) sweepKnownLocked(now time.Time) {
	t := &s.sess
	for id, k := range t.known {
		if now.Sub(k.at) > s.cfg.SessionTTL {
			delete(t.known, id)
		}
	}
	if len(t.known) <= maxKnownSessions {
		return
	}
	for id := range t.known {
		if len(t.known) <= maxKnownSessions*3/4 {
			break
		}
		delete(t.known, id)
	}
}

// permissionDenied returns a channel closed at the next permissions
// violation NATS reports on the connection.
func (s *Sink) permissionDenied() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.denied
}

// orDenied returns the permissions violation reported since denied was
// taken, if any, instead of err (the timeout or cancellation it caused).
func (s *Sink) orDenied(denied <-chan struct{}, err error) error {
	select {
	case <-denied:
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.deniedErr != nil {
			return s.deniedErr
		}
	default:
	}
	return err
}
