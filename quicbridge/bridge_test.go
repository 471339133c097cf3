package quicbridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/quic-go/quic-go"
)

// TestReuseStreams sends 10,000 messages over long-lived streams (2
// connections x 2 streams x 2,500, pipelined) and checks that every one is
// acknowledged and reached the sink intact, in per-stream order.
func TestReuseStreams(t *testing.T) {
	sink := newRecSink()
	b := startBridge(t, Config{}, ingest.DispatcherConfig{}, sink)
	const conns, streams, perStream = 2, 2, 2500
	var wg sync.WaitGroup
	errs := make(chan error, conns*streams)
	for ci := range conns {
		c := dial(t, b.Addr(), nil)
		for si := range streams {
			wg.Go(func() {
				str, err := c.OpenStreamSync(context.Background())
				if err != nil {
					errs <- err
					return
				}
				errs <- pipeline(t, str, fmt.Sprintf("c%ds%d", ci, si), perStream, 256)
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	perKey := checkRecords(t, sink.snapshot())
	if len(perKey) != conns*streams {
		t.Fatalf("%d client streams reached the sink, want %d", len(perKey), conns*streams)
	}
	for k, n := range perKey {
		if n != perStream {
			t.Errorf("stream %s: %d records, want %d", k, n, perStream)
		}
	}
	waitFor(t, 5*time.Second, "streams to finish", func() bool { return b.Stats().StreamsActive == 0 })
	st := b.Stats()
	if st.MessagesIn != conns*streams*perStream || st.StreamsOpened != conns*streams {
		t.Errorf("stats: %+v", st)
	}
	if st.BufferBytes != 0 || st.LargeFrameBytes != 0 {
		t.Errorf("buffers still held after the streams ended: %d read, %d large", st.BufferBytes, st.LargeFrameBytes)
	}
}

// TestStreamPerMessage sends 10,000 messages, each on its own stream
// (DATA, FIN; the server ACKs and FINs), 64 at a time over one connection
// that allows 16 concurrent streams.
func TestStreamPerMessage(t *testing.T) {
	sink := newRecSink()
	b := startBridge(t, Config{MaxIncomingStreams: 16}, ingest.DispatcherConfig{}, sink)
	c := dial(t, b.Addr(), nil)
	const total, workers = 10000, 64
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				if err := oneShot(context.Background(), c, fmt.Sprintf("m%d", i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	perKey := checkRecords(t, sink.snapshot())
	if len(perKey) != total {
		t.Fatalf("%d messages reached the sink, want %d", len(perKey), total)
	}
	for i := range total {
		if perKey[fmt.Sprintf("m%d", i)] != 1 {
			t.Fatalf("message %d stored %d times", i, perKey[fmt.Sprintf("m%d", i)])
		}
	}
	waitFor(t, 5*time.Second, "streams to finish", func() bool { return b.Stats().StreamsActive == 0 })
	if st := b.Stats(); st.StreamsOpened != total || st.Acks != total {
		t.Errorf("stats: opened %d streams, sent %d ACKs; want %d each", st.StreamsOpened, st.Acks, total)
	}
}

// TestOneByteAtATime writes frames one byte per write, with pauses, so
// that every frame and header is split across many QUIC STREAM frames.
func TestOneByteAtATime(t *testing.T) {
	sink := newRecSink()
	b := startBridge(t, Config{}, ingest.DispatcherConfig{}, sink)
	c := dial(t, b.Addr(), nil)
	str, err := c.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var wire []byte
	for seq := uint64(1); seq <= 3; seq++ {
		wire = append(wire, dataFrame(seq, payloadFor("bytes", seq))...)
	}
	wire, _ = ingest.AppendPing(wire, 4, []byte("are you there"))
	for i := range wire {
		if _, err := str.Write(wire[i : i+1]); err != nil {
			t.Fatal(err)
		}
		if i%8 == 0 {
			time.Sleep(200 * time.Microsecond)
		}
	}
	var end error
	ch := replies(str, &end)
	var gotPong bool
	var acked uint64
	timeout := time.After(10 * time.Second)
	for !gotPong || acked < 3 {
		select {
		case f, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended: %v", end)
			}
			switch f.Kind {
			case ingest.KindAck:
				acked = f.Seq
			case ingest.KindPong:
				if f.Seq != 4 || string(f.Payload) != "are you there" {
					t.Fatalf("PONG seq %d payload %q", f.Seq, f.Payload)
				}
				gotPong = true
			default:
				t.Fatalf("unexpected %v", f.Kind)
			}
		case <-timeout:
			t.Fatalf("pong %v, acked %d", gotPong, acked)
		}
	}
	_ = str.Close()
	for range ch {
	}
	if !errors.Is(end, io.EOF) {
		t.Fatalf("want EOF, got %v", end)
	}
	if n := checkRecords(t, sink.snapshot())["bytes"]; n != 3 {
		t.Fatalf("%d records, want 3", n)
	}
}

// TestMalformedClosesOnlyTheStream sends a valid DATA frame and then a
// frame with a bad version: the stream gets ACK 1 (the frame before) and
// NACK 1, its reading half is stopped and the server FINs; the connection
// keeps serving new streams. A too-large frame is refused the same way
// with NACK 2, from its header alone.
func TestMalformedClosesOnlyTheStream(t *testing.T) {
	sink := newRecSink()
	b := startBridge(t, Config{MaxPayload: 4096}, ingest.DispatcherConfig{}, sink)
	c := dial(t, b.Addr(), nil)

	for _, tc := range []struct {
		name string
		bad  []byte
		code ingest.NackCode
	}{
		{"version", func() []byte { f := dataFrame(2, []byte("bad")); f[4] = 2; return f }(), ingest.NackMalformed},
		{"seq", dataFrame(1, []byte("seq does not increase")), ingest.NackMalformed},
		{"too-large", dataFrame(2, make([]byte, 5000))[:ingest.HeaderSize+10], ingest.NackTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			str, err := c.OpenStreamSync(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			wire := append(dataFrame(1, payloadFor("bad-"+tc.name, 1)), tc.bad...)
			if _, err := str.Write(wire); err != nil {
				t.Fatal(err)
			}
			var end error
			var got []ingest.Frame
			for f := range replies(str, &end) {
				got = append(got, f)
			}
			if !errors.Is(end, io.EOF) {
				t.Fatalf("stream end: %v, want EOF (FIN)", end)
			}
			var nack *ingest.Frame
			var acked uint64
			for i, f := range got {
				switch f.Kind {
				case ingest.KindAck:
					acked = f.Seq
				case ingest.KindNack:
					nack = &got[i]
				}
			}
			if acked != 1 || nack == nil || nack.NackCode() != tc.code {
				t.Fatalf("replies %+v: want ACK 1 and NACK code %d", got, tc.code)
			}
			// The server stopped reading (STOP_SENDING): writes fail with
			// the stream code that matches the NACK.
			var se *quic.StreamError
			deadline := time.Now().Add(5 * time.Second)
			for {
				_, err := str.Write([]byte("more"))
				if errors.As(err, &se) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("writes still succeed after the NACK (last err %v)", err)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if se.ErrorCode != quic.StreamErrorCode(tc.code) || !se.Remote {
				t.Fatalf("STOP_SENDING code %d remote %v, want %d", se.ErrorCode, se.Remote, tc.code)
			}
			// The connection still works.
			if err := oneShot(context.Background(), c, "after-"+tc.name); err != nil {
				t.Fatal(err)
			}
		})
	}
	if st := b.Stats(); st.Nacks[ingest.NackMalformed] != 2 || st.Nacks[ingest.NackTooLarge] != 1 || st.ConnsActive != 1 {
		t.Fatalf("stats %+v", st)
	}
}
