package natssink_test

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/ingest/natssink"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

var sessA = ingest.SessionID{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}

// records makes n records: the even ones of session sessA (seq i+1), the
// odd ones without a session (connection 7, seq i+1).
func records(from, n int) []ingest.Record {
	b := make([]ingest.Record, n)
	for i := range b {
		k := from + i
		b[i] = ingest.Record{Conn: 7, Seq: uint64(k + 1), Payload: []byte(payload(k))}
		if k%2 == 0 {
			b[i].Session = sessA
		}
	}
	return b
}

var reClientID = regexp.MustCompile(`^c-[0-9a-f]{16}-7-(\d+)$`)

// checkStored checks that msgs are exactly records [0, n), in order, each
// with its payload, subject and Nats-Msg-Id.
func checkStored(t *testing.T, msgs []storedMsg, n int) {
	t.Helper()
	if len(msgs) != n {
		t.Fatalf("the stream holds %d messages, want %d", len(msgs), n)
	}
	instance := ""
	for i, m := range msgs {
		if m.Data != payload(i) {
			t.Fatalf("message %d: data %q, want %q", i, m.Data, payload(i))
		}
		if m.Subject != testSubject {
			t.Fatalf("message %d: subject %q", i, m.Subject)
		}
		if i%2 == 0 {
			if want := fmt.Sprintf("s-%s-%d", sessA, i+1); m.ID != want {
				t.Fatalf("message %d: Nats-Msg-Id %q, want %q", i, m.ID, want)
			}
			continue
		}
		sm := reClientID.FindStringSubmatch(m.ID)
		if sm == nil || sm[1] != fmt.Sprint(i+1) {
			t.Fatalf("message %d: Nats-Msg-Id %q, want c-<16 hex>-7-%d", i, m.ID, i+1)
		}
		if inst := m.ID[2:18]; instance == "" {
			instance = inst
		} else if inst != instance {
			t.Fatalf("message %d: instance %s, earlier ones %s", i, inst, instance)
		}
	}
}

// TestWriteStoresEveryRecord: Writes larger than the in-flight bound,
// from several goroutines, store every record once, payload and
// Nats-Msg-Id intact, in each Write's order; the metrics say so.
func TestWriteStoresEveryRecord(t *testing.T) {
	n := startNATS(t)
	n.createStream(t)
	cfg := sinkConfig(n)
	cfg.MaxInFlight = 64 // smaller than a batch: Writes wait for their own PubAcks
	s := openSink(t, cfg)
	if err := s.Health(); err != nil {
		t.Fatalf("Health after Open: %v", err)
	}
	if err := s.Write(nil); err != nil {
		t.Fatalf("empty Write: %v", err)
	}
	// One Write first (its order is checked), then four at once.
	const first, per = 1000, 500
	if err := s.Write(records(0, first)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			if err := s.Write(records(first+g*per, per)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Write: %v", err)
	}
	msgs := n.readStream(t)
	checkStored(t, msgs[:first], first)
	seen := map[string]int{}
	for _, m := range msgs[first:] {
		seen[m.Data]++
	}
	for i := first; i < first+4*per; i++ {
		if seen[payload(i)] != 1 {
			t.Fatalf("record %d stored %d times", i, seen[payload(i)])
		}
	}
	if len(msgs) != first+4*per {
		t.Fatalf("%d messages, want %d", len(msgs), first+4*per)
	}
	st := s.Stats()
	if st.Published != first+4*per || st.Duplicates != 0 || len(st.Errors) != 0 || st.InFlight != 0 || !st.Connected {
		t.Fatalf("stats %+v", st)
	}
	// The collector reports the same.
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector())
	if v := metricSum(t, reg, "gyre_jetstream_publishes_total"); v != first+4*per {
		t.Errorf("gyre_jetstream_publishes_total %v", v)
	}
	if v := metricSum(t, reg, "gyre_jetstream_connected"); v != 1 {
		t.Errorf("gyre_jetstream_connected %v", v)
	}
}

