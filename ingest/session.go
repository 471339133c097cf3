package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// SessionID names a producer session: 16 bytes the server draws from
// crypto/rand when it opens the session. The zero value in a HELLO asks
// for a new session.
type SessionID [SessionIDSize]byte

// IsZero reports whether id is all zero (no session).
func (id SessionID) IsZero() bool { return id == SessionID{} }

// String returns id as 32 lower-case hex digits, the form ParseSessionID
// reads and `ingestd read` prints.
func (id SessionID) String() string { return hex.EncodeToString(id[:]) }

// ParseSessionID parses 32 hex digits.
func ParseSessionID(s string) (SessionID, error) {
	var id SessionID
	if len(s) != 2*SessionIDSize {
		return id, fmt.Errorf("ingest: session id %q: want %d hex digits", s, 2*SessionIDSize)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("ingest: session id %q: %w", s, err)
	}
	return id, nil
}

// Defaults for DispatcherConfig's session fields.
const (
	// DefaultSessionTTL: a producer that lost its connection has a day to
	// come back (a night's outage, a weekend's is too long) before it must
	// open a new session, and so before what it resends may be stored
	// twice.
	DefaultSessionTTL = 24 * time.Hour
	// DefaultMaxSessions bounds the detached sessions kept: about 200
	// bytes each, so 100,000 of them cost about 20 MB at most.
	DefaultMaxSessions = 100_000
)

// ErrSessionTakenOver ends a connection (or a HELLO still waiting) whose
// session a newer HELLO took over.
var ErrSessionTakenOver = errors.New("ingest: session taken over by a newer connection")

// errSessionFailed fails the records a session's connection queued after
// one the sink refused: they are not stored, so that the session's highest
// accepted seq never passes a record that is not in the sink.
var errSessionFailed = errors.New("ingest: an earlier record of the session was not stored")

// Session is a producer session attached to one connection (or QUIC
// stream). Its seq space outlives connections: the dispatcher records the
// highest seq the sink accepted, and a HELLO after a reconnect (or a
// restart, when the sink recovers sessions) resumes from there.
type Session struct {
	id SessionID
	t  *Sessions

	// accepted is the highest seq the sink accepted. The dispatcher
	// stores it before the producer hears of the completion, so it is
	// complete once the producer has heard of all of them.
	accepted atomic.Uint64
	// failed: the sink refused one of the attached connection's records,
	// so its later ones are refused too (errSessionFailed) and the
	// connection ends; cleared for the next connection.
	failed atomic.Bool
	// floor is accepted as of the WELCOME: DATA at or below it is a
	// duplicate. Read and written by the attached connection only.
	floor uint64

	// Under t.mu:
	name       string
	attached   bool
	takeover   func()         // asks the attached connection to end
	waiter     *attachRequest // a HELLO waiting for the attached connection to end
	lastSeen   time.Time      // when it was detached (or its last record, when recovered)
	prev, next *Session       // the detached list, oldest first
}

// ID returns the session's id.
func (s *Session) ID() SessionID { return s.id }

