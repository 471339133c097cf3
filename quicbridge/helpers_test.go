package quicbridge

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/quic-go/quic-go"
	"go.uber.org/goleak"
)

// testCert is the certificate every test server serves; clients pin it.
var testCert tls.Certificate

func TestMain(m *testing.M) {
	var err error
	if testCert, err = SelfSignedCert(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m)
}

func testLogger() *slog.Logger {
	if os.Getenv("QUICBRIDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{testCert}}
}

func clientTLS(t testing.TB) *tls.Config {
	t.Helper()
	c, err := PinnedClientTLS(Fingerprint(testCert.Certificate[0]))
	if err != nil {
		t.Fatal(err)
	}
	c.ServerName = "localhost"
	return c
}

// record is one record a sink received.
type record struct {
	seq     uint64
	payload string
	at      time.Time
	session ingest.SessionID
}

// recSink records every record by producer id; it can be stalled.
type recSink struct {
	mu      sync.Mutex
	byConn  map[uint64][]record
	total   int
	stalled chan struct{} // when non-nil, Write blocks until it is closed
	onWrite func(batch []ingest.Record)
	failing atomic.Bool // Write returns an error
}

func newRecSink() *recSink { return &recSink{byConn: map[uint64][]record{}} }

func (s *recSink) Write(batch []ingest.Record) error {
	s.mu.Lock()
	stall := s.stalled
	s.mu.Unlock()
	if stall != nil {
		<-stall
	}
	if s.onWrite != nil {
		s.onWrite(batch)
	}
	if s.failing.Load() {
		return errors.New("test sink failure")
	}
	now := time.Now()
	s.mu.Lock()
	for _, r := range batch {
		s.byConn[r.Conn] = append(s.byConn[r.Conn], record{seq: r.Seq, payload: string(r.Payload), at: now, session: r.Session})
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

func (s *recSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

func (s *recSink) snapshot() map[uint64][]record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[uint64][]record, len(s.byConn))
	for k, v := range s.byConn {
		out[k] = append([]record(nil), v...)
	}
	return out
}

// startBridge starts a dispatcher over sink and a bridge on a loopback port.
// Both are stopped at cleanup (the sink is released first, then the
// bridge closed, then the dispatcher).
func startBridge(t *testing.T, cfg Config, dcfg ingest.DispatcherConfig, sink ingest.Sink) *Bridge {
	t.Helper()
	dcfg.Sink = sink
	if dcfg.Shards == 0 {
		dcfg.Shards = 2
	}
	d, err := ingest.NewDispatcher(dcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	if cfg.Addr == "" && cfg.PacketConn == nil {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.TLSConfig == nil && cfg.CertFile == "" {
		cfg.TLSConfig = serverTLS()
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	b, err := Listen(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if rs, ok := sink.(*recSink); ok {
		t.Cleanup(rs.release)
	}
	return b
}

func dial(t *testing.T, addr string, qconf *quic.Config) *quic.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := quic.DialAddr(ctx, addr, clientTLS(t), qconf)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.CloseWithError(0, "") })
	return c
}

// payloadFor is the payload of message seq of the client stream key.
func payloadFor(key string, seq uint64) []byte {
	p := key + "/" + strconv.FormatUint(seq, 10) + "/"
	for len(p) < 100 {
		p += "x"
	}
	return []byte(p)
}

func dataFrame(seq uint64, payload []byte) []byte {
	b, err := ingest.AppendData(nil, seq, payload)
	if err != nil {
		panic(err)
	}
	return b
}

// readFrame reads one server frame.
func readFrame(r io.Reader, dec *ingest.Decoder) (ingest.Frame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return ingest.Frame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > 1<<16 {
		return ingest.Frame{}, fmt.Errorf("reply of %d bytes", n)
	}
	buf := make([]byte, 4+int(n))
	copy(buf, hdr[:])
	if _, err := io.ReadFull(r, buf[4:]); err != nil {
		return ingest.Frame{}, err
	}
	f, _, err := dec.Decode(buf)
	return f, err
}

// replies reads every frame until the stream ends and sends it on a channel
// that is closed at the end; the final read error is stored in *end.
func replies(str *quic.Stream, end *error) <-chan ingest.Frame {
	ch := make(chan ingest.Frame, 1024)
	go func() {
		defer close(ch)
		dec := ingest.NewReplyDecoder()
		for {
			f, err := readFrame(str, &dec)
			if err != nil {
				*end = err
				return
			}
			ch <- f
		}
	}()
	return ch
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkRecords verifies that every producer's records came from one client
// stream, in seq order, with intact payloads, and returns the number of
// records per client stream key.
func checkRecords(t *testing.T, byConn map[uint64][]record) map[string]int {
	t.Helper()
	perKey := map[string]int{}
	for pid, recs := range byConn {
		if pid>>63 != 1 {
			t.Errorf("producer id %#x lacks the QUIC bit", pid)
		}
		key, _, _ := strings.Cut(recs[0].payload, "/")
		var last uint64
		for _, r := range recs {
			if r.seq <= last {
				t.Fatalf("producer %#x: seq %d after %d", pid, r.seq, last)
			}
			last = r.seq
			if want := string(payloadFor(key, r.seq)); r.payload != want {
				t.Fatalf("producer %#x seq %d: payload %q, want %q", pid, r.seq, r.payload, want)
			}
		}
		if _, dup := perKey[key]; dup {
			t.Fatalf("client stream %q spread over several producer ids", key)
		}
		perKey[key] = len(recs)
	}
	return perKey
}

// pipeline sends n DATA frames with payloadFor(key, seq) on str, keeping at
// most window unacknowledged, and returns once all are acknowledged; then
// it half-closes the stream and waits for the server's FIN.
func pipeline(t *testing.T, str *quic.Stream, key string, n, window uint64) error {
	var acked atomic.Uint64
	progress := make(chan struct{}, 1)
	var endErr error
	ch := replies(str, &endErr)
	readerDone := make(chan error, 1)
	go func() {
		for f := range ch {
			switch f.Kind {
			case ingest.KindAck:
				acked.Store(f.Seq)
				select {
				case progress <- struct{}{}:
				default:
				}
			default:
				readerDone <- fmt.Errorf("%s: unexpected %v seq %d code %v", key, f.Kind, f.Seq, f.NackCode())
				return
			}
		}
		readerDone <- endErr
	}()
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	var out []byte
	for seq := uint64(1); seq <= n; seq++ {
		for seq-acked.Load() > window {
			select {
			case <-progress:
			case err := <-readerDone:
				return fmt.Errorf("%s: replies ended early: %v", key, err)
			case <-timeout.C:
				return fmt.Errorf("%s: no ACK for seq %d", key, seq-window)
			}
		}
		out = append(out, dataFrame(seq, payloadFor(key, seq))...)
		if len(out) > 8<<10 || seq == n || seq-acked.Load() >= window {
			if _, err := str.Write(out); err != nil {
				return fmt.Errorf("%s: write: %w", key, err)
			}
			out = out[:0]
		}
	}
	for acked.Load() < n {
		select {
		case <-progress:
		case err := <-readerDone:
			if acked.Load() < n {
				return fmt.Errorf("%s: replies ended at ACK %d: %v", key, acked.Load(), err)
			}
		case <-timeout.C:
			return fmt.Errorf("%s: stuck at ACK %d of %d", key, acked.Load(), n)
		}
	}
	if err := str.Close(); err != nil {
		return err
	}
	select {
	case err := <-readerDone:
		if !errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: want EOF after the last ACK, got %v", key, err)
		}
	case <-timeout.C:
		return fmt.Errorf("%s: no FIN from the server", key)
	}
	return nil
}

// oneShot sends one message on a new stream (DATA seq 1, FIN) and waits for
// its ACK and the server's FIN.
func oneShot(ctx context.Context, c *quic.Conn, key string) error {
	str, err := c.OpenStreamSync(ctx)
	if err != nil {
		return fmt.Errorf("%s: open: %w", key, err)
	}
	_ = str.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := str.Write(dataFrame(1, payloadFor(key, 1))); err != nil {
		return fmt.Errorf("%s: write: %w", key, err)
	}
	if err := str.Close(); err != nil {
		return err
	}
	dec := ingest.NewReplyDecoder()
	f, err := readFrame(str, &dec)
	if err != nil {
		return fmt.Errorf("%s: reading the ACK: %w", key, err)
	}
	if f.Kind != ingest.KindAck || f.Seq != 1 {
		return fmt.Errorf("%s: got %v seq %d, want ACK 1", key, f.Kind, f.Seq)
	}
	if _, err := readFrame(str, &dec); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: want the server's FIN, got %v", key, err)
	}
	return nil
}

// handshakeDelayConn delays the client's outgoing datagrams that hold a
// QUIC v1 Handshake packet (the client's Finished travels in one, often
// coalesced behind an Initial), so the server's handshake completes late
// while 0-RTT packets go through at once. It embeds net.PacketConn (not
// *net.UDPConn) so quic-go cannot bypass WriteTo.
//
// It also holds incoming datagrams until release: quic-go v0.65.0 races
// when a stream is opened on a 0-RTT connection while the server's
// transport parameters are applied (quic-go issue #4303), so the test opens
// its stream before the server's reply can be processed. A deadline change
// or Close releases the gate too, so Transport.Close never waits on it.
type handshakeDelayConn struct {
	net.PacketConn
	delay   time.Duration
	pending sync.WaitGroup
	gate    chan struct{}
	once    sync.Once
}

func (c *handshakeDelayConn) release() { c.once.Do(func() { close(c.gate) }) }

func (c *handshakeDelayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	<-c.gate
	return c.PacketConn.ReadFrom(p)
}

func (c *handshakeDelayConn) SetReadDeadline(t time.Time) error {
	c.release()
	return c.PacketConn.SetReadDeadline(t)
}

func (c *handshakeDelayConn) Close() error {
	c.release()
	return c.PacketConn.Close()
}

func (c *handshakeDelayConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if holdsHandshakePacket(b) {
		p := append([]byte(nil), b...)
		c.pending.Add(1)
		time.AfterFunc(c.delay, func() {
			defer c.pending.Done()
			_, _ = c.PacketConn.WriteTo(p, addr)
		})
		return len(b), nil
	}
	return c.PacketConn.WriteTo(b, addr)
}

// holdsHandshakePacket walks the coalesced long-header packets of a QUIC v1
// datagram (RFC 9000 section 17.2; the type bits are not header-protected).
func holdsHandshakePacket(b []byte) bool {
	const typeInitial, typeHandshake = 0, 2
	varint := func(b []byte) (uint64, int) {
		if len(b) == 0 {
			return 0, 0
		}
		n := 1 << (b[0] >> 6)
		if len(b) < n {
			return 0, 0
		}
		v := uint64(b[0] & 0x3f)
		for _, x := range b[1:n] {
			v = v<<8 | uint64(x)
		}
		return v, n
	}
	for len(b) > 7 && b[0]&0x80 != 0 {
		typ := (b[0] >> 4) & 3
		if typ == typeHandshake {
			return true
		}
		i := 5
		i += 1 + int(b[i]) // destination connection id
		if i >= len(b) {
			return false
		}
		i += 1 + int(b[i]) // source connection id
		if typ == typeInitial {
			tl, n := varint(b[i:])
			if n == 0 {
				return false
			}
			i += n + int(tl)
		}
		if i >= len(b) {
			return false
		}
		l, n := varint(b[i:])
		if n == 0 {
			return false
		}
		i += n + int(l)
		if i > len(b) {
			return false
		}
		b = b[i:]
	}
	return false
}

// helloFrame is a HELLO for session id (zero: a new session).
func helloFrame(id ingest.SessionID, name string) []byte {
	b, err := ingest.AppendHello(nil, id, name)
	if err != nil {
		panic(err)
	}
	return b
}

// dataFrames is DATA seq from..to with payloadFor(key, seq).
func dataFrames(key string, from, to uint64) []byte {
	var b []byte
	for seq := from; seq <= to; seq++ {
		b = append(b, dataFrame(seq, payloadFor(key, seq))...)
	}
	return b
}

// replyStream is a raw client stream with its replies read in the
// background (see replies).
type replyStream struct {
	t   *testing.T
	str *quic.Stream
	ch  <-chan ingest.Frame
	end error // valid once ch is closed
}

// openReplyStream opens a stream on c and starts reading its replies.
func openReplyStream(t *testing.T, c *quic.Conn) *replyStream {
	t.Helper()
	str, err := c.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rs := &replyStream{t: t, str: str}
	rs.ch = replies(str, &rs.end)
	return rs
}

func (rs *replyStream) write(b []byte) {
	rs.t.Helper()
	if _, err := rs.str.Write(b); err != nil {
		rs.t.Fatalf("write: %v", err)
	}
}

// next returns the next reply; it fails if the stream ends first.
func (rs *replyStream) next() ingest.Frame {
	rs.t.Helper()
	select {
	case f, ok := <-rs.ch:
		if !ok {
			rs.t.Fatalf("the stream ended (%v) before the reply expected", rs.end)
		}
		return f
	case <-time.After(10 * time.Second):
		rs.t.Fatal("no reply in 10 s")
	}
	panic("unreachable")
}

// expect returns the next reply, which must be of kind k.
func (rs *replyStream) expect(k ingest.Kind) ingest.Frame {
	rs.t.Helper()
	f := rs.next()
	if f.Kind != k {
		rs.t.Fatalf("got %v seq %d (code %v), want %v", f.Kind, f.Seq, f.NackCode(), k)
	}
	return f
}

// ackUpTo reads replies until an ACK of at least seq; anything but ACKs
// fails the test.
func (rs *replyStream) ackUpTo(seq uint64) {
	rs.t.Helper()
	for {
		f := rs.expect(ingest.KindAck)
		if f.Seq >= seq {
			if f.Seq != seq {
				rs.t.Fatalf("ACK %d, want %d", f.Seq, seq)
			}
			return
		}
	}
}

// rest reads the replies until the stream ends and returns them with the
// end (io.EOF for the server's FIN).
func (rs *replyStream) rest() ([]ingest.Frame, error) {
	rs.t.Helper()
	var got []ingest.Frame
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f, ok := <-rs.ch:
			if !ok {
				return got, rs.end
			}
			got = append(got, f)
		case <-timeout:
			rs.t.Fatalf("the stream did not end in 10 s; replies so far %+v", got)
		}
	}
}
