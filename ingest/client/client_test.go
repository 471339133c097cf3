package client

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/quicbridge"
)

// TestSendFlush: records sent over QUIC and over TCP all arrive intact,
// exactly once (nothing went wrong), and every one is reported acked.
func TestSendFlush(t *testing.T) {
	for _, transport := range []string{"quic", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			sink := newRecSink()
			srv := startServer(t, ingest.ServerConfig{}, sink)
			b := startBridge(t, srv, quicbridge.Config{})
			ep := "tcp://" + srv.Addr()
			if transport == "quic" {
				ep = "quic://" + b.Addr()
			}
			res := newResults()
			c := dialT(t, Config{Endpoints: []string{ep}, TLSConfig: clientTLS(t), Window: 64, OnResult: res.on})
			const n = 2000
			ctx := ctxT(t, 20*time.Second)
			for i := range n {
				id, err := c.Send(ctx, payload(i))
				if err != nil {
					t.Fatal(err)
				}
				if id != uint64(i+1) {
					t.Fatalf("Send %d returned id %d", i, id)
				}
			}
			if err := c.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if dups := checkAll(t, n, sink); dups != 0 {
				t.Fatalf("%d duplicates without any failure", dups)
			}
			res.mu.Lock()
			if len(res.ok) != n || len(res.fail) != 0 {
				t.Fatalf("OnResult: %d acked, %d failed, want %d acked", len(res.ok), len(res.fail), n)
			}
			for id, k := range res.ok {
				if k != 1 {
					t.Fatalf("id %d reported %d times", id, k)
				}
			}
			res.mu.Unlock()
			st := c.Stats()
			if st.Acked != n || st.Sent != n || st.Endpoint != ep {
				t.Fatalf("stats %+v", st)
			}
			if err := c.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Send(ctx, payload(0)); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Send after Close: %v", err)
			}
		})
	}
}

// TestFlushEmpty: Flush with nothing sent returns at once.
func TestFlushEmpty(t *testing.T) {
	sink := newRecSink()
	srv := startServer(t, ingest.ServerConfig{}, sink)
	c := dialT(t, Config{Endpoints: []string{srv.Addr()}})
	if err := c.Flush(ctxT(t, time.Second)); err != nil {
		t.Fatal(err)
	}
}

// TestBackpressure: with the sink stalled, Send blocks at the window and
// at the byte bound, ctx cancels it, and nothing more is held.
func TestBackpressure(t *testing.T) {
	for _, tc := range []struct {
		name          string
		window, bytes int
		want          int
	}{
		{"window", 8, 1 << 20, 8},
		{"bytes", 64, 350, 3}, // 100-byte records
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newRecSink()
			sink.stall()
			srv := startServer(t, ingest.ServerConfig{}, sink)
			c := dialT(t, Config{Endpoints: []string{srv.Addr()}, Window: tc.window, MaxUnackedBytes: tc.bytes})
			queued := 0
			for range tc.want + 5 {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				_, err := c.Send(ctx, payload(queued))
				cancel()
				if errors.Is(err, context.DeadlineExceeded) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				queued++
			}
			if queued != tc.want {
				t.Fatalf("%d Sends returned with the sink stalled, want %d", queued, tc.want)
			}
			c.mu.Lock()
			held := c.bytes
			c.mu.Unlock()
			if held > max(tc.bytes, 100) {
				t.Fatalf("%d bytes held, bound %d", held, tc.bytes)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			err := c.Flush(ctx)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Flush with the sink stalled: %v", err)
			}
			sink.release()
			if err := c.Flush(ctxT(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			checkAll(t, queued, sink)
		})
	}
}