// accept raises the highest accepted seq to seq (never lowers it: a
// session store may have told of a higher one meanwhile).
func (s *Session) accept(seq uint64) {
	for {
		cur := s.accepted.Load()
		if seq <= cur || s.accepted.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// Duplicate reports whether a DATA frame with this seq was accepted
// before the connection attached (its seq is at or below WELCOME's): the
// caller does not queue it, and covers it with its ACKs as if it had been
// stored. It counts each one.
func (s *Session) Duplicate(seq uint64) bool {
	if seq > s.floor {
		return false
	}
	s.t.duplicates.Add(1)
	return true
}

// Detach ends the session's attachment. The connection calls it once,
// when it is closed and every record it queued has been reported (Done):
// a HELLO waiting to take the session over is answered now, with the seq
// those completions left; otherwise the session is kept, detached, for
// the TTL.
func (s *Session) Detach() { s.t.detach(s) }

// SessionProducer is a Producer whose messages belong to a producer
// session. The dispatcher records each accepted message's seq in the
// session, stores the session id with the record, and, after the sink
// refused one of its messages, refuses the ones the producer queued after
// it.
type SessionProducer interface {
	Producer
	// Session returns the producer's session, or nil. It must not change
	// while messages of the producer are queued.
	Session() *Session
}

// sessionOf returns p's session, or nil.
func sessionOf(p Producer) *Session {
	if sp, ok := p.(SessionProducer); ok {
		return sp.Session()
	}
	return nil
}

// attachRequest is a HELLO for a session attached elsewhere, waiting for
// that connection to end.
type attachRequest struct {
	takeover func()
	ready    func(s *Session, seq uint64, err error)
}

// SessionConfig bounds a session table; zero fields take the defaults.
type sessionConfig struct {
	ttl time.Duration
	max int
}

// Sessions is the producer-session table of a dispatcher, shared by every
// transport that feeds it. Methods are safe for concurrent use.
type Sessions struct {
	cfg   sessionConfig
	now   func() time.Time // time.Now; tests move it forward
	store SessionStore     // the sink, when it keeps sessions for the cluster; nil: this table alone

	mu         sync.Mutex
	byID       map[SessionID]*Session
	head, tail *Session // detached sessions, least recently seen first
	detachedN  int

	created, resumed, takeovers, expired, evicted, duplicates atomic.Uint64
}

// SessionStats are a session table's gauges and counters.
type SessionStats struct {
	Attached, Detached int
	// Created counts new sessions, Resumed HELLOs that resumed one,
	// Takeovers those that took one over from a live connection.
	Created, Resumed, Takeovers uint64
	// Expired counts detached sessions dropped after the TTL, Evicted
	// those dropped, oldest first, to keep within the bound.
	Expired, Evicted uint64
	// Duplicates counts DATA frames not stored again because the session
	// had accepted their seq before.
	Duplicates uint64
}

func newSessions(cfg sessionConfig) *Sessions {
	return &Sessions{cfg: cfg, now: time.Now, byID: make(map[SessionID]*Session)}
}

// Stats returns the table's gauges and counters, after dropping the
// sessions that expired.
func (t *Sessions) Stats() SessionStats {
	t.mu.Lock()
	t.sweepLocked(t.now())
	st := SessionStats{Attached: len(t.byID) - t.detachedN, Detached: t.detachedN}
	t.mu.Unlock()
	st.Created, st.Resumed, st.Takeovers = t.created.Load(), t.resumed.Load(), t.takeovers.Load()
	st.Expired, st.Evicted, st.Duplicates = t.expired.Load(), t.evicted.Load(), t.duplicates.Load()
	return st
}

// Attach answers a HELLO (hello is the frame a Decoder returned) for a
// producer that runs on its own goroutine (a QUIC stream): it opens a new
// session when the HELLO's id is zero, resumes a detached one, or takes
// over one attached elsewhere, asking that connection to end (its takeover
// func, which must not block) and waiting until it has. It returns the
// session and the seq for the WELCOME. It fails with an error matching
// ErrUnknownSession for an id it does not know, with ErrSessionTakenOver
// if a newer HELLO took the session first, or with ctx's error.
//
// takeover is called, at most once, from another goroutine when a later
// HELLO takes the session over; the connection then ends (GOAWAY) and
// calls Detach once its queued records are reported.
func (t *Sessions) Attach(ctx context.Context, hello Frame, takeover func()) (*Session, uint64, error) {
	id, name := hello.Hello()
	type answer struct {
		s   *Session
		seq uint64
		err error
	}
	ch := make(chan answer, 1)
	req := &attachRequest{takeover: takeover, ready: func(s *Session, seq uint64, err error) { ch <- answer{s, seq, err} }}
	s, seq, pending, err := t.attach(id, string(name), req)
	if !pending {
		return s, seq, err
	}
	select {
	case a := <-ch:
		return a.s, a.seq, a.err
	case <-ctx.Done():
	}
	if s != nil && t.cancelWait(s, req) {
		return nil, 0, ctx.Err()
	}
	// Answered meanwhile: give back what was granted.
	if a := <-ch; a.err == nil {
		a.s.Detach()
	}
	return nil, 0, ctx.Err()
}

// attach is Attach for a caller that must not block (a reactor): when the
// session is attached elsewhere it returns pending, and req.ready is
// called later, from another goroutine, once that connection has ended
// (or with ErrSessionTakenOver if a newer HELLO comes first). A caller
// that closes meanwhile must still take the answer and Detach a session
// granted to it.
func (t *Sessions) attach(id SessionID, name string, req *attachRequest) (s *Session, seq uint64, pending bool, err error) {
	if t.store != nil && !id.IsZero() {
		// Ask the cluster first, off the caller's goroutine (a reactor
		// must not wait on the network); the answer comes through ready.
		go t.lookupThenAttach(id, name, req)
		return nil, 0, true, nil
	}
	return t.attachLocal(id, name, req, storeAnswer{})
}

// sessionLookupTimeout bounds a session store's answer to a HELLO.
const sessionLookupTimeout = 5 * time.Second

// storeAnswer is what the session store said of a resumed session.
type storeAnswer struct {
	asked bool
	seq   uint64
	found bool
	err   error
}

// lookupThenAttach asks the session store, then attaches as attach does,
// answering through req.ready.
func (t *Sessions) lookupThenAttach(id SessionID, name string, req *attachRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), sessionLookupTimeout)
	seq, found, err := t.store.LookupSession(ctx, id)
	cancel()
	s, wseq, pending, aerr := t.attachLocal(id, name, req, storeAnswer{asked: true, seq: seq, found: found, err: err})
	if !pending {
		req.ready(s, wseq, aerr)
	}
}

