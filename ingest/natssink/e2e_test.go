package natssink_test

// End to end: the ingest server (reactors, dispatcher, sessions) in
// front of the JetStream sink, the Go client sending to it over TCP on
// loopback, the real NATS server behind.

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/ingest/client"
	"github.com/gyre-io/gyre/ingest/natssink"
	"github.com/gyre-io/gyre/internal/leakcheck"
	"github.com/prometheus/client_golang/prometheus"
)

// noLeaks checks, once the test and all its cleanups are done (the NATS
// server's too), that no descriptor or io_uring ring is left behind.
// Call it first.
func noLeaks(t *testing.T) {
	before := leakcheck.Take(t)
	t.Cleanup(func() { leakcheck.Check(t, before) })
}

// startIngest runs an ingest server over sink on a loopback port, shut
// down at cleanup before the sink is closed.
func startIngest(t *testing.T, sink *natssink.Sink) *ingest.Server {
	t.Helper()
	srv, err := ingest.NewServer(ingest.ServerConfig{
		Addr:     "127.0.0.1:0",
		Reactors: 2,
		Sink:     sink,
		Logger:   testLogger(),
	})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(c); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		_ = sink.Close()
	})
	return srv
}

func dial(t *testing.T, srv *ingest.Server) *client.Client {
	t.Helper()
	c, err := client.Dial(ctx(t, 10*time.Second), client.Config{
		Endpoints: []string{"tcp://" + srv.Addr()},
		Window:    1024,
		Backoff:   client.Backoff{Initial: 5 * time.Millisecond, Max: 200 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(ctx(t, 10*time.Second)) })
	return c
}

func e2ePayload(i int) []byte { return []byte("e2e/" + strconv.Itoa(i) + "/0123456789abcdef") }

// checkSession checks that the stream holds records 0..n-1 of one
// session exactly once, in order, payload intact, with the session's
// Nats-Msg-Ids.
func checkSession(t *testing.T, msgs []storedMsg, n int, sess ingest.SessionID) {
	t.Helper()
	if len(msgs) != n {
		seen := map[string]int{}
		for _, m := range msgs {
			seen[m.Data]++
		}
		missing, twice := 0, 0
		for i := range n {
			switch seen[string(e2ePayload(i))] {
			case 0:
				missing++
			case 1:
			default:
				twice++
			}
		}
		t.Fatalf("the stream holds %d messages, want %d (%d missing, %d more than once)", len(msgs), n, missing, twice)
	}
	for i, m := range msgs {
		if m.Data != string(e2ePayload(i)) {
			t.Fatalf("message %d: %q, want %q (out of order or damaged)", i, m.Data, e2ePayload(i))
		}
		if want := fmt.Sprintf("s-%s-%d", sess, i+1); m.ID != want {
			t.Fatalf("message %d: Nats-Msg-Id %q, want %q", i, m.ID, want)
		}
	}
}

// TestEndToEndSession: 20,000 records pipelined in one session through
// the ingest server: Flush succeeds only once all are PubAcked, and the
// stream holds each exactly once, in session order.
func TestEndToEndSession(t *testing.T) {
	noLeaks(t)
	n := startNATS(t)
	n.createStream(t)
	s := openSink(t, sinkConfig(n))
	srv := startIngest(t, s)
	c := dial(t, srv)
	const total = 20_000
	send := ctx(t, 20*time.Second)
	for i := range total {
		if _, err := c.Send(send, e2ePayload(i)); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	if err := c.Flush(send); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if st := c.Stats(); st.Acked != total {
		t.Fatalf("client stats %+v: want %d acknowledged", st, total)
	}
	checkSession(t, n.readStream(t), total, c.Session())
	if st := s.Stats(); st.Published != total || len(st.Errors) != 0 {
		t.Fatalf("sink stats %+v", st)
	}
}

// TestEndToEndNATSDownAtStart: the node starts while NATS is down; the
// client's records are refused (NACK 6) and wait in the client, which
// retries; once NATS is up with the stream, Flush succeeds and the stream
// holds every record exactly once, in order.
func TestEndToEndNATSDownAtStart(t *testing.T) {
	noLeaks(t)
	n := newNATS(t, 0)
	s := openSink(t, sinkConfig(n))
	if s.Health() == nil {
		t.Fatal("healthy with NATS down")
	}
	srv := startIngest(t, s)
	c := dial(t, srv)
	const total = 3000
	sent := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		send := ctx(t, 30*time.Second)
		for i := range total {
			if _, err := c.Send(send, e2ePayload(i)); err != nil {
				sent <- fmt.Errorf("Send %d: %w", i, err)
				return
			}
		}
		sent <- nil
	})
	defer wg.Wait()
	// Records were refused while NATS was down.
	waitFor(t, "records refused by the sink", func() bool { return s.Stats().Errors["not_connected"] > 0 })
	if st := c.Stats(); st.Acked != 0 {
		t.Fatalf("%d records acknowledged with NATS down", st.Acked)
	}
	n.start()
	n.createStream(t)
	waitHealth(t, s, true, 10*time.Second)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(ctx(t, 20*time.Second)); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	checkSession(t, n.readStream(t), total, c.Session())
	t.Logf("client %+v; sink %+v", c.Stats(), s.Stats())
}

