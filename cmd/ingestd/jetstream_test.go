package main

// ingestd --sink jetstream against the real NATS server, run in this test
// process (internal/natstest) on loopback: records stored in the stream
// exactly once and in order, NATS down at start and going away later
// (/healthz, metrics, NACK 6, reconnection by itself), and the start-up
// failures that must stop the node with a clear message.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/ingest/client"
	"github.com/gyre-io/gyre/internal/natstest"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	jsStream  = "INGEST"
	jsSubject = "ingest.records"
)

func createIngestStream(t *testing.T, n *natstest.Server) {
	t.Helper()
	n.CreateStream(t, jetstream.StreamConfig{Name: jsStream, Subjects: []string{"ingest.>"}, Storage: jetstream.FileStorage})
}

// startJetStreamServe runs ingestd with the jetstream sink on n and waits
// until it listens (which it does whether NATS is up or not).
func startJetStreamServe(t *testing.T, n *natstest.Server, extra ...string) *daemon {
	t.Helper()
	args := []string{"--tcp", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--reactors", "2",
		"--sink", "jetstream", "--nats-url", n.URL(), "--stream", jsStream, "--subject", jsSubject}
	d := startProcess(t, append(args, extra...)...)
	d.waitReady(true)
	return d
}

// waitHealthz polls /healthz until it answers code with a body containing
// want, for at most 15 s.
func waitHealthz(t *testing.T, d *daemon, code int, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		got, body := httpGet(t, d.metrics, "/healthz")
		if got == code && strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz: %d %q, want %d with %q; stderr:\n%s", got, body, code, want, d.stderr.String())
		}
		<-tick.C
	}
}

// metric scrapes one unlabelled sample.
func metric(t *testing.T, d *daemon, name string) float64 {
	t.Helper()
	_, text := httpGet(t, d.metrics, "/metrics")
	v, ok := metricValue(text, name)
	if !ok {
		t.Fatalf("no %s in /metrics", name)
	}
	return v
}

func jsPayload(i int) []byte {
	return fmt.Appendf(nil, "ingestd-js/%06d/abcdefghijklmnopqrstuvwxyz", i)
}

// sendAll sends records [from, to) with c from a goroutine; the result
// comes on the channel once all are queued.
func sendAll(t *testing.T, c *client.Client, from, to int) <-chan error {
	done := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i := from; i < to; i++ {
			if _, err := c.Send(ctx, jsPayload(i)); err != nil {
				done <- fmt.Errorf("Send %d: %w", i, err)
				return
			}
		}
		done <- nil
	})
	t.Cleanup(wg.Wait)
	return done
}

// checkJetStream checks that the stream holds records [0, n) of the
// client's session exactly once, in order, payload intact.
func checkJetStream(t *testing.T, n *natstest.Server, total int, sess ingest.SessionID) {
	t.Helper()
	checkStreamMsgs(t, n.ReadStream(t, jsStream), total, total, sess)
}

// resumeGap is how far past WELCOME's seq a client that resumes a session
// it did not number starts its seqs (ingest/client).
const resumeGap = 1 << 32

// checkStreamMsgs checks that msgs, read from the stream, are records
// [0, total) of session sess exactly once, in order, payload intact;
// records from resumedAt on were sent by a client that resumed the
// session, so their seqs are resumeGap further.
func checkStreamMsgs(t *testing.T, msgs []natstest.Msg, total, resumedAt int, sess ingest.SessionID) {
	t.Helper()
	if len(msgs) != total {
		seen := map[string]int{}
		for _, m := range msgs {
			seen[m.Data]++
		}
		missing, twice := 0, 0
		for i := range total {
			switch seen[string(jsPayload(i))] {
			case 0:
				missing++
			case 1:
			default:
				twice++
			}
		}
		t.Fatalf("the stream holds %d records, want %d (%d missing, %d more than once)", len(msgs), total, missing, twice)
	}
	for i, m := range msgs {
		if m.Data != string(jsPayload(i)) {
			t.Fatalf("record %d in the stream: %q, want %q", i, m.Data, jsPayload(i))
		}
		seq := uint64(i + 1)
		if i >= resumedAt {
			seq += resumeGap
		}
		if want := fmt.Sprintf("s-%s-%d", sess, seq); m.ID != want || m.Subject != jsSubject {
			t.Fatalf("record %d: Nats-Msg-Id %q on %s, want %q on %s", i, m.ID, m.Subject, want, jsSubject)
		}
	}
}

