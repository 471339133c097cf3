package main

// Sessions that belong to the cluster, with real ingestd processes and
// the real NATS server (one, or a three-node JetStream cluster, in this
// test process): a producer session moves to another ingestd node when
// its node is killed, resumes after every node restarted, and survives a
// NATS node and then its ingestd going down under load, with every
// acknowledged record in the stream exactly once.

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/ingest/client"
	"github.com/gyre-io/gyre/internal/leakcheck"
	"github.com/gyre-io/gyre/internal/natstest"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

// clusterNoLeaks checks, once the test and all its cleanups are done (its
// processes, clients and NATS servers), that no goroutine or descriptor
// of this process is left behind. Call it first.
func clusterNoLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	before := leakcheck.Take(t)
	t.Cleanup(func() {
		httpClient.CloseIdleConnections()
		goleak.VerifyNone(t, ignore)
		leakcheck.Check(t, before)
	})
}

// dialNodes connects a client to the nodes' TCP addresses, in order;
// the client is closed at cleanup.
func dialNodes(t *testing.T, session ingest.SessionID, addrs ...string) *client.Client {
	t.Helper()
	var eps []string
	for _, a := range addrs {
		eps = append(eps, "tcp://"+a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{
		Endpoints:   eps,
		Window:      256,
		DialTimeout: 2 * time.Second,
		Backoff:     client.Backoff{Initial: 5 * time.Millisecond, Max: 100 * time.Millisecond},
		Session:     session,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

// waitClientAcked waits until c has n records acknowledged, for at most 30 s.
func waitClientAcked(t *testing.T, c *client.Client, n uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for c.Stats().Acked < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d records acknowledged after 30s, waiting for %d; client %+v", c.Stats().Acked, n, c.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the death.
func (d *daemon) kill() {
	d.t.Helper()
	d.signal(syscall.SIGKILL)
	if code := d.wait(10 * time.Second); code != -1 {
		d.t.Fatalf("exit status %d after SIGKILL, want death by signal", code)
	}
}

// flush waits (20 s at most) until every record c sent is acknowledged.
func flush(t *testing.T, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v; client %+v", err, c.Stats())
	}
}

// TestClusterSessionMovesNode: two ingestd nodes on one NATS. A client
// (endpoints A, B) sends pipelined records in one session to A; A is
// killed with SIGKILL mid-load; the client resumes its session on B,
// whose WELCOME comes from the session bucket (no NACK 5, no new
// session); Flush succeeds and the stream holds every record exactly
// once, in session order. Then B is killed too and both nodes start
// again: a new client given the session resumes it, and its records
// follow in the stream, their seqs 2^32 past the last stored one (the
// client leaves room for a session store that lags).
func TestClusterSessionMovesNode(t *testing.T) {
	clusterNoLeaks(t)
	began := time.Now()
	n := natstest.Start(t)
	createIngestStream(t, n)
	a, b := startJetStreamServe(t, n), startJetStreamServe(t, n)

	const total = 30_000
	c := dialNodes(t, ingest.SessionID{}, a.tcp, b.tcp)
	sent := sendAll(t, c, 0, total)
	waitClientAcked(t, c, total/3)
	a.kill()
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	flush(t, c)
	sess := c.Session()
	checkJetStream(t, n, total, sess)
	st := c.Stats()
	if st.SessionsLost != 0 || st.Acked != total || st.Endpoint != "tcp://"+b.tcp {
		t.Fatalf("client stats %+v: want every record acknowledged, through B, and the session kept", st)
	}
	if v := metric(t, b, `gyre_jetstream_session_lookups_total{result="found"}`); v < 1 {
		t.Fatalf("B found the session %v times in the bucket, want at least once", v)
	}
	t.Logf("moved to B: client %+v; B published %v (%v duplicates)", st,
		metric(t, b, "gyre_jetstream_publishes_total"), metric(t, b, "gyre_jetstream_duplicates_total"))

	// Every node down and up again. B is killed once its updates are
	// written (a crash while idle).
	deadline := time.Now().Add(10 * time.Second)
	for metric(t, b, "gyre_jetstream_sessions_pending") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("B's session updates still pending after 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.kill()
	a2, b2 := startJetStreamServe(t, n), startJetStreamServe(t, n)
	c2 := dialNodes(t, sess, b2.tcp, a2.tcp)
	const more = 2000
	if err := <-sendAll(t, c2, total, total+more); err != nil {
		t.Fatal(err)
	}
	flush(t, c2)
	if st := c2.Stats(); st.SessionsLost != 0 || c2.Session() != sess {
		t.Fatalf("resuming after every node restarted: client %+v, session %v (want %v)", st, c2.Session(), sess)
	}
	checkStreamMsgs(t, n.ReadStream(t, jsStream), total+more, total, sess)
	a2.stop(10 * time.Second)
	b2.stop(10 * time.Second)
	if d := time.Since(began); d > 45*time.Second {
		t.Errorf("took %v", d)
	}
}

// TestClusterR3NodeAndIngestdLoss: a three-node JetStream cluster on
// loopback and an R3 stream. Pipelined load in one session through one
// ingestd; the stream's leader is stopped during the load and started
// again on its store; then ingestd is killed with SIGKILL and started
// again on the same address; the client finishes, and no acknowledged
// record is missing or duplicated in the stream. (Their order may not be
// the session's: publishes lost with the old leader are resent after
// later ones the new leader stored; see docs/scale-out.md.)
func TestClusterR3NodeAndIngestdLoss(t *testing.T) {
	clusterNoLeaks(t)
	began := time.Now()
	cl := natstest.StartCluster(t, 3)
	cl.CreateStream(t, jetstream.StreamConfig{Name: jsStream, Subjects: []string{"ingest.>"}, Storage: jetstream.FileStorage, Replicas: 3})
	cl.WaitStreamCurrent(t, jsStream)
	addr := freePort(t)
	start := func() *daemon {
		d := startProcess(t, "--tcp", addr, "--metrics", "127.0.0.1:0", "--reactors", "2",
			"--sink", "jetstream", "--nats-url", cl.URL(), "--stream", jsStream, "--subject", jsSubject)
		d.waitReady(true)
		return d
	}
	d := start()

	const total = 40_000
	c := dialNodes(t, ingest.SessionID{}, addr)
	sent := sendAll(t, c, 0, total)

	waitClientAcked(t, c, total/4)
	leader := cl.StreamLeader(t, jsStream)
	cl.Nodes[leader].Stop()
	stopped, ackedThen := time.Now(), c.Stats().Acked
	waitClientAcked(t, c, ackedThen+1000)
	t.Logf("NATS %s (the stream leader) stopped: 1,000 more records acknowledged %v later", cl.Nodes[leader].Name(), time.Since(stopped).Round(time.Millisecond))
	waitClientAcked(t, c, total/2)
	cl.Nodes[leader].Start()
	cl.WaitStreamCurrent(t, jsStream)

	waitClientAcked(t, c, 3*total/4)
	d.kill()
	d = start()
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	flush(t, c)
	st := c.Stats()
	if st.SessionsLost != 0 || st.Acked != total {
		t.Fatalf("client stats %+v: want every record acknowledged and the session kept", st)
	}
	moved := checkStreamOnce(t, cl.ReadStream(t, jsStream), total, c.Session())
	t.Logf("client %+v; restarted ingestd: %v published, %v duplicates; %d records stored out of session order", st,
		metric(t, d, "gyre_jetstream_publishes_total"), metric(t, d, "gyre_jetstream_duplicates_total"), moved)
	d.stop(10 * time.Second)
	if el := time.Since(began); el > 50*time.Second {
		t.Errorf("took %v", el)
	}
}

// checkStreamOnce checks that msgs hold records [0, total) of session
// sess exactly once each, payload intact and under its Nats-Msg-Id, in
// any order, and returns how many come after a record with a higher seq.
func checkStreamOnce(t *testing.T, msgs []natstest.Msg, total int, sess ingest.SessionID) int {
	t.Helper()
	seen := make([]int, total)
	moved, highest := 0, -1
	for k, m := range msgs {
		var i int
		if _, err := fmt.Sscanf(m.Data, "ingestd-js/%06d/", &i); err != nil || i < 0 || i >= total || m.Data != string(jsPayload(i)) {
			t.Fatalf("message %d in the stream: %q is no record of the load", k, m.Data)
		}
		if want := fmt.Sprintf("s-%s-%d", sess, i+1); m.ID != want {
			t.Fatalf("record %d stored with Nats-Msg-Id %q, want %q", i, m.ID, want)
		}
		seen[i]++
		if i < highest {
			moved++
		}
		highest = max(highest, i)
	}
	missing, twice := 0, 0
	for _, n := range seen {
		switch {
		case n == 0:
			missing++
		case n > 1:
			twice++
		}
	}
	if missing != 0 || twice != 0 {
		t.Fatalf("the stream holds %d messages for %d records: %d missing, %d more than once", len(msgs), total, missing, twice)
	}
	return moved
}
