package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/quicbridge"
)

// startBridge runs an in-process QUIC bridge (with a generated certificate)
// over a discard sink on a loopback port.
func startBridge(t *testing.T, cfg quicbridge.Config) *quicbridge.Bridge {
	t.Helper()
	d, err := ingest.NewDispatcher(ingest.DispatcherConfig{Shards: 2, Sink: &ingest.DiscardSink{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := quicbridge.Listen(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func quicArgs(b *quicbridge.Bridge, args ...string) []string {
	return append([]string{"--transport", "quic", "--addr", b.Addr(), "--pin-sha256", b.Fingerprint()}, args...)
}

func TestQUICReuse(t *testing.T) {
	b := startBridge(t, quicbridge.Config{MaxIncomingStreams: 8})
	code, res, m, stderr := runJSON(t, quicArgs(b, "--conns", "2", "--streams", "3", "--messages", "500", "--size", "16-256")...)
	checkClean(t, code, res, m, stderr)
	if res.Transport != "quic" || res.QUICStreams != "reuse" || res.LoadStreams != 6 || res.MessagesSent != 3000 {
		t.Fatalf("result %+v", res)
	}
	if st := b.Stats(); st.MessagesIn != 3000 || st.StreamsOpened != 6 {
		t.Fatalf("server saw %d messages on %d streams", st.MessagesIn, st.StreamsOpened)
	}
}

func TestQUICPerMessage(t *testing.T) {
	b := startBridge(t, quicbridge.Config{MaxIncomingStreams: 8})
	code, res, m, stderr := runJSON(t, quicArgs(b, "--quic-streams", "per-message", "--conns", "2", "--streams", "8", "--messages", "300")...)
	checkClean(t, code, res, m, stderr)
	if res.QUICStreams != "per-message" || res.MessagesAcked != 600 {
		t.Fatalf("result %+v", res)
	}
	if st := b.Stats(); st.StreamsOpened != 600 {
		t.Fatalf("server opened %d streams, want one per message", st.StreamsOpened)
	}
}

func TestQUIC0RTT(t *testing.T) {
	for _, mode := range []string{"reuse", "per-message"} {
		t.Run(mode, func(t *testing.T) {
			b := startBridge(t, quicbridge.Config{})
			code, res, m, stderr := runJSON(t, quicArgs(b, "--0rtt", "--quic-streams", mode, "--conns", "3", "--streams", "2", "--messages", "50")...)
			checkClean(t, code, res, m, stderr)
			if res.ZeroRTTConns != 3 {
				t.Fatalf("%d of 3 connections used 0-RTT", res.ZeroRTTConns)
			}
			if st := b.Stats(); st.ZeroRTTAccepted != 3 {
				t.Fatalf("server accepted 0-RTT on %d connections", st.ZeroRTTAccepted)
			}
		})
	}
}

// TestQUICKill drops half the connections mid-run: the run still passes
// (they are reported apart) and the server reclaims them at its idle
// timeout.
func TestQUICKill(t *testing.T) {
	b := startBridge(t, quicbridge.Config{IdleTimeout: 300 * time.Millisecond})
	code, res, _, stderr := runJSON(t, quicArgs(b, "--conns", "4", "--streams", "2", "--duration", "600ms",
		"--kill", "0.5", "--kill-after", "200ms")...)
	if code != exitOK || !res.OK || res.Errors != 0 {
		t.Fatalf("exit %d, %d errors %v; stderr %s", code, res.Errors, res.ErrorSamples, stderr)
	}
	if res.KilledConns != 2 || res.KilledStreams != 4 || res.KilledMessagesSent == 0 || res.MessagesAcked == 0 {
		t.Fatalf("killed %d conns / %d streams (%d msgs); acked %d", res.KilledConns, res.KilledStreams, res.KilledMessagesSent, res.MessagesAcked)
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.Stats().ConnsActive != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("server still holds %d connections", b.Stats().ConnsActive)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := b.Stats(); st.ClosedBy[quicbridge.CloseIdle] != 2 {
		t.Fatalf("closed by cause %v, want 2 idle", st.ClosedBy)
	}
}

// TestQUICServerDrain shuts the server down mid-run in both stream modes:
// the load sees GOAWAY (per-message: NACK 4 for refused streams, then the
// connection's close) and reports no error.
func TestQUICServerDrain(t *testing.T) {
	for _, mode := range []string{"reuse", "per-message"} {
		t.Run(mode, func(t *testing.T) {
			b := startBridge(t, quicbridge.Config{})
			var wg sync.WaitGroup
			wg.Go(func() {
				time.Sleep(300 * time.Millisecond)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := b.Shutdown(ctx); err != nil {
					t.Errorf("Shutdown: %v", err)
				}
			})
			code, res, _, stderr := runJSON(t, quicArgs(b, "--quic-streams", mode, "--conns", "2", "--streams", "2", "--duration", "5s")...)
			wg.Wait()
			if code != exitOK || res.Errors != 0 || res.Unanswered != 0 {
				t.Fatalf("exit %d, %d errors %v, %d unanswered; stderr %s", code, res.Errors, res.ErrorSamples, res.Unanswered, stderr)
			}
			if res.Goaways == 0 || res.MessagesAcked == 0 {
				t.Fatalf("goaways %d, acked %d", res.Goaways, res.MessagesAcked)
			}
		})
	}
}

// TestQUICPinMismatch: a wrong pin fails every connection.
func TestQUICPinMismatch(t *testing.T) {
	b := startBridge(t, quicbridge.Config{})
	code, res, _, _ := runJSON(t, "--transport", "quic", "--addr", b.Addr(), "--pin-sha256", strings.Repeat("ab", 32),
		"--conns", "1", "--messages", "1", "--connect-timeout", "2s")
	if code != exitFail || res.Errors == 0 || !strings.Contains(strings.Join(res.ErrorSamples, " "), "pinned") {
		t.Fatalf("exit %d, errors %v", code, res.ErrorSamples)
	}
}

func TestQUICFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--streams", "2"}, "--streams needs --transport quic"},
		{[]string{"--kill", "0.1"}, "--kill needs --transport quic"},
		{[]string{"--transport", "quic", "--insecure", "--pin-sha256", strings.Repeat("ab", 32)}, "exclude each other"},
		{[]string{"--transport", "quic", "--quic-streams", "some"}, "--quic-streams"},
		{[]string{"--transport", "quic", "--kill", "1"}, "--kill"},
		{[]string{"--transport", "quic", "--streams", "0"}, "--streams"},
		{[]string{"--transport", "quic", "--quic-streams", "per-message", "--slow-clients", "0.2"}, "--slow-clients"},
		{[]string{"--quic-sockets", "4"}, "--quic-sockets needs --transport quic"},
		{[]string{"--transport", "quic", "--quic-sockets", "-1"}, "--quic-sockets"},
		{[]string{"--transport", "quic", "--quic-sockets", "4", "--kill", "0.1"}, "--kill needs a UDP socket per connection"},
		{[]string{"--transport", "quic", "--quic-sockets", "4", "--0rtt"}, "--0rtt needs a UDP socket per connection"},
		{[]string{"--hold", "-1s"}, "--hold"},
		{[]string{"--dial-parallel", "0"}, "--dial-parallel"},
		{[]string{"--server-pid", "-3"}, "--server-pid"},
	} {
		_, err := parseFlags(append(tc.args, "--messages", "1"), io.Discard, false)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one about %q", tc.args, err, tc.want)
		}
	}
	cfg, err := parseFlags([]string{"--transport", "quic", "--insecure", "--conns", "3", "--streams", "4", "--duration", "2s", "--kill", "0.3"}, io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != defaultQUICAddr || cfg.loadStreams() != 12 || cfg.KillAfter != time.Second {
		t.Fatalf("addr %s, %d load streams, kill after %v", cfg.Addr, cfg.loadStreams(), cfg.KillAfter)
	}
}
