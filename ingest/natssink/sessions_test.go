package natssink_test

// The session store: the highest stored seq of every producer session in
// a JetStream key-value bucket, written after the PubAcks, read by any
// node.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/ingest/natssink"
	"github.com/gyre-io/gyre/internal/natstest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

const testBucket = testStream + natssink.DefaultSessionBucketSuffix

func sessionID(i int) ingest.SessionID {
	var id ingest.SessionID
	copy(id[:], fmt.Sprintf("sess-%011d", i))
	return id
}

// sessionRecords makes records seqs [from, to] of session id (id zero:
// no session, connection 9).
func sessionRecords(id ingest.SessionID, from, to uint64) []ingest.Record {
	var b []ingest.Record
	for seq := from; seq <= to; seq++ {
		b = append(b, ingest.Record{Conn: 9, Seq: seq, Session: id, Payload: fmt.Appendf(nil, "%s/%d", id, seq)})
	}
	return b
}

// interleave merges batches record by record, as a dispatcher batch mixes
// connections.
func interleave(bs ...[]ingest.Record) []ingest.Record {
	var out []ingest.Record
	for i := 0; ; i++ {
		n := 0
		for _, b := range bs {
			if i < len(b) {
				out = append(out, b[i])
				n++
			}
		}
		if n == 0 {
			return out
		}
	}
}

