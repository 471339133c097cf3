package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hello says HELLO for id (zero: a new session) and returns the WELCOME.
func (tc *testClient) hello(id SessionID) (SessionID, uint64) {
	tc.t.Helper()
	b, err := AppendHello(nil, id, "test")
	if err != nil {
		tc.t.Fatal(err)
	}
	if _, err := tc.c.Write(b); err != nil {
		tc.t.Fatal(err)
	}
	f, err := tc.next()
	if err != nil {
		tc.t.Fatalf("waiting for WELCOME: %v", err)
	}
	if f.Kind != KindWelcome {
		tc.t.Fatalf("HELLO answered with %v seq %d (code %v %q), want WELCOME", f.Kind, f.Seq, f.NackCode(), f.NackReason())
	}
	got := f.Welcome()
	if got.IsZero() || !id.IsZero() && got != id {
		tc.t.Fatalf("WELCOME for session %v, want %v", got, id)
	}
	return got, f.Seq
}

// sendRange sends DATA first..last (the session's seqs) with payloads
// naming their seq.
func (tc *testClient) sendRange(first, last uint64) {
	tc.t.Helper()
	tc.seq = first - 1
	for tc.seq < last {
		tc.data(fmt.Appendf(nil, "record %d", tc.seq+1))
	}
	tc.flush()
}

// expectSessionRecords checks that the sink holds exactly seqs 1..n of
// session id, once each, in order, with the payloads sendRange sent.
func expectSessionRecords(t *testing.T, sink *recordingSink, id SessionID, n uint64) {
	t.Helper()
	sink.mu.Lock()
	defer sink.mu.Unlock()
	var next uint64 = 1
	for _, r := range sink.recs {
		if r.Session != id {
			t.Fatalf("record seq %d has session %v, want %v", r.Seq, r.Session, id)
		}
		if r.Seq != next || string(r.Payload) != fmt.Sprintf("record %d", r.Seq) {
			t.Fatalf("record %d of the sink is seq %d %q, want seq %d once, in order", next, r.Seq, r.Payload, next)
		}
		next++
	}
	if next-1 != n {
		t.Fatalf("the sink holds %d records of the session, want %d", next-1, n)
	}
}

func waitDetached(t *testing.T, s *Server, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d detached sessions", n), 10*time.Second, func() bool {
		return s.Stats().Sessions.Detached == n
	})
}

// TestSessionResume: a session's seq goes on across connections; DATA the
// sink accepted before is acknowledged again but not stored again.
func TestSessionResume(t *testing.T) {
	sink := &recordingSink{}
	s := startServer(t, ServerConfig{Sink: sink})
	a := dialClient(t, s.Addr())
	id, seq := a.hello(SessionID{})
	if seq != 0 {
		t.Fatalf("a new session's WELCOME has seq %d, want 0", seq)
	}
	a.sendRange(1, 100)
	a.waitAck(100)
	a.c.Close()
	waitDetached(t, s, 1)

	b := dialClient(t, s.Addr())
	if _, seq := b.hello(id); seq != 100 {
		t.Fatalf("resumed WELCOME has seq %d, want 100", seq)
	}
	b.sendRange(95, 105) // 95..100 again, as a client that lost its ACKs would
	b.waitAck(105)
	expectSessionRecords(t, sink, id, 105)
	st := s.Stats().Sessions
	if st.Created != 1 || st.Resumed != 1 || st.Duplicates != 6 || st.Attached != 1 {
		t.Fatalf("session stats %+v", st)
	}
}

// gateSink holds every Write while closed is set, then records.
type gateSink struct {
	recordingSink
	gate    chan struct{}
	waiting atomic.Int64
}

func (g *gateSink) Write(b []Record) error {
	g.waiting.Add(1)
	<-g.gate
	g.waiting.Add(-1)
	return g.recordingSink.Write(b)
}

