package main

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/ingest/client"
)

// TestSessionSurvivesSIGKILL is the exactly-once promise of producer
// sessions: a client sends pipelined records while ingestd is killed with
// SIGKILL twice and restarted on the same data directory and port; its
// Flush succeeds, and the log holds every record of the session exactly
// once, in session order, intact.
func TestSessionSurvivesSIGKILL(t *testing.T) {
	const (
		rounds  = 2
		records = 60000
	)
	dir := t.TempDir()
	addr := freePort(t)
	start := func() *daemon {
		return startServe(t, dir, "--tcp", addr, "--segment-bytes", "262144")
	}
	d := start()

	c, err := client.Dial(context.Background(), client.Config{
		Endpoints:   []string{"tcp://" + addr},
		Window:      256,
		DialTimeout: 2 * time.Second,
		Backoff:     client.Backoff{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	var queued atomic.Int64
	sent := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var p []byte
		for i := range records {
			p = appendPayload(p[:0], 1, uint64(i+1))
			if _, err := c.Send(ctx, p); err != nil {
				sent <- err
				return
			}
			queued.Add(1)
		}
		sent <- nil
	}()

	for round := range rounds {
		// Kill once records are flowing, a different amount into the load
		// each round.
		at := int64(records * (round + 1) / (rounds + 2))
		deadline := time.Now().Add(30 * time.Second)
		for queued.Load() < at {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: only %d records queued", round, queued.Load())
			}
			time.Sleep(time.Millisecond)
		}
		d.signal(syscall.SIGKILL)
		if code := d.wait(10 * time.Second); code != -1 {
			t.Fatalf("exit status %d after SIGKILL, want death by signal", code)
		}
		d = start()
	}
	if err := <-sent; err != nil {
		t.Fatalf("Send: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close (flush): %v", err)
	}
	st := c.Stats()
	d.stop(10 * time.Second)

	id := c.Session()
	var next uint64 = 1
	err = ingest.ReadLog(dir, func(r ingest.Record, _ time.Time) error {
		if r.Session != id {
			t.Fatalf("record seq %d of session %v in the log, want only %v", r.Seq, r.Session, id)
		}
		cl, seq, err := checkPayload(r.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if cl != 1 || seq != r.Seq || r.Seq != next {
			t.Fatalf("log record %d has seq %d carrying record %d: want every record once, in order", next, r.Seq, seq)
		}
		next++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if next-1 != records {
		t.Fatalf("the log holds %d records, want %d", next-1, records)
	}
	if st.Dials < rounds+1 || st.Acked != records {
		t.Fatalf("client stats %+v: want %d reconnects and every record acknowledged", st, rounds)
	}
	t.Logf("client stats %+v", st)
}