func dialIngestd(t *testing.T, d *daemon) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Endpoints: []string{"tcp://" + d.tcp},
		Backoff: client.Backoff{Initial: 5 * time.Millisecond, Max: 200 * time.Millisecond}})
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

// TestJetStreamSink: records acknowledged by ingestd are in the stream,
// once each, in session order; NATS going away turns /healthz to 503
// and records to NACK 6, and once it is back ingestd reconnects by
// itself and everything the client sent is stored exactly once.
func TestJetStreamSink(t *testing.T) {
	n := natstest.Start(t)
	createIngestStream(t, n)
	d := startJetStreamServe(t, n)
	if code, body := httpGet(t, d.metrics, "/healthz"); code != 200 {
		t.Fatalf("/healthz %d %q with NATS up", code, body)
	}
	if v := metric(t, d, "gyre_ingest_sink_healthy"); v != 1 {
		t.Fatalf("gyre_ingest_sink_healthy %v", v)
	}
	c := dialIngestd(t, d)
	if err := <-sendAll(t, c, 0, 2000); err != nil {
		t.Fatal(err)
	}
	flush, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Flush(flush); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	checkJetStream(t, n, 2000, c.Session())
	if v := metric(t, d, "gyre_jetstream_publishes_total"); v != 2000 {
		t.Errorf("gyre_jetstream_publishes_total %v, want 2000", v)
	}

	n.Stop()
	waitHealthz(t, d, 503, "not connected to NATS")
	if v := metric(t, d, "gyre_ingest_sink_healthy"); v != 0 {
		t.Errorf("gyre_ingest_sink_healthy %v with NATS down", v)
	}
	if v := metric(t, d, "gyre_jetstream_connected"); v != 0 {
		t.Errorf("gyre_jetstream_connected %v with NATS down", v)
	}
	sent := sendAll(t, c, 2000, 2500)
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for c.Stats().Nacks[ingest.NackStorageUnavailable] == 0 {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("no NACK 6 with NATS down; client %+v", c.Stats())
		}
	}
	if acked := c.Stats().Acked; acked != 2000 {
		t.Fatalf("%d records acknowledged, want the 2000 sent before NATS went down", acked)
	}
	n.Start()
	waitHealthz(t, d, 200, "ok")
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(flush); err != nil {
		t.Fatalf("Flush after NATS came back: %v", err)
	}
	checkJetStream(t, n, 2500, c.Session())
	if !strings.Contains(d.stderr.String(), "lost the connection to NATS") || !strings.Contains(d.stderr.String(), "storing again") {
		t.Errorf("the log does not tell the outage and the recovery:\n%s", d.stderr.String())
	}
	d.stop(10 * time.Second)
}

// TestJetStreamNATSDownAtStart: ingestd starts while NATS is unreachable,
// says so (log, /healthz 503 with the cause, the gauges at 0) and
// connects by itself once NATS is up with the stream.
func TestJetStreamNATSDownAtStart(t *testing.T) {
	n := natstest.New(t, 0)
	d := startJetStreamServe(t, n)
	code, body := httpGet(t, d.metrics, "/healthz")
	if code != 503 || !strings.Contains(body, "not connected to NATS at "+n.URL()) {
		t.Fatalf("/healthz with NATS down: %d %q", code, body)
	}
	if v := metric(t, d, "gyre_ingest_sink_healthy"); v != 0 {
		t.Errorf("gyre_ingest_sink_healthy %v with NATS down", v)
	}
	if !strings.Contains(d.stderr.String(), "NATS not reachable") {
		t.Errorf("no log line about NATS being unreachable:\n%s", d.stderr.String())
	}
	n.Start()
	waitHealthz(t, d, 503, `stream "INGEST" not found`) // connected; the stream comes next
	createIngestStream(t, n)
	waitHealthz(t, d, 200, "ok")
	if v := metric(t, d, "gyre_jetstream_connected"); v != 1 {
		t.Errorf("gyre_jetstream_connected %v", v)
	}
	c := dialIngestd(t, d)
	if err := <-sendAll(t, c, 0, 100); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	checkJetStream(t, n, 100, c.Session())
	d.stop(10 * time.Second)
}

