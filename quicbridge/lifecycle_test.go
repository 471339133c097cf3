package quicbridge

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
)

// Test0RTTAcrossRestart: a client that talked to a server resumes with
// 0-RTT against a restarted server that loaded the same ticket key file,
// its 0-RTT DATA reaches the sink before the handshake completes, and the
// ACK comes only after it (the client's Handshake packets are held back
// 800 ms to make the order visible). A server with another key rejects
// 0-RTT and says so in its metrics.
func Test0RTTAcrossRestart(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "tickets.key")
	if err := CreateTicketKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	if err := CreateTicketKeyFile(keyFile); err == nil {
		t.Fatal("CreateTicketKeyFile overwrote an existing file")
	}
	keys, err := LoadTicketKeys(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cache := tls.NewLRUClientSessionCache(4)
	ctls := clientTLS(t)
	ctls.ClientSessionCache = cache
	qconf := &quic.Config{TokenStore: quic.NewLRUTokenStore(4, 4)}

	// First server: a full handshake leaves a session ticket in the cache.
	{
		sink := newRecSink()
		b := startBridge(t, Config{TicketKeys: keys}, ingest.DispatcherConfig{}, sink)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := quic.DialAddrEarly(ctx, b.Addr(), ctls, qconf)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if err := oneShot(context.Background(), c, "first"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // the ticket follows the handshake
		_ = c.CloseWithError(0, "")
		if err := b.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}

	// "Restarted" server with the same keys, on another port: the session
	// cache is keyed by the server name, so the ticket applies.
	keys2, err := LoadTicketKeys(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	sink := newRecSink()
	b := startBridge(t, Config{TicketKeys: keys2}, ingest.DispatcherConfig{}, sink)
	// Long enough that a 0-RTT packet lost under load and resent after a
	// probe timeout (or two) still arrives before the held-back handshake.
	const delay = 2 * time.Second
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	slow := &handshakeDelayConn{PacketConn: udp, delay: delay, gate: make(chan struct{})}
	tr := &quic.Transport{Conn: slow}
	defer func() { slow.pending.Wait(); _ = tr.Close(); _ = udp.Close() }()
	raddr, _ := net.ResolveUDPAddr("udp", b.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	c, err := tr.DialEarly(ctx, raddr, ctls, qconf)
	if err != nil {
		t.Fatal(err)
	}
	str, err := c.OpenStream() // in 0-RTT: the handshake is not complete
	slow.release()             // now the server's reply may be processed
	if err != nil {
		t.Fatal(err)
	}
	if _, err := str.Write(dataFrame(1, payloadFor("early", 1))); err != nil {
		t.Fatal(err)
	}
	_ = str.Close()
	dec := ingest.NewReplyDecoder()
	f, err := readFrame(str, &dec)
	if err != nil || f.Kind != ingest.KindAck || f.Seq != 1 {
		t.Fatalf("reply %v %d, err %v; want ACK 1", f.Kind, f.Seq, err)
	}
	ackAt := time.Now()
	if !c.ConnectionState().Used0RTT {
		t.Fatal("the resumed connection did not use 0-RTT")
	}
	recs := sink.snapshot()
	if len(recs) != 1 {
		t.Fatalf("%d producers in the sink, want 1", len(recs))
	}
	var stored time.Time
	for _, r := range recs {
		stored = r[0].at
	}
	t.Logf("0-RTT DATA stored after %v, acknowledged after %v", stored.Sub(began).Round(time.Millisecond), ackAt.Sub(began).Round(time.Millisecond))
	// Under load a 0-RTT packet may be lost and resent after a PTO, but
	// the data still arrives long before the held-back handshake.
	if stored.Sub(began) >= delay {
		t.Errorf("the 0-RTT DATA reached the sink only after %v: it waited for the handshake", stored.Sub(began))
	}
	if ackAt.Sub(began) < delay {
		t.Errorf("ACK after %v, before the handshake could complete (%v)", ackAt.Sub(began), delay)
	}
	_ = c.CloseWithError(0, "")
	waitFor(t, 5*time.Second, "the 0-RTT outcome to be counted", func() bool { return b.Stats().ZeroRTTAccepted == 1 })

	// A server with a different key cannot decrypt the ticket: full
	// handshake, 0-RTT rejected.
	other := filepath.Join(t.TempDir(), "other.key")
	if err := CreateTicketKeyFile(other); err != nil {
		t.Fatal(err)
	}
	otherKeys, _ := LoadTicketKeys(other)
	b3 := startBridge(t, Config{TicketKeys: otherKeys}, ingest.DispatcherConfig{}, newRecSink())
	c3, err := quic.DialAddrEarly(ctx, b3.Addr(), ctls, qconf)
	if err != nil {
		t.Fatal(err)
	}
	<-c3.HandshakeComplete()
	if c3.ConnectionState().Used0RTT {
		t.Fatal("0-RTT accepted with an unknown ticket key")
	}
	// After a rejection, quic-go hands out the connection to use in 1-RTT.
	if c3, err = c3.NextConnection(ctx); err != nil {
		t.Fatal(err)
	}
	if err := oneShot(ctx, c3, "after-reject"); err != nil {
		t.Fatal(err)
	}
	_ = c3.CloseWithError(0, "")
	if st := b3.Stats(); st.ZeroRTTRejected != 1 || st.ZeroRTTAccepted != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestShutdownGoaway drains a connection with an open stream: GOAWAY with
// the highest accepted seq, FIN, then CONNECTION_CLOSE with CodeNoError. A
// stream opened during the drain gets GOAWAY 0.
func TestShutdownGoaway(t *testing.T) {
	sink := newRecSink()
	b := startBridge(t, Config{}, ingest.DispatcherConfig{}, sink)
	c := dial(t, b.Addr(), nil)
	str, err := c.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var wire []byte
	for seq := uint64(1); seq <= 50; seq++ {
		wire = append(wire, dataFrame(seq, payloadFor("drain", seq))...)
	}
	if _, err := str.Write(wire); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the frames to be queued", func() bool { return b.Stats().MessagesIn == 50 })
	var end error
	ch := replies(str, &end)

	shutdownErr := make(chan error, 1)
	go func() { shutdownErr <- b.Shutdown(context.Background()) }()

	var goaway *ingest.Frame
	var acked uint64
	for f := range ch {
		switch f.Kind {
		case ingest.KindAck:
			acked = f.Seq
		case ingest.KindGoaway:
			goaway = &f
		default:
			t.Fatalf("unexpected %v", f.Kind)
		}
	}
	if !errors.Is(end, io.EOF) {
		t.Fatalf("stream end %v, want EOF", end)
	}
	if goaway == nil || goaway.Seq != 50 || acked != 50 {
		t.Fatalf("GOAWAY %+v, last ACK %d; want GOAWAY 50 and ACK 50", goaway, acked)
	}
	// A stream opened now is told to go away at once (if the connection
	// is still there).
	if s2, err := c.OpenStream(); err == nil {
		if _, err := s2.Write(dataFrame(1, []byte("late"))); err == nil {
			dec := ingest.NewReplyDecoder()
			if f, err := readFrame(s2, &dec); err == nil && (f.Kind != ingest.KindGoaway || f.Seq != 0) {
				t.Fatalf("late stream got %v %d, want GOAWAY 0", f.Kind, f.Seq)
			}
		}
	}
	select {
	case <-c.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not close the connection")
	}
	var ae *quic.ApplicationError
	if err := context.Cause(c.Context()); !errors.As(err, &ae) || ae.ErrorCode != CodeNoError || !ae.Remote {
		t.Fatalf("close cause %v, want the server's CONNECTION_CLOSE with code 0", err)
	}
	if err := <-shutdownErr; err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.ConnsActive != 0 || st.ClosedBy[CloseShutdown] != 1 || st.StreamsActive != 0 {
		t.Fatalf("stats %+v", st)
	}
	if sink.count() != 50 {
		t.Fatalf("%d records stored, want 50", sink.count())
	}
}

// TestShutdownDeadline: with the sink stalled the drain cannot finish;
// at the context's end the connections are closed with CodeServerClosed.
func TestShutdownDeadline(t *testing.T) {
	sink := newRecSink()
	sink.stall()
	b := startBridge(t, Config{}, ingest.DispatcherConfig{}, sink)
	c := dial(t, b.Addr(), nil)
	str, err := c.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := str.Write(dataFrame(1, []byte("stuck"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the frame to be queued", func() bool { return b.Stats().MessagesIn == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := b.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want the deadline", err)
	}
	select {
	case <-c.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection still open")
	}
	var ae *quic.ApplicationError
	if err := context.Cause(c.Context()); !errors.As(err, &ae) || ae.ErrorCode != CodeServerClosed {
		t.Fatalf("close cause %v, want %d", err, CodeServerClosed)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSinkFailureNacks: a refused sink write becomes NACK 6 (storage
// unavailable) before any ACK
// that covers it.
func TestSinkFailureNacks(t *testing.T) {
	sink := newRecSink()
	sink.failing.Store(true)
	b := startBridge(t, Config{}, ingest.DispatcherConfig{}, sink)
	c := dial(t, b.Addr(), nil)
	str, err := c.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := str.Write(dataFrame(1, []byte("lost"))); err != nil {
		t.Fatal(err)
	}
	dec := ingest.NewReplyDecoder()
	f, err := readFrame(str, &dec)
	if err != nil || f.Kind != ingest.KindNack || f.Seq != 1 || f.NackCode() != ingest.NackStorageUnavailable {
		t.Fatalf("got %v seq %d code %v (%v), want NACK 6 for seq 1", f.Kind, f.Seq, f.NackCode(), err)
	}
	sink.failing.Store(false)
	if _, err := str.Write(dataFrame(2, []byte("kept"))); err != nil {
		t.Fatal(err)
	}
	if f, err := readFrame(str, &dec); err != nil || f.Kind != ingest.KindAck || f.Seq != 2 {
		t.Fatalf("got %v seq %d (%v), want ACK 2", f.Kind, f.Seq, err)
	}
	_ = b
}

// TestCollector registers the collector and checks the metric families.
func TestCollector(t *testing.T) {
	b := startBridge(t, Config{}, ingest.DispatcherConfig{}, newRecSink())
	c := dial(t, b.Addr(), nil)
	if err := oneShot(context.Background(), c, "metrics"); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(b.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, name := range []string{"gyre_quic_connections_active", "gyre_quic_connections_accepted_total",
		"gyre_quic_connections_refused_total", "gyre_quic_connections_closed_total", "gyre_quic_streams_active",
		"gyre_quic_0rtt_total", "gyre_quic_backpressure_events_total", "gyre_quic_connection_rtt_seconds",
		"gyre_quic_messages_total", "gyre_quic_acks_total", "gyre_quic_buffer_bytes"} {
		if !got[name] {
			t.Errorf("metric %s missing", name)
		}
	}
}

// TestConfigErrors covers the validation and the TLS helpers' errors.
func TestConfigErrors(t *testing.T) {
	d, err := ingest.NewDispatcher(ingest.DispatcherConfig{Sink: newRecSink()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, cfg := range []Config{
		{StreamReceiveWindow: 1 << 20, ConnReceiveWindow: 1 << 10},
		{ReadBufferSize: 100},
		{CertFile: "only-the-cert.pem"},
		{Overload: ingest.Overload(9)},
		{MaxConns: -1},
	} {
		cfg.Addr = "127.0.0.1:0"
		if b, err := Listen(cfg, d); err == nil {
			_ = b.Close()
			t.Errorf("Listen(%+v) succeeded", cfg)
		}
	}
	if _, err := Listen(Config{}, nil); err == nil {
		t.Error("Listen without a dispatcher succeeded")
	}
	small, err := ingest.NewDispatcher(ingest.DispatcherConfig{Sink: newRecSink(), FrameMemory: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	if b, err := Listen(Config{Addr: "127.0.0.1:0"}, small); err == nil || !strings.Contains(err.Error(), "FrameMemory") {
		if b != nil {
			_ = b.Close()
		}
		t.Errorf("Listen with frame memory below one maximal frame: %v, want an error naming FrameMemory", err)
	}
	if _, err := PinnedClientTLS("abcd"); err == nil {
		t.Error("PinnedClientTLS accepted a short fingerprint")
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(bad, []byte("# comment\nnot hex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTicketKeys(bad); err == nil || !strings.Contains(err.Error(), "bad.key:2") {
		t.Errorf("LoadTicketKeys: %v, want a line-numbered error", err)
	}
}

// TestPinMismatchAndDefaultCert: a bridge without TLS settings serves a
// generated certificate; a client pinning it connects, one pinning another
// certificate fails the handshake.
func TestPinMismatchAndDefaultCert(t *testing.T) {
	d, err := ingest.NewDispatcher(ingest.DispatcherConfig{Sink: newRecSink()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b, err := Listen(Config{Addr: "127.0.0.1:0", Logger: testLogger()}, d)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	good, _ := PinnedClientTLS(b.Fingerprint())
	good.ServerName = "localhost"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := quic.DialAddr(ctx, b.Addr(), good, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := oneShot(ctx, c, "pinned"); err != nil {
		t.Fatal(err)
	}
	_ = c.CloseWithError(0, "")
	wrong, _ := PinnedClientTLS(Fingerprint(testCert.Certificate[0]))
	if c, err := quic.DialAddr(ctx, b.Addr(), wrong, nil); err == nil {
		_ = c.CloseWithError(0, "")
		t.Fatal("handshake succeeded with the wrong pin")
	}
	noALPN := good.Clone()
	noALPN.NextProtos = []string{"h3"}
	if c, err := quic.DialAddr(ctx, b.Addr(), noALPN, nil); err == nil {
		_ = c.CloseWithError(0, "")
		t.Fatal("handshake succeeded without the ingest-v1 ALPN")
	}
}