// attachLocal attaches in this node's table, given what the session store
// (if asked) knows of the session.
func (t *Sessions) attachLocal(id SessionID, name string, req *attachRequest, st storeAnswer) (s *Session, seq uint64, pending bool, err error) {
	t.mu.Lock()
	t.sweepLocked(t.now())
	if id.IsZero() {
		s, err = t.createLocked(name, req.takeover)
		t.mu.Unlock()
		return s, 0, false, err
	}
	if st.err != nil {
		t.mu.Unlock()
		return nil, 0, false, &ProtocolError{Code: NackStorageUnavailable, Reason: "session store unavailable: " + st.err.Error()}
	}
	s = t.byID[id]
	if s == nil && st.found {
		// Opened on another node (or before a restart): this node takes
		// it from the store's seq.
		s = &Session{id: id, t: t, name: name, attached: true, takeover: req.takeover, floor: st.seq}
		s.accepted.Store(st.seq)
		t.byID[id] = s
		t.mu.Unlock()
		t.resumed.Add(1)
		return s, st.seq, false, nil
	}
	if s == nil {
		t.mu.Unlock()
		return nil, 0, false, &ProtocolError{Code: NackUnknownSession, Reason: "unknown or expired session " + id.String()}
	}
	if st.found {
		s.accept(st.seq) // the producer may have gone on elsewhere since
	}
	s.name = name
	if !s.attached {
		t.unlinkLocked(s)
		s.attached, s.takeover = true, req.takeover
		s.failed.Store(false)
		s.floor = s.accepted.Load()
		t.mu.Unlock()
		t.resumed.Add(1)
		return s, s.floor, false, nil
	}
	// Attached elsewhere: take it over. A HELLO already waiting loses.
	prev, takeover := s.waiter, s.takeover
	s.waiter, s.takeover = req, nil
	t.mu.Unlock()
	t.takeovers.Add(1)
	if prev != nil {
		prev.ready(nil, 0, ErrSessionTakenOver)
	}
	if takeover != nil {
		takeover()
	}
	return s, 0, true, nil
}

// cancelWait withdraws req from s; false means it was answered already.
func (t *Sessions) cancelWait(s *Session, req *attachRequest) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s.waiter != req {
		return false
	}
	s.waiter = nil
	return true
}

// createLocked opens a session with a fresh random id.
func (t *Sessions) createLocked(name string, takeover func()) (*Session, error) {
	s := &Session{t: t, name: name, attached: true, takeover: takeover}
	for {
		if _, err := rand.Read(s.id[:]); err != nil {
			return nil, fmt.Errorf("ingest: new session id: %w", err)
		}
		if _, taken := t.byID[s.id]; !taken && !s.id.IsZero() {
			break
		}
	}
	t.byID[s.id] = s
	t.created.Add(1)
	return s, nil
}