// waitLookup waits until s finds session id at seq want, asking every
// millisecond for at most 10 s, and returns how long that took.
func waitLookup(t *testing.T, s *natssink.Sink, id ingest.SessionID, want uint64) time.Duration {
	t.Helper()
	began := time.Now()
	deadline := began.Add(10 * time.Second)
	for {
		seq, found, err := s.LookupSession(ctx(t, 5*time.Second), id)
		if err != nil {
			t.Fatalf("LookupSession(%s): %v", id, err)
		}
		if found && seq == want {
			return time.Since(began)
		}
		if found && seq > want {
			t.Fatalf("LookupSession(%s) = %d, want %d: past what was stored", id, seq, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("LookupSession(%s) = %d, %v after 10s, want %d", id, seq, found, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func kvValue(t *testing.T, n natsServer, bucket string, id ingest.SessionID) (string, bool) {
	t.Helper()
	kv, err := n.js(t).KeyValue(ctx(t, 5*time.Second), bucket)
	if err != nil {
		t.Fatalf("bucket %s: %v", bucket, err)
	}
	e, err := kv.Get(ctx(t, 5*time.Second), id.String())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(e.Value()), true
}

// TestLookupSession: Writes of several sessions (interleaved, over
// several batches, with sessionless records among them) leave each
// session's highest seq in the bucket, created by Open as documented; a
// second sink (another node) finds them; an unknown session is not
// found; sessionless records leave no key.
func TestLookupSession(t *testing.T) {
	n := startNATS(t)
	n.createStream(t)
	cfg := sinkConfig(n)
	cfg.SessionTTL = 90 * time.Minute
	s1 := openSink(t, cfg)
	s2 := openSink(t, cfg) // another node

	st, err := func() (jetstream.KeyValueStatus, error) {
		kv, err := n.js(t).KeyValue(ctx(t, 5*time.Second), testBucket)
		if err != nil {
			return nil, err
		}
		return kv.Status(ctx(t, 5*time.Second))
	}()
	if err != nil {
		t.Fatalf("the session bucket %s after Open: %v", testBucket, err)
	}
	if st.TTL() != 90*time.Minute || st.History() != 1 {
		t.Fatalf("bucket TTL %v, history %d; want the session TTL and 1", st.TTL(), st.History())
	}

	const sessions = 5
	high := map[ingest.SessionID]uint64{}
	for round := range 4 {
		var parts [][]ingest.Record
		for i := range sessions {
			id := sessionID(i)
			from := high[id] + 1
			to := from + uint64(10*(i+1)+round)
			parts = append(parts, sessionRecords(id, from, to))
			high[id] = to
		}
		parts = append(parts, sessionRecords(ingest.SessionID{}, uint64(100*round+1), uint64(100*round+30)))
		if err := s1.Write(interleave(parts...)); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	for id, want := range high {
		// The writing sink knows at once; the other one once the bucket
		// has it.
		if seq, found, err := s1.LookupSession(ctx(t, 5*time.Second), id); err != nil || !found || seq != want {
			t.Fatalf("writer's LookupSession(%s) = %d, %v, %v; want %d", id, seq, found, err, want)
		}
		waitLookup(t, s2, id, want)
		if v, ok := kvValue(t, n, testBucket, id); !ok || v != fmt.Sprint(want) {
			t.Fatalf("bucket value of %s: %q, %v; want %q", id, v, ok, fmt.Sprint(want))
		}
	}
	if seq, found, err := s2.LookupSession(ctx(t, 5*time.Second), sessionID(99)); err != nil || found || seq != 0 {
		t.Fatalf("LookupSession(unknown) = %d, %v, %v; want 0, false, nil", seq, found, err)
	}
	kv, err := n.js(t).KeyValue(ctx(t, 5*time.Second), testBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	nkeys := 0
	for k := range keys.Keys() {
		if _, err := ingest.ParseSessionID(k); err != nil {
			t.Errorf("key %q in the bucket is not a session id", k)
		}
		nkeys++
	}
	if nkeys != sessions {
		t.Fatalf("%d keys in the bucket, want one per session (%d)", nkeys, sessions)
	}
	st1, st2 := s1.Stats(), s2.Stats()
	if st1.SessionUpdates == 0 || st1.SessionUpdateErrors != 0 || st1.SessionsPending != 0 {
		t.Fatalf("writer's stats %+v", st1)
	}
	if st2.SessionsFound < sessions || st2.SessionLookupErrors != 0 {
		t.Fatalf("reader's stats %+v", st2)
	}
	t.Logf("%d bucket updates for %d Writes of %d sessions; lag mean %v, max %v", st1.SessionUpdates, 4, sessions, st1.SessionLagMean, st1.SessionLagMax)
}

// TestSessionSeqStopsAtFailure: a Write that fails half-way advances the
// session only to the record before the first failure, even when records
// after it were PubAcked: the bucket must never claim a record that may
// not be stored.
func TestSessionSeqStopsAtFailure(t *testing.T) {
	n := startNATS(t)
	n.createStream(t, func(c *jetstream.StreamConfig) { c.MaxMsgSize = 100 })
	s := openSink(t, sinkConfig(n))
	s2 := openSink(t, sinkConfig(n))
	id := sessionID(1)
	if err := s.Write(sessionRecords(id, 1, 5)); err != nil {
		t.Fatal(err)
	}
	b := sessionRecords(id, 6, 10)
	b[2].Payload = make([]byte, 200) // seq 8: refused
	if err := s.Write(b); err == nil {
		t.Fatal("Write of a refused record succeeded")
	}
	if got := len(n.readStream(t)); got < 7 {
		t.Fatalf("the stream holds %d records, want at least the 7 before and around the refused one", got)
	}
	waitLookup(t, s2, id, 7)
	// Still 7 a moment later: nothing else is on its way.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if seq, _, err := s2.LookupSession(ctx(t, 5*time.Second), id); err != nil || seq != 7 {
		t.Fatalf("LookupSession = %d, %v; want 7", seq, err)
	}
}

// TestSessionDuplicatesCountAsStored: records resent through another
// sink (the client moved, from an older WELCOME seq) get PubAcks marked
// duplicate: they count as stored, for the session too, and the bucket
// keeps the highest seq (a lower, late update of the first node does not
// lower it).
func TestSessionDuplicatesCountAsStored(t *testing.T) {
	n := startNATS(t)
	n.createStream(t)
	a := openSink(t, sinkConfig(n))
	b := openSink(t, sinkConfig(n))
	c := openSink(t, sinkConfig(n)) // reads only
	id := sessionID(7)
	if err := a.Write(sessionRecords(id, 1, 100)); err != nil {
		t.Fatal(err)
	}
	waitLookup(t, c, id, 100)
	// The client resumed on b from seq 80: 81..100 are duplicates, 101..150 new.
	if err := b.Write(sessionRecords(id, 81, 150)); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Duplicates != 20 || st.Published != 70 {
		t.Fatalf("b's stats %+v: want 70 PubAcked, 20 of them duplicates", st)
	}
	waitLookup(t, c, id, 150)
	// a's late Write of records it had already stored (a resend it was
	// still finishing): duplicates again, and its update must not lower
	// the bucket.
	if err := a.Write(sessionRecords(id, 101, 120)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.Stats().SessionConflicts == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a's stale update was not refused; stats %+v", a.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if v, _ := kvValue(t, n, testBucket, id); v != "150" {
		t.Fatalf("bucket value %q after a stale update, want 150", v)
	}
	if seq, _, err := a.LookupSession(ctx(t, 5*time.Second), id); err != nil || seq != 150 {
		t.Fatalf("a's LookupSession = %d, %v; want 150", seq, err)
	}
	if got := len(n.readStream(t)); got != 150 {
		t.Fatalf("the stream holds %d records, want 150", got)
	}
}

// TestCloseWritesPendingSessions: Close writes what is pending, so a
// node stopped on purpose leaves the bucket exact.
func TestCloseWritesPendingSessions(t *testing.T) {
	n := startNATS(t)
	n.createStream(t)
	s := openSink(t, sinkConfig(n))
	for i := range 50 {
		if err := s.Write(sessionRecords(sessionID(i), 1, uint64(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if v, ok := kvValue(t, n, testBucket, sessionID(i)); !ok || v != fmt.Sprint(i+1) {
			t.Fatalf("session %d after Close: %q, %v; want %d", i, v, ok, i+1)
		}
	}
	if st := s.Stats(); st.SessionsPending != 0 {
		t.Fatalf("stats after Close %+v", st)
	}
}

// TestLookupSessionNATSDown: with NATS unreachable a lookup fails at once
// with the cause; when NATS is back, it answers again (and the updates
// that waited are written).
func TestLookupSessionNATSDown(t *testing.T) {
	n := startNATS(t)
	n.createStream(t)
	s := openSink(t, sinkConfig(n))
	id := sessionID(3)
	if err := s.Write(sessionRecords(id, 1, 10)); err != nil {
		t.Fatal(err)
	}
	n.stop()
	waitHealth(t, s, false, 5*time.Second)
	began := time.Now()
	_, _, err := s.LookupSession(ctx(t, 5*time.Second), id)
	if err == nil || !strings.Contains(err.Error(), "not connected to NATS") || !strings.Contains(err.Error(), testBucket) {
		t.Fatalf("LookupSession with NATS down: %v, want an error naming the bucket and the lost connection", err)
	}
	if d := time.Since(began); d > time.Second {
		t.Fatalf("LookupSession took %v to fail with NATS down", d)
	}
	if st := s.Stats(); st.SessionLookupErrors != 1 {
		t.Fatalf("stats %+v: want 1 lookup error", st)
	}
	n.start()
	waitHealth(t, s, true, 10*time.Second)
	s2 := openSink(t, sinkConfig(n))
	waitLookup(t, s2, id, 10)
}

// TestLookupSessionBounded: the caller's context bounds a lookup.
func TestLookupSessionBounded(t *testing.T) {
	n := startNATS(t)
	n.createStream(t)
	s := openSink(t, sinkConfig(n))
	c, cancel := context.WithCancel(context.Background())
	cancel()
	began := time.Now()
	if _, _, err := s.LookupSession(c, sessionID(1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("LookupSession with a canceled context: %v", err)
	}
	if d := time.Since(began); d > 100*time.Millisecond {
		t.Fatalf("LookupSession with a canceled context took %v", d)
	}
}

// TestSessionBucketConfig: a bucket named in the configuration is
// created with that name; a bucket the sink's user may not create makes
// Open fail, naming it; a bad name is refused before anything is dialled.
func TestSessionBucketConfig(t *testing.T) {
	t.Run("named", func(t *testing.T) {
		n := startNATS(t)
		n.createStream(t)
		cfg := sinkConfig(n)
		cfg.SessionBucket = "my-sessions"
		s := openSink(t, cfg)
		id := sessionID(4)
		if err := s.Write(sessionRecords(id, 1, 3)); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if v, ok := kvValue(t, n, "my-sessions", id); !ok || v != "3" {
			t.Fatalf("bucket my-sessions: %q, %v", v, ok)
		}
	})
	t.Run("create refused", func(t *testing.T) {
		n := natsServer{natstest.NewWith(t, 0, func(o *server.Options) {
			o.Users[0].Permissions = &server.Permissions{Publish: &server.SubjectPermission{
				Allow: []string{">"}, Deny: []string{"$JS.API.STREAM.CREATE.KV_" + testBucket},
			}}
		}, "ingest", "s3cret")}
		n.start()
		n.createStream(t)
		cfg := sinkConfig(n)
		cfg.User, cfg.Password = "ingest", "s3cret"
		_, err := natssink.Open(ctx(t, 10*time.Second), cfg)
		if err == nil || !strings.Contains(err.Error(), `cannot create the session bucket "`+testBucket+`"`) {
			t.Fatalf("Open without the right to create the bucket: %v", err)
		}
		t.Logf("Open: %v", err)
	})
	t.Run("bad name", func(t *testing.T) {
		cfg := natssink.Config{URLs: []string{"nats://127.0.0.1:1"}, Stream: "S", Subject: "a.b", SessionBucket: "a.b"}
		if _, err := natssink.Open(ctx(t, 5*time.Second), cfg); err == nil || !strings.Contains(err.Error(), `session bucket name "a.b"`) {
			t.Fatalf("Open: %v", err)
		}
		cfg = natssink.Config{URLs: []string{"nats://127.0.0.1:1"}, Stream: "S:1", Subject: "a.b"}
		if _, err := natssink.Open(ctx(t, 5*time.Second), cfg); err == nil || !strings.Contains(err.Error(), "default session bucket name") {
			t.Fatalf("Open: %v", err)
		}
	})
}

// TestSessionBucketAfterUnreachableOpen: NATS unreachable at Open: once
// it is up, the sink creates the bucket by itself and the sessions it
// stores are found.
func TestSessionBucketAfterUnreachableOpen(t *testing.T) {
	n := newNATS(t, 0)
	s := openSink(t, sinkConfig(n))
	if _, _, err := s.LookupSession(ctx(t, 5*time.Second), sessionID(1)); err == nil {
		t.Fatal("LookupSession succeeded with NATS down")
	}
	n.start()
	n.createStream(t)
	waitHealth(t, s, true, 10*time.Second)
	if err := s.Write(sessionRecords(sessionID(1), 1, 4)); err != nil {
		t.Fatal(err)
	}
	waitLookup(t, openSink(t, sinkConfig(n)), sessionID(1), 4)
}

// BenchmarkWrite: what the session store costs a Write (1024 records of
// 64 sessions) beside records without a session, which it does not touch.
func BenchmarkWrite(b *testing.B) {
	for _, withSession := range []bool{false, true} {
		b.Run(fmt.Sprintf("session=%v", withSession), func(b *testing.B) {
			n := natsServer{natstest.Start(b)}
			n.CreateStream(b, jetstream.StreamConfig{Name: testStream, Subjects: []string{"ingest.>"}, Storage: jetstream.MemoryStorage})
			s, err := natssink.Open(context.Background(), natssink.Config{URLs: []string{n.url()}, Stream: testStream, Subject: testSubject, Logger: testLogger()})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			batch := make([]ingest.Record, 1024)
			payload := make([]byte, 100)
			var seq uint64
			b.ResetTimer()
			for range b.N {
				seq++
				for i := range batch {
					batch[i] = ingest.Record{Conn: uint64(i % 64), Seq: seq*1024 + uint64(i), Payload: payload}
					if withSession {
						batch[i].Session = sessionID(i % 64)
					}
				}
				if err := s.Write(batch); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			st := s.Stats()
			b.ReportMetric(float64(st.SessionUpdates)/float64(b.N), "kv-updates/op")
		})
	}
}
