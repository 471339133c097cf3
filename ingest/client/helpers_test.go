package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/quicbridge"
	"go.uber.org/goleak"
)

var testCert tls.Certificate

func TestMain(m *testing.M) {
	var err error
	if testCert, err = quicbridge.SelfSignedCert(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m)
}

func testLogger() *slog.Logger {
	if os.Getenv("CLIENT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func clientTLS(t testing.TB) *tls.Config {
	t.Helper()
	c, err := quicbridge.PinnedClientTLS(quicbridge.Fingerprint(testCert.Certificate[0]))
	if err != nil {
		t.Fatal(err)
	}
	c.ServerName = "localhost"
	return c
}

// recSink counts every payload it stores; it can be stalled or slowed.
type recSink struct {
	mu      sync.Mutex
	count   map[string]int
	total   int
	stalled chan struct{} // when non-nil, Write blocks until it is closed
	delay   time.Duration // each Write sleeps this long
	failing atomic.Bool   // Write fails (the server answers NACK 6)
	maxSeq  uint64        // the highest seq stored
}

func newRecSink() *recSink { return &recSink{count: map[string]int{}} }

func (s *recSink) Write(batch []ingest.Record) error {
	s.mu.Lock()
	stall, delay := s.stalled, s.delay
	s.mu.Unlock()
	if stall != nil {
		<-stall
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	if s.failing.Load() {
		return errors.New("test sink failure")
	}
	s.mu.Lock()
	for _, r := range batch {
		s.count[string(r.Payload)]++
		s.maxSeq = max(s.maxSeq, r.Seq)
	}
	s.total += len(batch)
	s.mu.Unlock()
	return nil
}

func (s *recSink) Close() error { return nil }

func (s *recSink) stall() {
	s.mu.Lock()
	s.stalled = make(chan struct{})
	s.mu.Unlock()
}

func (s *recSink) release() {
	s.mu.Lock()
	if s.stalled != nil {
		close(s.stalled)
		s.stalled = nil
	}
	s.mu.Unlock()
}

func (s *recSink) snapshot() (map[string]int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.count))
	for k, v := range s.count {
		m[k] = v
	}
	return m, s.total
}

// startServer runs a TCP ingest server over sink on a loopback port; it is
// shut down at cleanup (after the sink is released).
func startServer(t *testing.T, cfg ingest.ServerConfig, sink *recSink) *ingest.Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	cfg.Sink = sink
	if cfg.Reactors == 0 {
		cfg.Reactors = 1
	}
	cfg.Logger = testLogger()
	s, err := ingest.NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	t.Cleanup(sink.release)
	return s
}

// startBridge serves QUIC on the server's dispatcher; it is closed at
// cleanup, before the server.
func startBridge(t *testing.T, s *ingest.Server, cfg quicbridge.Config) *quicbridge.Bridge {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	cfg.TLSConfig = &tls.Config{Certificates: []tls.Certificate{testCert}}
	cfg.Logger = testLogger()
	b, err := quicbridge.Listen(cfg, s.Dispatcher())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func payload(i int) []byte {
	p := "rec/" + strconv.Itoa(i) + "/"
	for len(p) < 100 {
		p += "x"
	}
	return []byte(p)
}

// checkAll verifies that records 0..n-1 are in the sink, intact, at least
// once, and nothing else; it returns the number of duplicates.
func checkAll(t *testing.T, n int, sinks ...*recSink) int {
	t.Helper()
	seen := map[string]int{}
	total := 0
	for _, s := range sinks {
		m, tot := s.snapshot()
		for k, v := range m {
			seen[k] += v
		}
		total += tot
	}
	for i := range n {
		if seen[string(payload(i))] == 0 {
			t.Fatalf("record %d missing (sinks hold %d records)", i, total)
		}
	}
	if len(seen) != n {
		t.Fatalf("sinks hold %d distinct payloads, want %d", len(seen), n)
	}
	return total - n
}

// results collects OnResult calls.
type results struct {
	mu   sync.Mutex
	ok   map[uint64]int
	fail map[uint64]error
}

func newResults() *results { return &results{ok: map[uint64]int{}, fail: map[uint64]error{}} }

func (r *results) on(id uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.fail[id] = err
	} else {
		r.ok[id]++
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func dialT(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := Dial(ctxT(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(ctxT(t, 10*time.Second)) })
	return c
}
