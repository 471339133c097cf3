package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
)

// newTestConn returns a connection with no stream, for the frame logic.
func newTestConn(t *testing.T, args ...string) (*runner, *conn) {
	t.Helper()
	cfg, err := parseFlags(args, io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	r := newRunner(cfg)
	r.start = time.Now()
	return r, newConn(r, 0, false)
}

// sendN encodes n DATA frames as the writer does and publishes them.
func sendN(c *conn, buf []byte, n uint64) []byte {
	seq := c.sent.Load()
	buf = c.fill(buf[:0], seq, n, c.r.since(), true)
	c.sent.Store(seq + n)
	return buf
}

func TestAckAccounting(t *testing.T) {
	_, c := newTestConn(t, "--window", "8")
	dec := ingest.NewReplyDecoder()
	frames := sendN(c, nil, 6) // seqs 1..6
	// The frames decode as DATA 1..6 with the configured size.
	sd := ingest.NewDecoder(0)
	for want := uint64(1); want <= 6; want++ {
		f, n, err := sd.Decode(frames)
		if err != nil || f.Kind != ingest.KindData || f.Seq != want || len(f.Payload) != 128 {
			t.Fatalf("frame %d: %v %v seq %d len %d", want, err, f.Kind, f.Seq, len(f.Payload))
		}
		frames = frames[n:]
	}

	var replies []byte
	replies = ingest.AppendNack(replies, 2, ingest.NackOverloaded, "queue full")
	replies = ingest.AppendAck(replies, 3) // covers 1 and 3, not the NACKed 2
	replies = ingest.AppendNack(replies, 5, ingest.NackShuttingDown, "draining")
	half := ingest.AppendAck(nil, 6)
	replies = append(replies, half[:7]...) // a partial frame stays for later
	used, err := c.consume(&dec, replies, c.r.since())
	if err != nil {
		t.Fatal(err)
	}
	if used != len(replies)-7 {
		t.Errorf("used %d of %d bytes, want all but the partial frame", used, len(replies))
	}
	if c.rd.acked != 2 || c.rd.nackTotal != 2 || c.rd.nacks[3] != 1 || c.rd.nacks[4] != 1 || c.answered.Load() != 4 {
		t.Errorf("acked %d, nacked %d (%v), answered %d; want 2, 2, 4", c.rd.acked, c.rd.nackTotal, c.rd.nacks, c.answered.Load())
	}
	if c.floor.Load() != 4 {
		t.Errorf("floor %d, want 4 (seq 4 is the lowest unanswered)", c.floor.Load())
	}
	if _, err := c.consume(&dec, half, c.r.since()); err != nil {
		t.Fatal(err)
	}
	if c.rd.acked != 4 || c.answered.Load() != 6 || c.floor.Load() != 7 || c.rd.hist.TotalCount() != 4 {
		t.Errorf("after ACK 6: acked %d, answered %d, floor %d, latencies %d; want 4, 6, 7, 4",
			c.rd.acked, c.answered.Load(), c.floor.Load(), c.rd.hist.TotalCount())
	}
	if c.rd.measuredBytes != 4*128 {
		t.Errorf("measured bytes %d, want %d", c.rd.measuredBytes, 4*128)
	}
}

func TestReplyViolations(t *testing.T) {
	for _, tc := range []struct {
		name    string
		replies func() []byte
		want    string
	}{
		{"ack beyond sent", func() []byte { return ingest.AppendAck(nil, 9) }, "never sent"},
		{"ack backwards", func() []byte { return ingest.AppendAck(ingest.AppendAck(nil, 3), 2) }, "backwards"},
		{"nack after ack", func() []byte {
			return ingest.AppendNack(ingest.AppendAck(nil, 3), 2, ingest.NackOverloaded, "late")
		}, "not outstanding"},
		{"nack twice", func() []byte {
			b := ingest.AppendNack(nil, 2, ingest.NackOverloaded, "x")
			return ingest.AppendNack(b, 2, ingest.NackOverloaded, "x")
		}, "not outstanding"},
		{"nack 1", func() []byte { return ingest.AppendNack(nil, 4, ingest.NackMalformed, "bad") }, "NACK 1 (malformed) for seq 4: bad"},
		{"nack 2", func() []byte { return ingest.AppendNack(nil, 1, ingest.NackTooLarge, "big") }, "NACK 2 (too large)"},
		{"unknown nack code", func() []byte { return ingest.AppendNack(nil, 1, 9, "?") }, "unknown NACK code"},
		{"client frame", func() []byte { b, _ := ingest.AppendData(nil, 1, nil); return b }, "bad reply"},
	} {
		_, c := newTestConn(t)
		sendN(c, nil, 5)
		dec := ingest.NewReplyDecoder()
		_, err := c.consume(&dec, tc.replies(), 0)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

// Fatal NACKs are counted by code, as errors, and still answer their seq.
func TestFatalNackCounted(t *testing.T) {
	_, c := newTestConn(t)
	sendN(c, nil, 3)
	dec := ingest.NewReplyDecoder()
	if _, err := c.consume(&dec, ingest.AppendNack(nil, 2, ingest.NackTooLarge, "big"), 0); err == nil {
		t.Fatal("NACK 2 is not an error")
	}
	if c.rd.nacks[2] != 1 || c.rd.nackTotal != 1 {
		t.Errorf("nacks %v, total %d", c.rd.nacks, c.rd.nackTotal)
	}
}

// The send and receive paths allocate nothing per message.
func TestNoAllocsPerMessage(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	r, c := newTestConn(t, "--size", "10-300", "--window", "64", "--warmup", "0s")
	buf := make([]byte, 0, r.batchCap)
	replies := make([]byte, 0, 1024)
	dec := ingest.NewReplyDecoder()
	allocs := testing.AllocsPerRun(200, func() {
		buf = sendN(c, buf, 32)
		seq := c.sent.Load()
		replies = ingest.AppendNack(replies[:0], seq-5, ingest.NackOverloaded, "queue full")
		replies = ingest.AppendAck(replies, seq)
		if _, err := c.consume(&dec, replies, r.since()); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch of 32 messages, want 0", allocs)
	}
	if c.answered.Load() != c.sent.Load() {
		t.Errorf("answered %d of %d", c.answered.Load(), c.sent.Load())
	}
}
