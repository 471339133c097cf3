package natssink_test

// Tests run the real NATS server (github.com/nats-io/nats-server/v2),
// in-process, with JetStream on and its store in a temporary directory,
// on loopback. Nothing of NATS is mocked.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest/natssink"
	"github.com/gyre-io/gyre/internal/natstest"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testStream  = "INGEST"
	testSubject = "ingest.records"
)

func testLogger() *slog.Logger {
	if os.Getenv("NATSSINK_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// natsServer is the in-process NATS server, with helpers for the test
// stream.
type natsServer struct{ *natstest.Server }

// newNATS prepares a server on port (0: a free one) without starting it.
func newNATS(t *testing.T, port int, users ...string) natsServer {
	return natsServer{natstest.New(t, port, users...)}
}

// startNATS starts a server on a free port.
func startNATS(t *testing.T, users ...string) natsServer {
	return natsServer{natstest.Start(t, users...)}
}

func (n natsServer) start()                              { n.Start() }
func (n natsServer) stop()                               { n.Stop() }
func (n natsServer) url() string                         { return n.URL() }
func (n natsServer) js(t *testing.T) jetstream.JetStream { return n.JS(t) }

// createStream makes the test stream (subjects ingest.>, file storage,
// one replica), changed by mod.
func (n natsServer) createStream(t *testing.T, mod ...func(*jetstream.StreamConfig)) {
	t.Helper()
	cfg := jetstream.StreamConfig{Name: testStream, Subjects: []string{"ingest.>"}, Storage: jetstream.FileStorage}
	for _, f := range mod {
		f(&cfg)
	}
	n.CreateStream(t, cfg)
}

type storedMsg = natstest.Msg

// readStream reads every message of the test stream, in stream order.
func (n natsServer) readStream(t *testing.T) []storedMsg {
	t.Helper()
	return n.ReadStream(t, testStream)
}

func ctx(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

// sinkConfig is a configuration for the test server, quick to reconnect.
func sinkConfig(n natsServer) natssink.Config {
	return natssink.Config{
		URLs:           []string{n.url()},
		Stream:         testStream,
		Subject:        testSubject,
		ReconnectWait:  20 * time.Millisecond,
		ConnectTimeout: time.Second,
		PublishTimeout: 5 * time.Second,
		Logger:         testLogger(),
	}
}

// openSink opens a sink, closed at cleanup.
func openSink(t *testing.T, cfg natssink.Config) *natssink.Sink {
	t.Helper()
	s, err := natssink.Open(ctx(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// waitHealth waits, on the sink's health change notifications, until
// Health is nil (healthy) or not (!healthy), and returns it.
func waitHealth(t *testing.T, s *natssink.Sink, healthy bool, within time.Duration) error {
	t.Helper()
	return waitHealthFor(t, s, fmt.Sprintf("healthy=%v", healthy), func(err error) bool { return (err == nil) == healthy }, within)
}

// waitHealthFor waits, on the sink's health change notifications, until
// cond(Health()) holds, and returns that Health.
func waitHealthFor(t *testing.T, s *natssink.Sink, what string, cond func(error) bool, within time.Duration) error {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		ch := s.HealthChanged()
		err := s.Health()
		if cond(err) {
			return err
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("health still %v after %v (want %s)", err, within, what)
		}
	}
}

func payload(i int) string { return fmt.Sprintf("rec/%06d/payload-with-some-bytes", i) }