// TestFailoverQUICToTCP: the QUIC endpoint goes away mid-stream; the client
// resumes its session on TCP, and nothing is lost or stored twice.
func TestFailoverQUICToTCP(t *testing.T) {
	sink := newRecSink()
	srv := startServer(t, ingest.ServerConfig{}, sink)
	b := startBridge(t, srv, quicbridge.Config{})
	tcp := "tcp://" + srv.Addr()
	c := dialT(t, Config{
		Endpoints:   []string{"quic://" + b.Addr(), tcp},
		TLSConfig:   clientTLS(t),
		Window:      32,
		DialTimeout: time.Second,
	})
	const n = 3000
	ctx := ctxT(t, 30*time.Second)
	for i := range n {
		if i == n/3 {
			if st := c.Stats(); !strings.HasPrefix(st.Endpoint, "quic://") {
				t.Fatalf("not on QUIC before the failover: %+v", st)
			}
			_ = b.Close() // CONNECTION_CLOSE: in-flight records are lost or stored unacked
		}
		if _, err := c.Send(ctx, payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	dups := checkAll(t, n, sink)
	st := c.Stats()
	if st.Endpoint != tcp {
		t.Fatalf("on %q after the failover, want %s", st.Endpoint, tcp)
	}
	// One node: the session moves from QUIC to TCP, and the WELCOME on
	// TCP says what the QUIC stream stored.
	if dups != 0 || st.SessionsLost != 0 {
		t.Fatalf("%d duplicates after the move to TCP: %+v", dups, st)
	}
	t.Logf("resent %d, resumed %d, stats %+v", st.Resent, st.Resumed, st)
}

// TestUDPBlocked: the QUIC endpoint never answers (a UDP socket nobody
// reads); the client is on TCP within about the dial timeout.
func TestUDPBlocked(t *testing.T) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	sink := newRecSink()
	srv := startServer(t, ingest.ServerConfig{}, sink)
	start := time.Now()
	c := dialT(t, Config{
		Endpoints:   []string{"quic://" + udp.LocalAddr().String(), "tcp://" + srv.Addr()},
		TLSConfig:   clientTLS(t),
		DialTimeout: 300 * time.Millisecond,
	})
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Dial took %v with a 300ms dial timeout", d)
	}
	ctx := ctxT(t, 10*time.Second)
	for i := range 100 {
		if _, err := c.Send(ctx, payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkAll(t, 100, sink)
	if st := c.Stats(); st.DialErrors != 1 || !strings.HasPrefix(st.Endpoint, "tcp://") {
		t.Fatalf("stats %+v", st)
	}
}

// TestReconnectUDPBlocked: connected over TCP first, the client loses the
// connection and moves to a QUIC endpoint that never answers, then back to
// TCP: it gets there within a bounded time and loses nothing.
func TestReconnectAfterLoss(t *testing.T) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	sinkA, sinkB := newRecSink(), newRecSink()
	a := startServer(t, ingest.ServerConfig{}, sinkA)
	bsrv := startServer(t, ingest.ServerConfig{}, sinkB)
	c := dialT(t, Config{
		Endpoints:   []string{"tcp://" + a.Addr(), "quic://" + udp.LocalAddr().String(), "tcp://" + bsrv.Addr()},
		TLSConfig:   clientTLS(t),
		DialTimeout: 200 * time.Millisecond,
		Window:      16,
	})
	ctx := ctxT(t, 20*time.Second)
	const n = 600
	for i := range n {
		if i == n/2 {
			_ = a.Close() // abrupt: no GOAWAY
		}
		if _, err := c.Send(ctx, payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkAll(t, n, sinkA, sinkB)
	st := c.Stats()
	if st.Endpoint != "tcp://"+bsrv.Addr() || st.DialErrors < 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestOverloaded: the reject policy with a tiny queue answers NACK 3; the
// client backs off, reconnects and resends, and every record is stored
// exactly once.
func TestOverloaded(t *testing.T) {
	sink := newRecSink()
	sink.delay = time.Millisecond
	srv := startServer(t, ingest.ServerConfig{Overload: ingest.OverloadReject, QueueMessages: 2}, sink)
	c := dialT(t, Config{Endpoints: []string{srv.Addr()}, Window: 64, Backoff: Backoff{Initial: time.Millisecond, Max: 20 * time.Millisecond}})
	ctx := ctxT(t, 20*time.Second)
	const n = 300
	for i := range n {
		if _, err := c.Send(ctx, payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if dups := checkAll(t, n, sink); dups != 0 {
		t.Fatalf("%d duplicates: a NACK 3 record is not stored", dups)
	}
	st := c.Stats()
	// On a session's connection the server accepts nothing after a NACK:
	// it ends the connection, and the client resends from WELCOME's seq.
	if st.Nacks[ingest.NackOverloaded] == 0 || st.Retried < st.Nacks[ingest.NackOverloaded] || st.Dials < 2 {
		t.Fatalf("want NACK 3s, each retried on a new connection: %+v", st)
	}
	t.Logf("stats %+v", st)
}

// TestGoaway: the server shuts down (GOAWAY) mid-stream; the client moves
// to the next endpoint and resends what was unacknowledged.
func TestGoaway(t *testing.T) {
	sinkA, sinkB := newRecSink(), newRecSink()
	a := startServer(t, ingest.ServerConfig{}, sinkA)
	bsrv := startServer(t, ingest.ServerConfig{}, sinkB)
	c := dialT(t, Config{Endpoints: []string{"tcp://" + a.Addr(), "tcp://" + bsrv.Addr()}, Window: 32})
	ctx := ctxT(t, 20*time.Second)
	const n = 2000
	shut := make(chan error, 1)
	for i := range n {
		if i == n/2 {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				shut <- a.Shutdown(ctx)
			}()
		}
		if _, err := c.Send(ctx, payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	dups := checkAll(t, n, sinkA, sinkB)
	st := c.Stats()
	if st.Goaways+st.Nacks[ingest.NackShuttingDown] == 0 || st.Endpoint != "tcp://"+bsrv.Addr() || st.Resent != 0 {
		t.Fatalf("stats %+v", st)
	}
	if dups != 0 {
		// A graceful drain acknowledges what it stored: no duplicates.
		t.Fatalf("%d duplicates after a GOAWAY", dups)
	}
	_, totB := sinkB.snapshot()
	t.Logf("server B got %d records; stats %+v", totB, st)
}

// TestTooLarge: a record over the server's max payload fails with NACK 2
// (reported per record and by Flush); the others are stored.
func TestTooLarge(t *testing.T) {
	sink := newRecSink()
	srv := startServer(t, ingest.ServerConfig{MaxPayload: 1000}, sink)
	res := newResults()
	c := dialT(t, Config{Endpoints: []string{srv.Addr()}, OnResult: res.on})
	ctx := ctxT(t, 10*time.Second)
	var bigID uint64
	for i := range 100 {
		if i == 50 {
			id, err := c.Send(ctx, make([]byte, 2000))
			if err != nil {
				t.Fatal(err)
			}
			bigID = id
		}
		if _, err := c.Send(ctx, payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	err := c.Flush(ctx)
	var pe *ingest.ProtocolError
	if !errors.Is(err, ingest.ErrTooLarge) || !errors.As(err, &pe) {
		t.Fatalf("Flush: %v, want NACK 2", err)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("second Flush: %v (the failure was reported)", err)
	}
	checkAll(t, 100, sink)
	res.mu.Lock()
	defer res.mu.Unlock()
	if len(res.fail) != 1 || !errors.Is(res.fail[bigID], ingest.ErrTooLarge) {
		t.Fatalf("failures %v, want id %d too large", res.fail, bigID)
	}
	if _, err := c.Send(ctx, make([]byte, DefaultMaxPayload+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Send over MaxPayload: %v", err)
	}
}

// TestCloseAbandons: Close with the sink stalled returns the flush's
// error, stops every goroutine, and reports the records as closed.
func TestCloseAbandons(t *testing.T) {
	sink := newRecSink()
	sink.stall()
	srv := startServer(t, ingest.ServerConfig{}, sink)
	var failed atomic.Int64
	c, err := Dial(ctxT(t, 5*time.Second), Config{Endpoints: []string{srv.Addr()}, OnResult: func(id uint64, err error) {
		if errors.Is(err, net.ErrClosed) {
			failed.Add(1)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := c.Send(ctxT(t, time.Second), payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v", err)
	}
	if failed.Load() != 10 {
		t.Fatalf("%d records reported closed, want 10", failed.Load())
	}
	if err := c.Flush(context.Background()); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatal(err)
	}
}

// TestDialFails: no endpoint answers.
func TestDialFails(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if _, err := Dial(ctxT(t, 5*time.Second), Config{Endpoints: []string{addr}}); err == nil {
		t.Fatal("Dial succeeded with nothing listening")
	}
	if _, err := Dial(context.Background(), Config{}); err == nil {
		t.Fatal("Dial succeeded without endpoints")
	}
	if _, err := Dial(context.Background(), Config{Endpoints: []string{"udp://x:1"}}); err == nil {
		t.Fatal("Dial accepted udp://")
	}
}

// TestStorageUnavailable: a server whose sink fails answers NACK 6; the
// client backs off and fails over to the next endpoint, where every record
// is stored once (the failing server stored none).
func TestStorageUnavailable(t *testing.T) {
	sinkA, sinkB := newRecSink(), newRecSink()
	sinkA.failing.Store(true)
	a := startServer(t, ingest.ServerConfig{}, sinkA)
	bsrv := startServer(t, ingest.ServerConfig{}, sinkB)
	c := dialT(t, Config{Endpoints: []string{"tcp://" + a.Addr(), "tcp://" + bsrv.Addr()}, Window: 32})
	ctx := ctxT(t, 10*time.Second)
	const n = 200
	for i := range n {
		if _, err := c.Send(ctx, payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if dups := checkAll(t, n, sinkA, sinkB); dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
	st := c.Stats()
	if st.Nacks[ingest.NackStorageUnavailable] == 0 || st.Endpoint != "tcp://"+bsrv.Addr() {
		t.Fatalf("stats %+v", st)
	}
}

// TestGoawayQUIC: the QUIC bridge drains (GOAWAY on the stream, then
// CONNECTION_CLOSE); the client moves to TCP and loses nothing.
func TestGoawayQUIC(t *testing.T) {
	sink := newRecSink()
	srv := startServer(t, ingest.ServerConfig{}, sink)
	b := startBridge(t, srv, quicbridge.Config{})
	tcp := "tcp://" + srv.Addr()
	c := dialT(t, Config{Endpoints: []string{"quic://" + b.Addr(), tcp}, TLSConfig: clientTLS(t), Window: 32})
	ctx := ctxT(t, 20*time.Second)
	const n = 2000
	shut := make(chan error, 1)
	for i := range n {
		if i == n/2 {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				shut <- b.Shutdown(ctx)
			}()
		}
		if _, err := c.Send(ctx, payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	dups := checkAll(t, n, sink)
	st := c.Stats()
	if st.Goaways == 0 || st.Endpoint != tcp || dups != 0 || st.Resent != 0 {
		t.Fatalf("%d duplicates; stats %+v", dups, st)
	}
	t.Logf("duplicates %d; stats %+v", dups, st)
}

// TestSendAllocs: in the steady state Send, the write and the ACKs
// allocate nothing per record (Flush's wait may allocate a channel).
func TestSendAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	// AllocsPerRun counts the in-process server too: DiscardSink keeps the
	// server's side at zero (see ingest's server_alloc_test.go).
	srv, err := ingest.NewServer(ingest.ServerConfig{Addr: "127.0.0.1:0", Reactors: 1, Sink: &ingest.DiscardSink{},
		NonBlockingSink: true, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	var acked atomic.Int64
	c := dialT(t, Config{Endpoints: []string{srv.Addr()}, Window: 256, OnResult: func(uint64, error) { acked.Add(1) }})
	ctx := ctxT(t, 20*time.Second)
	p := payload(0)
	const batch = 100
	run := func() {
		for range batch {
			if _, err := c.Send(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	run() // warm up: buffers grow to size
	perRun := testing.AllocsPerRun(20, run)
	if perRun > batch/5 {
		t.Fatalf("%.1f allocations per run of %d records", perRun, batch)
	}
	t.Logf("%.1f allocations per %d records", perRun, batch)
}

// TestResumeFromAnotherClient: a client resuming a session it did not
// number (Config.Session, as a restarted producer does) starts its seqs
// far past WELCOME's, so that they cannot collide with records the server
// stored but did not count yet (a cluster's session store lags by a few
// milliseconds); nothing is lost or stored twice.
func TestResumeFromAnotherClient(t *testing.T) {
	sink := newRecSink()
	srv := startServer(t, ingest.ServerConfig{}, sink)
	ctx := ctxT(t, 10*time.Second)
	first := dialT(t, Config{Endpoints: []string{srv.Addr()}})
	for i := range 10 {
		if _, err := first.Send(ctx, payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	second := dialT(t, Config{Endpoints: []string{srv.Addr()}, Session: first.Session()})
	if _, err := second.Send(ctx, payload(10)); err != nil {
		t.Fatal(err)
	}
	if err := second.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if dups := checkAll(t, 11, sink); dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
	sink.mu.Lock()
	maxSeq := sink.maxSeq
	sink.mu.Unlock()
	if want := uint64(10 + 1 + resumeGap); maxSeq != want || second.Session() != first.Session() {
		t.Fatalf("the resumed client's record has seq %d, want %d past WELCOME's 10", maxSeq, want)
	}
}