func (t *Sessions) detach(s *Session) {
	t.mu.Lock()
	if w := s.waiter; w != nil {
		s.waiter = nil
		s.takeover = w.takeover
		s.failed.Store(false)
		s.floor = s.accepted.Load()
		t.mu.Unlock()
		w.ready(s, s.floor, nil)
		return
	}
	s.attached, s.takeover = false, nil
	s.lastSeen = t.now()
	t.linkLocked(s)
	t.boundLocked()
	t.mu.Unlock()
}

// restore adds the sessions a sink recovered, detached, as last seen at
// the time of their newest record; those already past the TTL are not
// kept, and past the bound the oldest go.
func (t *Sessions) restore(rs []RecoveredSession) {
	slices.SortFunc(rs, func(a, b RecoveredSession) int { return a.Last.Compare(b.Last) })
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range rs {
		if r.ID.IsZero() || now.Sub(r.Last) > t.cfg.ttl {
			continue
		}
		if old := t.byID[r.ID]; old != nil {
			old.accepted.Store(max(old.accepted.Load(), r.Seq))
			continue
		}
		s := &Session{id: r.ID, t: t, lastSeen: r.Last}
		s.accepted.Store(r.Seq)
		t.byID[r.ID] = s
		t.linkLocked(s)
	}
	t.boundLocked()
}

// linkLocked appends s, just detached, to the detached list.
func (t *Sessions) linkLocked(s *Session) {
	s.prev, s.next = t.tail, nil
	if t.tail != nil {
		t.tail.next = s
	} else {
		t.head = s
	}
	t.tail = s
	t.detachedN++
}

func (t *Sessions) unlinkLocked(s *Session) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		t.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else {
		t.tail = s.prev
	}
	s.prev, s.next = nil, nil
	t.detachedN--
}

// sweepLocked drops the detached sessions seen longer than the TTL ago:
// they are at the head, since the list is in order of lastSeen.
func (t *Sessions) sweepLocked(now time.Time) {
	for t.head != nil && now.Sub(t.head.lastSeen) > t.cfg.ttl {
		s := t.head
		t.unlinkLocked(s)
		delete(t.byID, s.id)
		t.expired.Add(1)
	}
}

// boundLocked drops the oldest detached sessions beyond the bound.
func (t *Sessions) boundLocked() {
	for t.detachedN > t.cfg.max {
		s := t.head
		t.unlinkLocked(s)
		delete(t.byID, s.id)
		t.evicted.Add(1)
	}
}

// RecoveredSession is what a sink knows of a session at start: the highest
// seq it stored for it and when it stored the newest of its records.
type RecoveredSession struct {
	ID   SessionID
	Seq  uint64
	Last time.Time
}

// SessionStore is a Sink that keeps the producer sessions of every node
// writing to it (the JetStream sink does, in a key-value bucket), so that
// a session opened on one node resumes on another, and on any node after
// all of them restarted. It learns each session's seqs from the records
// it stores (Record.Session and Record.Seq). The dispatcher asks it on
// every HELLO that resumes a session, since the node's own table may be
// stale (the producer may have gone on elsewhere meanwhile), and takes the
// higher of its seq and the local one. The answer may lag what the sink
// stored by a little (the store is updated after the sink has accepted
// the records): the sink must then recognise the resent records as
// duplicates (natssink does, by their Nats-Msg-Id).
type SessionStore interface {
	Sink
	// LookupSession returns the highest seq of session id that the sink
	// has stored, and found false when it has no record of the session.
	// It may block on the network; ctx bounds it. An error means the
	// store cannot answer now (the HELLO is refused with NACK 6).
	LookupSession(ctx context.Context, id SessionID) (seq uint64, found bool, err error)
}

// SessionRecoverer is a Sink that stores each record's session and can
// tell, when the dispatcher starts, every session's highest stored seq, so
// that producers resume their sessions after a restart. FileSink is one.
type SessionRecoverer interface {
	Sink
	RecoveredSessions() []RecoveredSession
}