// waitFor waits until cond holds, checking it every millisecond, for at
// most 10 s: for counters, which have no notification of their own.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// dialAll connects a client to the servers' endpoints, in order.
func dialAll(t *testing.T, srvs ...*ingest.Server) *client.Client {
	t.Helper()
	var eps []string
	for _, s := range srvs {
		eps = append(eps, "tcp://"+s.Addr())
	}
	c, err := client.Dial(ctx(t, 10*time.Second), client.Config{
		Endpoints:   eps,
		Window:      1024,
		DialTimeout: 2 * time.Second,
		Backoff:     client.Backoff{Initial: 5 * time.Millisecond, Max: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(ctx(t, 10*time.Second)) })
	return c
}

// TestEndToEndSessionMovesNode: two ingest nodes on one NATS, each with
// its own sink; a client sends pipelined records in one session to the
// first, which is closed mid-load (connections cut, nothing more
// acknowledged); the client resumes its session on the second (WELCOME
// from the session bucket, not NACK 5), Flush succeeds, and the stream
// holds every record once, in session order.
func TestEndToEndSessionMovesNode(t *testing.T) {
	noLeaks(t)
	n := startNATS(t)
	n.createStream(t)
	sa, sb := openSink(t, sinkConfig(n)), openSink(t, sinkConfig(n))
	a, b := startIngest(t, sa), startIngest(t, sb)
	c := dialAll(t, a, b)
	const total = 20_000
	sent := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		send := ctx(t, 30*time.Second)
		for i := range total {
			if _, err := c.Send(send, e2ePayload(i)); err != nil {
				sent <- fmt.Errorf("Send %d: %w", i, err)
				return
			}
		}
		sent <- nil
	})
	defer wg.Wait()
	waitFor(t, "a quarter of the records acknowledged", func() bool { return c.Stats().Acked >= total/4 })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(ctx(t, 20*time.Second)); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	checkSession(t, n.readStream(t), total, c.Session())
	st := c.Stats()
	if st.SessionsLost != 0 || st.Acked != total {
		t.Fatalf("client stats %+v: want every record acknowledged and no session lost", st)
	}
	if got := sb.Stats(); got.SessionsFound == 0 {
		t.Fatalf("the second node did not find the session in the bucket; its sink's stats %+v", got)
	}
	t.Logf("client %+v; first sink %+v; second sink %+v", st, sa.Stats(), sb.Stats())
}

// TestSessionUpdateLag measures, under pipelined load through the ingest
// server (16 clients, a session each), the lag from a Write storing
// records to the session bucket holding their seq, and how many bucket
// updates the records cost. docs/scale-out.md quotes the figures.
func TestSessionUpdateLag(t *testing.T) {
	noLeaks(t)
	n := startNATS(t)
	n.createStream(t)
	s := openSink(t, sinkConfig(n))
	srv := startIngest(t, s)
	const clients, per = 16, 5000
	cs := make([]*client.Client, clients)
	for i := range cs {
		cs[i] = dial(t, srv)
	}
	began := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, c := range cs {
		wg.Go(func() {
			send := ctx(t, 30*time.Second)
			for k := range per {
				if _, err := c.Send(send, e2ePayload(i*per+k)); err != nil {
					errs <- err
					return
				}
			}
			errs <- c.Flush(send)
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the bucket updated", func() bool { return s.Stats().SessionsPending == 0 })
	st := s.Stats()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector())
	p50, p99 := histQuantile(t, reg, "gyre_jetstream_session_update_lag_seconds", 0.5), histQuantile(t, reg, "gyre_jetstream_session_update_lag_seconds", 0.99)
	t.Logf("session bucket under load: %d records of %d sessions in %v (%.0f records/s); %d bucket updates (%.1f records each); lag mean %v, p50 <= %v, p99 <= %v, max %v; update errors %d",
		clients*per, clients, elapsed.Round(time.Millisecond), float64(clients*per)/elapsed.Seconds(), st.SessionUpdates,
		float64(clients*per)/float64(max(st.SessionUpdates, 1)), st.SessionLagMean.Round(10*time.Microsecond), p50, p99,
		st.SessionLagMax.Round(10*time.Microsecond), st.SessionUpdateErrors)
	for _, c := range cs {
		if seq, found, err := s.LookupSession(ctx(t, 5*time.Second), c.Session()); err != nil || !found || seq != per {
			t.Fatalf("LookupSession(%s) = %d, %v, %v; want %d", c.Session(), seq, found, err, per)
		}
	}
	if st.SessionUpdateErrors != 0 {
		t.Fatalf("update errors: %+v", st)
	}
}

// histQuantile returns the upper bound of the bucket of a histogram of
// reg that holds quantile q.
func histQuantile(t *testing.T, reg *prometheus.Registry, name string, q float64) time.Duration {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		want := q * float64(h.GetSampleCount())
		for _, b := range h.GetBucket() {
			if float64(b.GetCumulativeCount()) >= want {
				return time.Duration(b.GetUpperBound() * float64(time.Second))
			}
		}
		return -1
	}
	t.Fatalf("no histogram %s", name)
	return 0
}