// TestSessionTakeover: a HELLO for a session attached to a live
// connection ends that connection (GOAWAY once what it queued is stored),
// and its WELCOME counts every record the old connection queued.
func TestSessionTakeover(t *testing.T) {
	sink := &gateSink{gate: make(chan struct{})}
	s := startServer(t, ServerConfig{Sink: sink})
	a := dialClient(t, s.Addr())
	id, _ := a.hello(SessionID{})
	a.sendRange(1, 60)
	waitFor(t, "the sink holding A's records", 10*time.Second, func() bool { return sink.waiting.Load() > 0 })

	b := dialClient(t, s.Addr())
	hb, _ := AppendHello(nil, id, "b")
	if _, err := b.c.Write(hb); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the takeover", 10*time.Second, func() bool { return s.Stats().Sessions.Takeovers == 1 })
	close(sink.gate)

	// A: ACKs up to 60, then GOAWAY 60, then the server closes.
	for {
		f, err := a.next()
		if err != nil {
			t.Fatalf("A before GOAWAY: %v", err)
		}
		if f.Kind == KindGoaway {
			if f.Seq != 60 {
				t.Fatalf("A's GOAWAY seq %d, want 60", f.Seq)
			}
			break
		}
		if f.Kind != KindAck {
			t.Fatalf("A got %v", f.Kind)
		}
	}
	if _, err := a.next(); err != io.EOF {
		t.Fatalf("A after GOAWAY: %v, want EOF", err)
	}
	f, err := b.next()
	if err != nil || f.Kind != KindWelcome || f.Seq != 60 || f.Welcome() != id {
		t.Fatalf("B got %v seq %d (%v), want WELCOME 60", f.Kind, f.Seq, err)
	}
	b.sendRange(61, 80)
	b.waitAck(80)
	expectSessionRecords(t, &sink.recordingSink, id, 80)
}

// TestSessionRefusals: an unknown session gets NACK 5; HELLO anywhere but
// first, or twice, is malformed.
func TestSessionRefusals(t *testing.T) {
	s := startServer(t, ServerConfig{Sink: &DiscardSink{}})
	unknown := SessionID{1, 2, 3}
	h, _ := AppendHello(nil, unknown, "")
	expectNackAndClose(t, s.Addr(), h, NackUnknownSession)

	zero, _ := AppendHello(nil, SessionID{}, "")
	d, _ := AppendData(nil, 1, []byte("x"))
	t.Run("not first", func(t *testing.T) {
		expectNackAndClose(t, s.Addr(), append(append([]byte(nil), d...), zero...), NackMalformed)
	})
	t.Run("twice", func(t *testing.T) {
		c := dialClient(t, s.Addr())
		c.hello(SessionID{})
		if _, err := c.c.Write(zero); err != nil {
			t.Fatal(err)
		}
		if f, err := c.next(); err != nil || f.Kind != KindNack || f.NackCode() != NackMalformed {
			t.Fatalf("second HELLO answered with %v code %v (%v), want NACK 1", f.Kind, f.NackCode(), err)
		}
		if _, err := c.next(); err != io.EOF {
			t.Fatalf("after NACK 1: %v, want EOF", err)
		}
	})
	long := appendHeader(nil, KindHello, 0, 0, SessionIDSize+MaxClientName+1)
	long = append(long, make([]byte, SessionIDSize+MaxClientName+1)...)
	t.Run("long name", func(t *testing.T) { expectNackAndClose(t, s.Addr(), long, NackMalformed) })
}

// TestSessionExpiryAndBound: detached sessions expire after SessionTTL and
// beyond MaxSessions the least recently seen goes; both are counted, and
// a HELLO for either gets NACK 5.
func TestSessionExpiryAndBound(t *testing.T) {
	s := startServer(t, ServerConfig{Sink: &DiscardSink{}, SessionTTL: time.Hour, MaxSessions: 2})
	var ids []SessionID
	for range 3 {
		c := dialClient(t, s.Addr())
		id, _ := c.hello(SessionID{})
		ids = append(ids, id)
		c.c.Close()
		waitFor(t, "the session detached", 10*time.Second, func() bool { return s.Stats().Sessions.Attached == 0 })
	}
	h, _ := AppendHello(nil, ids[0], "")
	expectNackAndClose(t, s.Addr(), h, NackUnknownSession)
	if st := s.Stats().Sessions; st.Evicted != 1 || st.Detached != 2 {
		t.Fatalf("after a third session with MaxSessions 2: %+v", st)
	}

	tbl := s.disp.sessions
	tbl.mu.Lock()
	tbl.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	tbl.mu.Unlock()
	h, _ = AppendHello(nil, ids[2], "")
	expectNackAndClose(t, s.Addr(), h, NackUnknownSession)
	if st := s.Stats().Sessions; st.Expired != 2 || st.Detached != 0 {
		t.Fatalf("after the TTL: %+v", st)
	}
}