// TestJetStreamStartupFailures: with NATS reachable, a missing stream or
// refused credentials stop ingestd at once (status 1) with a message that
// names them.
func TestJetStreamStartupFailures(t *testing.T) {
	n := natstest.Start(t, "ingest", "s3cret")
	base := []string{"--tcp", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--sink", "jetstream",
		"--nats-url", n.URL(), "--subject", jsSubject}
	t.Run("missing stream", func(t *testing.T) {
		code, _, stderr := runCmd(t, append(base, "--stream", jsStream, "--nats-user", "ingest", "--nats-password", "s3cret")...)
		if code != 1 || !strings.Contains(stderr, `stream \"INGEST\" not found`) {
			t.Errorf("status %d, want 1 and the missing stream named; stderr:\n%s", code, stderr)
		}
	})
	createIngestStream(t, n)
	t.Run("wrong password", func(t *testing.T) {
		code, _, stderr := runCmd(t, append(base, "--stream", jsStream, "--nats-user", "ingest", "--nats-password", "wrong")...)
		if code != 1 || !strings.Contains(stderr, "Authorization Violation") {
			t.Errorf("status %d, want 1 and the authorization violation; stderr:\n%s", code, stderr)
		}
		if strings.Contains(stderr, "listening") {
			t.Errorf("ingestd served with refused credentials:\n%s", stderr)
		}
	})
	t.Run("right password", func(t *testing.T) {
		d := startProcess(t, append(base, "--stream", jsStream, "--nats-user", "ingest", "--nats-password", "s3cret")...)
		d.waitReady(true)
		waitHealthz(t, d, 200, "ok")
		d.stop(10 * time.Second)
	})
}

// TestJetStreamSessionBucket: the session bucket is named by
// --nats-session-bucket or the config file's nats_session_bucket, created
// by ingestd with --session-ttl as its age limit, and holds the session's
// highest stored seq; a name NATS would refuse exits with status 2 before
// anything is dialled.
func TestJetStreamSessionBucket(t *testing.T) {
	t.Run("bad names", func(t *testing.T) {
		base := []string{"--sink", "jetstream", "--nats-url", "nats://127.0.0.1:1", "--subject", jsSubject}
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--stream", jsStream, "--nats-session-bucket", "a.b"}, `--nats-session-bucket "a.b"`},
			{[]string{"--stream", "S:1"}, `give --nats-session-bucket`},
		} {
			code, _, stderr := runCmd(t, append(base, tc.args...)...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("%v: status %d, want 2 and %q; stderr:\n%s", tc.args, code, tc.want, stderr)
			}
		}
	})
	t.Run("config file", func(t *testing.T) {
		n := natstest.Start(t)
		createIngestStream(t, n)
		cfg := writeConfig(t, `{"nats_session_bucket": "ingest-sessions", "session_ttl": "2h"}`)
		d := startJetStreamServe(t, n, "--config", cfg)
		c := dialIngestd(t, d)
		if err := <-sendAll(t, c, 0, 500); err != nil {
			t.Fatal(err)
		}
		flush, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Flush(flush); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		d.stop(10 * time.Second) // writes the pending session update
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		kv, err := n.JS(t).KeyValue(ctx, "ingest-sessions")
		if err != nil {
			t.Fatalf("bucket ingest-sessions: %v", err)
		}
		st, err := kv.Status(ctx)
		if err != nil || st.TTL() != 2*time.Hour {
			t.Fatalf("bucket status %v, %v: want the 2h session TTL as its age limit", st, err)
		}
		e, err := kv.Get(ctx, c.Session().String())
		if err != nil || string(e.Value()) != "500" {
			t.Fatalf("the session's key: %v, %v; want 500", e, err)
		}
	})
}