// metricSum returns the sum of the samples of one metric family of reg.
func metricSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var v float64
		for _, m := range mf.GetMetric() {
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		return v
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestMsgIDDedupesRepublishedBatch: a batch written again (a client
// resending after a NACK 6 whose publishes landed) is PubAcked as
// duplicate and stored once.
func TestMsgIDDedupesRepublishedBatch(t *testing.T) {
	n := startNATS(t)
	n.createStream(t)
	s := openSink(t, sinkConfig(n))
	b := records(0, 300)
	for range 3 {
		if err := s.Write(b); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	checkStored(t, n.readStream(t), 300)
	if st := s.Stats(); st.Published != 900 || st.Duplicates != 600 {
		t.Fatalf("published %d, duplicates %d; want 900 and 600", st.Published, st.Duplicates)
	}
	// A sink opened later (a restarted ingestd) has another instance id:
	// its sessionless records are new records, its session records are
	// duplicates.
	s2 := openSink(t, sinkConfig(n))
	if err := s2.Write(b); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if st := s2.Stats(); st.Duplicates != 150 {
		t.Fatalf("second sink: %d duplicates, want the 150 session records", st.Duplicates)
	}
	if got := len(n.readStream(t)); got != 450 {
		t.Fatalf("%d messages, want 450", got)
	}
}

// TestMissingStream: Open refuses a stream that does not exist or does
// not capture the subject, naming them. A stream deleted while the sink
// runs fails Writes (nothing acknowledged) and turns Health to an error
// naming it; recreated, the sink stores again by itself.
func TestMissingStream(t *testing.T) {
	n := startNATS(t)
	_, err := natssink.Open(ctx(t, 10*time.Second), sinkConfig(n))
	if err == nil || !strings.Contains(err.Error(), `stream "INGEST" not found`) {
		t.Fatalf("Open without the stream: %v, want an error naming the stream", err)
	}
	n.createStream(t, func(c *jetstream.StreamConfig) { c.Subjects = []string{"other.>"} })
	_, err = natssink.Open(ctx(t, 10*time.Second), sinkConfig(n))
	if err == nil || !strings.Contains(err.Error(), `does not capture subject "ingest.records"`) {
		t.Fatalf("Open with a stream of other subjects: %v", err)
	}
	js := n.js(t)
	if err := js.DeleteStream(ctx(t, 10*time.Second), testStream); err != nil {
		t.Fatal(err)
	}
	n.createStream(t)
	s := openSink(t, sinkConfig(n))
	if err := s.Write(records(0, 10)); err != nil {
		t.Fatalf("Write: %v", err)
	}

	if err := js.DeleteStream(ctx(t, 10*time.Second), testStream); err != nil {
		t.Fatal(err)
	}
	err = s.Write(records(10, 10))
	if err == nil || !strings.Contains(err.Error(), `stream "INGEST"`) {
		t.Fatalf("Write without the stream: %v, want an error naming it", err)
	}
	if st := s.Stats(); st.Published != 10 || st.Errors["no_stream"] == 0 {
		t.Fatalf("stats %+v: want 10 published and no_stream errors", st)
	}
	herr := waitHealth(t, s, false, 5*time.Second)
	if !strings.Contains(herr.Error(), "INGEST") {
		t.Fatalf("Health %v does not name the stream", herr)
	}
	n.createStream(t)
	waitHealth(t, s, true, 10*time.Second)
	if err := s.Write(records(10, 10)); err != nil {
		t.Fatalf("Write after the stream came back: %v", err)
	}
	msgs := n.readStream(t) // the recreated stream: records 10..19 only
	if len(msgs) != 10 || msgs[0].Data != payload(10) {
		t.Fatalf("stream holds %d messages (first %+v), want records 10..19", len(msgs), msgs)
	}
}

// TestServerRestart: NATS shut down while the sink runs: Health reports
// it, Writes fail at once; started again on the same store, the sink
// reconnects by itself and stores again, and the stream holds exactly
// what was PubAcked.
func TestServerRestart(t *testing.T) {
	n := startNATS(t)
	n.createStream(t)
	s := openSink(t, sinkConfig(n))
	if err := s.Write(records(0, 100)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	n.stop()
	herr := waitHealth(t, s, false, 5*time.Second)
	if !strings.Contains(herr.Error(), "not connected to NATS") {
		t.Fatalf("Health while NATS is down: %v", herr)
	}
	began := time.Now()
	if err := s.Write(records(100, 100)); err == nil {
		t.Fatal("Write succeeded while NATS was down")
	} else if d := time.Since(began); d > time.Second {
		t.Fatalf("Write took %v to fail while NATS was down, want at once", d)
	}
	if s.Stats().Connected {
		t.Fatal("Stats says connected")
	}
	n.start()
	waitHealth(t, s, true, 10*time.Second)
	if err := s.Write(records(100, 100)); err != nil {
		t.Fatalf("Write after NATS came back: %v", err)
	}
	checkStored(t, n.readStream(t), 200)
	if st := s.Stats(); st.Connects < 2 || st.Errors["not_connected"] != 100 {
		t.Fatalf("stats %+v: want 2 connects and 100 not_connected", st)
	}
}

// TestUnreachableAtOpen: with nothing listening, Open still returns the
// sink; Health names the cause and Writes fail at once; once NATS is
// up with the stream, the sink connects and stores by itself.
func TestUnreachableAtOpen(t *testing.T) {
	n := newNATS(t, 0)
	s := openSink(t, sinkConfig(n))
	herr := s.Health()
	if herr == nil || !strings.Contains(herr.Error(), "not connected to NATS at "+n.url()) {
		t.Fatalf("Health with NATS down: %v", herr)
	}
	if err := s.Write(records(0, 5)); err == nil {
		t.Fatal("Write succeeded with NATS down")
	}
	n.start()
	// Connected, but no stream yet.
	waitHealthFor(t, s, "the missing stream", func(err error) bool {
		return err != nil && strings.Contains(err.Error(), `stream "INGEST" not found`)
	}, 10*time.Second)
	n.createStream(t)
	waitHealth(t, s, true, 10*time.Second)
	if err := s.Write(records(0, 5)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	checkStored(t, n.readStream(t), 5)
}

// TestWrongCredentials: a server that refuses the credentials makes Open
// fail with the authorization error; the right ones work.
func TestWrongCredentials(t *testing.T) {
	n := startNATS(t, "ingest", "s3cret")
	n.createStream(t)
	for _, c := range []struct{ user, pass string }{{"ingest", "wrong"}, {"", ""}, {"nobody", "s3cret"}} {
		cfg := sinkConfig(n)
		cfg.User, cfg.Password = c.user, c.pass
		_, err := natssink.Open(ctx(t, 10*time.Second), cfg)
		if !errors.Is(err, nats.ErrAuthorization) || !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
			t.Fatalf("Open as %q/%q: %v, want an authorization violation", c.user, c.pass, err)
		}
	}
	// In the URL, as NATS users also write it: the log shows it redacted.
	cfg := sinkConfig(n)
	cfg.URLs = []string{strings.Replace(n.url(), "nats://", "nats://ingest:wrong@", 1)}
	_, err := natssink.Open(ctx(t, 10*time.Second), cfg)
	if !errors.Is(err, nats.ErrAuthorization) || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("Open with credentials in the URL: %v, want an authorization violation without the password", err)
	}
	cfg = sinkConfig(n)
	cfg.User, cfg.Password = "ingest", "s3cret"
	s := openSink(t, cfg)
	if err := s.Write(records(0, 10)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	checkStored(t, n.readStream(t), 10)
}

// TestCredentialsRefusedLater: credentials the server stops accepting
// (changed in its configuration) disconnect the sink; it keeps trying,
// Health names the authorization failure and Writes fail; once the server
// accepts them again, the sink stores again by itself.
func TestCredentialsRefusedLater(t *testing.T) {
	n := startNATS(t, "ingest", "s3cret")
	n.createStream(t)
	cfg := sinkConfig(n)
	cfg.User, cfg.Password = "ingest", "s3cret"
	s := openSink(t, cfg)
	if err := s.Write(records(0, 10)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	n.SetUsers("ingest", "rotated")
	herr := waitHealthFor(t, s, "the authorization violation", func(err error) bool {
		return err != nil && strings.Contains(strings.ToLower(err.Error()), "authorization violation")
	}, 10*time.Second)
	if !strings.Contains(herr.Error(), "not connected to NATS") {
		t.Fatalf("Health %v", herr)
	}
	if err := s.Write(records(10, 10)); err == nil {
		t.Fatal("Write succeeded with the credentials refused")
	}
	n.SetUsers("ingest", "s3cret")
	waitHealth(t, s, true, 10*time.Second)
	if err := s.Write(records(10, 10)); err != nil {
		t.Fatalf("Write once the credentials hold again: %v", err)
	}
	checkStored(t, n.readStream(t), 20)
}

// TestPublishTimeout: a subject that something answers other than a
// stream (here a subscriber that never replies) gives no PubAck: the
// Write fails after the publish timeout, it is not taken as stored.
func TestPublishTimeout(t *testing.T) {
	n := startNATS(t)
	n.createStream(t)
	cfg := sinkConfig(n)
	cfg.PublishTimeout = 300 * time.Millisecond
	s := openSink(t, cfg)
	js := n.js(t)
	if err := js.DeleteStream(ctx(t, 10*time.Second), testStream); err != nil {
		t.Fatal(err)
	}
	nc := js.Conn()
	sub, err := nc.SubscribeSync(testSubject) // takes the messages, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	err = s.Write(records(0, 20))
	if err == nil || !strings.Contains(err.Error(), "no PubAck within 300ms") {
		t.Fatalf("Write: %v, want a PubAck timeout", err)
	}
	if d := time.Since(began); d < 300*time.Millisecond || d > 5*time.Second {
		t.Fatalf("Write failed after %v, want about the 300ms publish timeout", d)
	}
	if st := s.Stats(); st.Published != 0 || st.Errors["timeout"] != 20 || st.InFlight != 0 {
		t.Fatalf("stats %+v: want 20 timeouts, nothing published, nothing in flight", st)
	}
	if herr := s.Health(); herr == nil || !strings.Contains(herr.Error(), "no PubAck") {
		t.Fatalf("Health after timeouts: %v", herr)
	}
}

// TestRefused: a record JetStream refuses (over the stream's largest
// message) fails the Write with JetStream's reason.
func TestRefused(t *testing.T) {
	n := startNATS(t)
	n.createStream(t, func(c *jetstream.StreamConfig) { c.MaxMsgSize = 100 })
	s := openSink(t, sinkConfig(n))
	b := records(0, 3)
	b[1].Payload = make([]byte, 200)
	err := s.Write(b)
	if err == nil || !strings.Contains(err.Error(), "refused the record") {
		t.Fatalf("Write: %v, want JetStream's refusal", err)
	}
	if st := s.Stats(); st.Errors["refused"] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestConfigErrors: bad configurations are refused before anything is
// dialled, with a message naming the field.
func TestConfigErrors(t *testing.T) {
	good := natssink.Config{URLs: []string{"nats://127.0.0.1:1"}, Stream: "S", Subject: "a.b"}
	cases := []struct {
		mod  func(*natssink.Config)
		want string
	}{
		{func(c *natssink.Config) { c.URLs = nil }, "no NATS URL"},
		{func(c *natssink.Config) { c.URLs = []string{"http://x:1"} }, `scheme "http"`},
		{func(c *natssink.Config) { c.URLs = []string{"a:1,b:2"} }, "per entry"},
		{func(c *natssink.Config) { c.Stream = "" }, `stream name "": empty`},
		{func(c *natssink.Config) { c.Stream = "a.b" }, `stream name "a.b"`},
		{func(c *natssink.Config) { c.Subject = "" }, `subject "": empty`},
		{func(c *natssink.Config) { c.Subject = "a.*" }, "no wildcards"},
		{func(c *natssink.Config) { c.Subject = "a..b" }, "empty token"},
		{func(c *natssink.Config) { c.User, c.Token = "u", "t" }, "at most one"},
		{func(c *natssink.Config) { c.Password = "p" }, "a password needs a user"},
		{func(c *natssink.Config) { c.TLSCertFile = "c.pem" }, "go together"},
		{func(c *natssink.Config) { c.MaxInFlight = -1 }, "negative"},
		{func(c *natssink.Config) { c.NkeySeedFile = "/nonexistent/seed" }, "nkey seed file"},
	}
	for _, tc := range cases {
		cfg := good
		tc.mod(&cfg)
		_, err := natssink.Open(ctx(t, 5*time.Second), cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: Open = %v, want %q", cfg, err, tc.want)
		}
	}
}

// TestClose: Write after Close fails with ErrSinkClosed; Close is
// idempotent.
func TestClose(t *testing.T) {
	n := startNATS(t)
	n.createStream(t)
	s := openSink(t, sinkConfig(n))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(records(0, 1)); !errors.Is(err, ingest.ErrSinkClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if err := s.Health(); !errors.Is(err, ingest.ErrSinkClosed) {
		t.Fatalf("Health after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