// TestSessionSinkFailure: after the sink refuses a session's record, the
// server stores none of the records the connection queued after it, and
// ends the connection; the session resumes from the last stored seq and
// every record ends up stored once.
func TestSessionSinkFailure(t *testing.T) {
	sink := &gateSink{gate: make(chan struct{})}
	s := startServer(t, ServerConfig{Sink: sink})
	a := dialClient(t, s.Addr())
	id, _ := a.hello(SessionID{})
	a.sendRange(1, 10)
	close(sink.gate)
	a.waitAck(10)

	sink.mu.Lock()
	sink.fail = errors.New("disk on fire")
	sink.mu.Unlock()
	a.sendRange(11, 40)
	nacked := 0
	for {
		f, err := a.next()
		if err != nil {
			t.Fatalf("before GOAWAY: %v", err)
		}
		if f.Kind == KindNack {
			if f.NackCode() != NackStorageUnavailable && f.NackCode() != NackShuttingDown {
				t.Fatalf("NACK %v", f.NackCode())
			}
			nacked++
			continue
		}
		if f.Kind != KindGoaway || f.Seq != 10 {
			t.Fatalf("got %v seq %d, want NACKs then GOAWAY 10", f.Kind, f.Seq)
		}
		break
	}
	if nacked == 0 {
		t.Fatal("no NACK before GOAWAY")
	}
	sink.mu.Lock()
	sink.fail = nil
	sink.mu.Unlock()

	b := dialClient(t, s.Addr())
	if _, seq := b.hello(id); seq != 10 {
		t.Fatalf("WELCOME seq %d after the failure, want 10", seq)
	}
	b.sendRange(11, 40)
	b.waitAck(40)
	expectSessionRecords(t, &sink.recordingSink, id, 40)
}

// storeSink is a sink that keeps sessions for "the cluster" in memory:
// what another node would have stored, set by the test.
type storeSink struct {
	recordingSink
	smu  sync.Mutex
	seqs map[SessionID]uint64
	down error
}

func (s *storeSink) LookupSession(_ context.Context, id SessionID) (uint64, bool, error) {
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.down != nil {
		return 0, false, s.down
	}
	seq, ok := s.seqs[id]
	return seq, ok, nil
}

// TestSessionStore: with a sink that keeps sessions for the cluster, a
// HELLO for a session this node never saw resumes from the store's seq; a
// session this node knows resumes from the higher of its own and the
// store's; an unreachable store refuses the HELLO with NACK 6.
func TestSessionStore(t *testing.T) {
	elsewhere := SessionID{7, 7, 7}
	sink := &storeSink{seqs: map[SessionID]uint64{elsewhere: 40}} // stored through another node
	s := startServer(t, ServerConfig{Sink: sink})

	c := dialClient(t, s.Addr())
	if _, seq := c.hello(elsewhere); seq != 40 {
		t.Fatalf("WELCOME %d for a session the store has at 40", seq)
	}
	c.sendRange(38, 45) // 38..40 are duplicates
	c.waitAck(45)
	c.c.Close()
	waitDetached(t, s, 1)
	sink.mu.Lock()
	if n := len(sink.recs); n != 5 || sink.recs[0].Seq != 41 {
		t.Fatalf("stored %d records from seq %d, want 41..45", n, sink.recs[0].Seq)
	}
	sink.mu.Unlock()

	// The producer went on elsewhere: the store is ahead of this node.
	sink.smu.Lock()
	sink.seqs[elsewhere] = 60
	sink.smu.Unlock()
	c = dialClient(t, s.Addr())
	if _, seq := c.hello(elsewhere); seq != 60 {
		t.Fatalf("WELCOME %d, want the store's 60 over this node's 45", seq)
	}
	c.c.Close()
	waitDetached(t, s, 1)

	sink.smu.Lock()
	sink.down = errors.New("no route to the cluster")
	sink.smu.Unlock()
	h, _ := AppendHello(nil, elsewhere, "")
	expectNackAndClose(t, s.Addr(), h, NackStorageUnavailable)
	// A new session needs no store.
	c = dialClient(t, s.Addr())
	c.hello(SessionID{})
}
