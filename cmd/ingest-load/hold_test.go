package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/internal/syncbuf"
	"github.com/gyre-io/gyre/quicbridge"
)

// TestQUICSharedSockets: with --quic-sockets 2, five connections leave
// from two local UDP addresses, and a run over them is clean (dialed two
// at a time).
func TestQUICSharedSockets(t *testing.T) {
	b := startBridge(t, quicbridge.Config{})
	cfg, err := parseFlags(quicArgs(b, "--quic-sockets", "2", "--conns", "5", "--messages", "1"), io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := newQUICTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	locals := map[string]int{}
	for range 5 {
		s, err := tr.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		locals[s.(*qstream).q.conn.LocalAddr().String()]++
		defer s.Close()
	}
	if len(locals) != 2 || tr.sockets[0].udp == nil || tr.sockets[1].udp == nil {
		t.Fatalf("5 connections from local addresses %v, want 2 shared sockets", locals)
	}
	_ = tr.Close()

	for _, mode := range []string{"reuse", "per-message"} {
		code, res, m, stderr := runJSON(t, quicArgs(b, "--quic-sockets", "2", "--quic-streams", mode, "--conns", "5",
			"--streams", "2", "--messages", "200", "--dial-parallel", "2")...)
		checkClean(t, code, res, m, stderr)
		if res.MessagesAcked != uint64(res.LoadStreams)*200 {
			t.Fatalf("%s: acked %d of %d", mode, res.MessagesAcked, res.LoadStreams*200)
		}
	}
	if st := b.Stats(); st.ConnsAccepted != 5+5+5 {
		t.Fatalf("server accepted %d connections, want 15", st.ConnsAccepted)
	}
}

// TestHold: --hold keeps every connection open once the messages are
// answered, says so on stderr, and closes them afterwards; SIGINT (ctx)
// ends it early. --server-pid (this process serves) reports CPU time.
func TestHold(t *testing.T) {
	b := startBridge(t, quicbridge.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, quicArgs(b, "--conns", "3", "--messages", "100", "--hold", "1m", "--warmup", "1ms",
			"--server-pid", strconv.Itoa(os.Getpid()), "--json"), &stdout, &stderr)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "ingest-load: holding 3 connections") {
		if time.Now().After(deadline) {
			t.Fatalf("no hold announced; stderr: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if n := b.Stats().ConnsActive; n != 3 {
		t.Fatalf("%d connections open during the hold, want 3", n)
	}
	select {
	case code := <-done:
		t.Fatalf("returned (%d) during the hold", code)
	default:
	}
	cancel() // SIGINT
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d; stderr %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the hold did not end on SIGINT")
	}
	var res result
	if err := json.Unmarshal([]byte(stdout.String()), &res); err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.MessagesAcked != 300 || res.ServerPID != os.Getpid() || res.ServerCPUSeconds < 0 || res.ServerCPUDialSeconds < 0 {
		t.Fatalf("result %+v", res)
	}
	for b.Stats().ConnsActive != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("server still holds %d connections after the hold", b.Stats().ConnsActive)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestParseStatTicks(t *testing.T) {
	line := []byte("4242 (a) (b c)) S 1 4242 4242 0 -1 4194560 500 0 0 0 1234 567 0 0 20 0 9 0 100 0 0\n")
	got, err := parseStatTicks(line)
	if err != nil || got != 1234+567 {
		t.Fatalf("parseStatTicks = %d, %v; want 1801", got, err)
	}
	if _, err := parseStatTicks([]byte("4242 (x) S 1 2")); err == nil {
		t.Fatal("a short line parsed")
	}
	if n, err := procCPUTicks(os.Getpid()); err != nil || n < 0 {
		t.Fatalf("own CPU ticks %d, %v", n, err)
	}
}

// TestRamp: --ramp gives load stream i of N the start offset i×D/N, and a
// ramped, paced run over TCP is clean, each stream sending about as much
// as its own clock allows.
func TestRamp(t *testing.T) {
	cfg, err := parseFlags([]string{"--conns", "4", "--ramp", "400ms", "--duration", "1s"}, io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	r := newRunner(cfg)
	for i, want := range []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond} {
		if got := time.Duration(newConn(r, i, false).offset); got != want {
			t.Errorf("conn %d starts at %v, want %v", i, got, want)
		}
	}
	s := startServer(t, ingest.ServerConfig{})
	code, res, m, stderr := runJSON(t, "--addr", s.Addr(), "--conns", "4", "--ramp", "400ms", "--rate", "200",
		"--duration", "800ms", "--window", "8")
	checkClean(t, code, res, m, stderr)
	// 50 msgs/s each: 40 over 800 ms without the ramp, 40 - 5*i with it
	// (+1 for the first message sent at once): 160 + 4 - 30 in all.
	if res.MessagesSent < 120 || res.MessagesSent > 140 {
		t.Fatalf("sent %d messages, want about 134", res.MessagesSent)
	}
}

// countingConn counts the datagrams the server reads.
type countingConn struct {
	net.PacketConn
	n atomic.Int64
}

func (c *countingConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if err == nil {
		c.n.Add(1)
	}
	return n, addr, err
}

// TestQUICKeepAlive: during a hold, a silent connection sends a PING every
// --quic-keepalive, so the server keeps receiving datagrams (and nothing
// else would: every message is answered).
func TestQUICKeepAlive(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{PacketConn: pc}
	d, err := ingest.NewDispatcher(ingest.DispatcherConfig{Shards: 1, Sink: &ingest.DiscardSink{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	b, err := quicbridge.Listen(quicbridge.Config{PacketConn: cc, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, quicArgs(b, "--conns", "2", "--messages", "10", "--hold", "1m", "--quic-keepalive", "100ms", "--json"), &stdout, &stderr)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "ingest-load: holding 2 connections") {
		if time.Now().After(deadline) {
			t.Fatalf("no hold announced; stderr: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the last ACKs' acknowledgements settle
	before := cc.n.Load()
	time.Sleep(time.Second)
	pings := cc.n.Load() - before
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("exit %d; stderr %s", code, stderr.String())
	}
	// 2 connections × 1 s / 100 ms = 20; the default (10 s) would send none.
	if pings < 10 {
		t.Fatalf("the server received %d datagrams in 1 s of hold, want about 20 keep-alive PINGs", pings)
	}
	t.Logf("%d datagrams in 1 s of hold", pings)
}
