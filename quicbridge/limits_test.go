package quicbridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/internal/syncbuf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"golang.org/x/sys/unix"
)

// TestBackpressureStopsSender stalls the sink and lets a client write as
// fast as it can: once the shard queue is full the stream stops being read
// and QUIC flow control blocks the client's writes. What the client could
// write is bounded by the stream window + the queue + one read buffer (+ a
// frame and one packet of client-side buffering). After the sink resumes,
// every written message is acknowledged.
func TestBackpressureStopsSender(t *testing.T) {
	const (
		streamWindow = 16 << 10
		readBuffer   = 4 << 10
		queueBytes   = 32 << 10
		payloadSize  = 1024
		frameSize    = payloadSize + ingest.HeaderSize
	)
	sink := newRecSink()
	sink.stall()
	cfg := Config{StreamReceiveWindow: streamWindow, ConnReceiveWindow: 2 * streamWindow, ReadBufferSize: readBuffer}
	b := startBridge(t, cfg, ingest.DispatcherConfig{Shards: 1, QueueMessages: 4096, QueueBytes: queueBytes}, sink)
	c := dial(t, b.Addr(), nil)
	str, err := c.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	var written atomic.Int64 // bytes of whole frames the client wrote
	var lastSeq atomic.Uint64
	writerDone := make(chan struct{})
	stopWriting := make(chan struct{})
	go func() {
		defer close(writerDone)
		payload := make([]byte, payloadSize)
		for seq := uint64(1); ; seq++ {
			select {
			case <-stopWriting:
				return
			default:
			}
			copy(payload, payloadFor("bp", seq))
			if _, err := str.Write(dataFrame(seq, payload)); err != nil {
				return
			}
			written.Add(frameSize)
			lastSeq.Store(seq)
		}
	}()

	// Wait until the writer has made no progress for 300 ms.
	prev, still := int64(-1), time.Now()
	deadline := time.Now().Add(10 * time.Second)
	for time.Since(still) < 300*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("the client never blocked: %d bytes written", written.Load())
		}
		time.Sleep(20 * time.Millisecond)
		if w := written.Load(); w != prev {
			prev, still = w, time.Now()
		}
	}
	bound := int64(streamWindow + queueBytes/payloadSize*frameSize + readBuffer + frameSize + 1500)
	got := written.Load()
	t.Logf("client blocked after %d bytes (bound %d: stream window %d + queue %d + read buffer %d + frame + packet)",
		got, bound, streamWindow, queueBytes, readBuffer)
	if got > bound {
		t.Fatalf("client wrote %d bytes before blocking, bound %d", got, bound)
	}
	if got < queueBytes {
		t.Fatalf("client wrote only %d bytes: the queue never filled", got)
	}
	st := b.Stats()
	if st.QueueFull == 0 {
		t.Errorf("no backpressure event counted: %+v", st)
	}
	if st.BufferBytes > int64(readBuffer) || st.LargeFrameBytes != 0 {
		t.Errorf("server holds %d bytes of read buffers, %d of large frames", st.BufferBytes, st.LargeFrameBytes)
	}

	// Unblock the writer, resume the sink: every whole frame written is
	// acknowledged.
	close(stopWriting)
	_ = str.SetWriteDeadline(time.Now())
	sink.release()
	<-writerDone
	want := lastSeq.Load()
	var end error
	ch := replies(str, &end)
	timeout := time.After(10 * time.Second)
	for acked := uint64(0); acked < want; {
		select {
		case f, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended at ACK %d of %d: %v", acked, want, end)
			}
			if f.Kind != ingest.KindAck {
				t.Fatalf("unexpected %v", f.Kind)
			}
			acked = f.Seq
		case <-timeout:
			t.Fatalf("ACK stuck below %d", want)
		}
	}
	str.CancelWrite(0)
	str.CancelRead(0)
}

// TestOverloadReject answers NACK 3 to frames that do not fit the queue and
// keeps the stream open; the client resends under a new seq.
func TestOverloadReject(t *testing.T) {
	sink := newRecSink()
	sink.stall()
	b := startBridge(t, Config{Overload: ingest.OverloadReject}, ingest.DispatcherConfig{Shards: 1, QueueMessages: 2, QueueBytes: 1 << 20}, sink)
	c := dial(t, b.Addr(), nil)
	str, err := c.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Two fit (the worker takes the first, the queue holds the second),
	// at least one more cannot.
	var wire []byte
	for seq := uint64(1); seq <= 5; seq++ {
		wire = append(wire, dataFrame(seq, payloadFor("rej", seq))...)
	}
	if _, err := str.Write(wire); err != nil {
		t.Fatal(err)
	}
	var end error
	ch := replies(str, &end)
	var nacked []uint64
	timeout := time.After(5 * time.Second)
	for len(nacked) == 0 {
		select {
		case f := <-ch:
			if f.Kind != ingest.KindNack || f.NackCode() != ingest.NackOverloaded {
				t.Fatalf("got %v code %v before the sink resumed", f.Kind, f.NackCode())
			}
			nacked = append(nacked, f.Seq)
		case <-timeout:
			t.Fatal("no NACK 3")
		}
	}
	sink.release()
	// Wait until what was queued is acknowledged (the queue has room
	// again), then resend under a new seq on the same stream.
	var acked uint64
	for acked < 2 {
		select {
		case f, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended before ACK 2 (end %v)", end)
			}
			if f.Kind == ingest.KindAck {
				acked = f.Seq
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no ACK 2 after the sink resumed (last ACK %d)", acked)
		}
	}
	if _, err := str.Write(dataFrame(6, payloadFor("rej", 6))); err != nil {
		t.Fatal(err)
	}
	_ = str.Close()
	for f := range ch {
		if f.Kind == ingest.KindAck {
			acked = f.Seq
		}
	}
	if acked != 6 {
		t.Fatalf("last ACK %d, want 6 (end %v)", acked, end)
	}
	if st := b.Stats(); st.Nacks[ingest.NackOverloaded] == 0 || st.QueueFull == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestOverloadShed closes the connection whose push found the queue full.
func TestOverloadShed(t *testing.T) {
	sink := newRecSink()
	sink.stall()
	b := startBridge(t, Config{Overload: ingest.OverloadShed}, ingest.DispatcherConfig{Shards: 1, QueueMessages: 2, QueueBytes: 1 << 20}, sink)
	c := dial(t, b.Addr(), nil)
	str, err := c.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var wire []byte
	for seq := uint64(1); seq <= 5; seq++ {
		wire = append(wire, dataFrame(seq, payloadFor("shed", seq))...)
	}
	if _, err := str.Write(wire); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection not shed")
	}
	var ae *quic.ApplicationError
	if err := context.Cause(c.Context()); !errors.As(err, &ae) || ae.ErrorCode != CodeShed || !ae.Remote {
		t.Fatalf("close cause %v, want application error %d from the server", err, CodeShed)
	}
	sink.release()
	// The active count drops before the close cause is counted: wait for
	// both, then check that nothing else was counted.
	waitFor(t, 5*time.Second, "the shed connection to be reclaimed and counted", func() bool {
		st := b.Stats()
		return st.ConnsActive == 0 && st.ClosedBy[CloseShed] == 1
	})
	if st := b.Stats(); st.Shed != 1 || st.ClosedBy[CloseShed] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestVanishedClientReclaimed drops a client without CONNECTION_CLOSE (its
// UDP socket is closed under it): the server reclaims the connection at
// the idle timeout.
func TestVanishedClientReclaimed(t *testing.T) {
	sink := newRecSink()
	b := startBridge(t, Config{IdleTimeout: 400 * time.Millisecond}, ingest.DispatcherConfig{}, sink)
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	raddr, _ := net.ResolveUDPAddr("udp", b.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := tr.Dial(ctx, raddr, clientTLS(t), &quic.Config{MaxIdleTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// One stream mid-frame, one idle between frames.
	str, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := str.Write(dataFrame(1, payloadFor("gone", 1))[:40]); err != nil {
		t.Fatal(err)
	}
	if err := oneShot(ctx, c, "gone-ok"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the partial frame to be read", func() bool { return b.Stats().BufferBytes > 0 })
	_ = udp.Close() // vanish: no CONNECTION_CLOSE can leave
	began := time.Now()
	waitFor(t, 10*time.Second, "the connection to be reclaimed", func() bool { return b.Stats().ConnsActive == 0 })
	t.Logf("reclaimed %v after the client vanished", time.Since(began).Round(time.Millisecond))
	st := b.Stats()
	if st.ClosedBy[CloseIdle] != 1 || st.StreamsActive != 0 || st.BufferBytes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestStreamResetMidFrame resets a stream while a frame is half received,
// both a small one (in a read buffer) and a large one (in a large-frame
// buffer): the stream's state and buffers are released and the connection
// keeps working.
func TestStreamResetMidFrame(t *testing.T) {
	sink := newRecSink()
	b := startBridge(t, Config{ReadBufferSize: 4 << 10}, ingest.DispatcherConfig{}, sink)
	c := dial(t, b.Addr(), nil)
	for _, size := range []int{1000, 100 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			str, err := c.OpenStreamSync(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			frame := dataFrame(1, make([]byte, size))
			if _, err := str.Write(frame[:len(frame)/2]); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the half frame to be buffered", func() bool {
				st := b.Stats()
				return st.BufferBytes > 0 || st.LargeFrameBytes > 0
			})
			str.CancelWrite(0x77)
			waitFor(t, 5*time.Second, "the stream to be released", func() bool {
				st := b.Stats()
				return st.StreamsActive == 0 && st.BufferBytes == 0 && st.LargeFrameBytes == 0
			})
			str.CancelRead(0x77)
			if err := oneShot(context.Background(), c, fmt.Sprintf("after-reset-%d", size)); err != nil {
				t.Fatal(err)
			}
		})
	}
	if n := sink.count(); n != 2 {
		t.Fatalf("%d records stored, want the 2 sent after the resets", n)
	}
}

// TestMaxIncomingStreams lets a connection have 2 streams open: with both
// in use a third cannot be opened, a client opening 40 more at once waits
// for credit, and nothing is lost.
func TestMaxIncomingStreams(t *testing.T) {
	sink := newRecSink()
	b := startBridge(t, Config{MaxIncomingStreams: 2}, ingest.DispatcherConfig{}, sink)
	c := dial(t, b.Addr(), nil)
	var held []*quic.Stream
	for i := range 2 {
		str, err := c.OpenStreamSync(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := str.Write(dataFrame(1, payloadFor(fmt.Sprintf("held%d", i), 1))); err != nil {
			t.Fatal(err)
		}
		held = append(held, str)
	}
	waitFor(t, 5*time.Second, "the held streams to be served", func() bool { return b.Stats().StreamsActive == 2 })
	var limit *quic.StreamLimitReachedError
	if _, err := c.OpenStream(); !errors.As(err, &limit) {
		t.Fatalf("third stream: %v, want the stream limit", err)
	}
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() { errs <- oneShot(context.Background(), c, fmt.Sprintf("lim%d", i)) })
	}
	time.Sleep(100 * time.Millisecond)
	if got := sink.count(); got != 2 {
		t.Fatalf("%d records stored while the limit was reached, want the 2 held", got)
	}
	for _, str := range held { // finish the held streams: the waiting ones get credit
		_ = str.Close()
		go func() { _, _ = io.Copy(io.Discard, str) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := len(checkRecords(t, sink.snapshot())); got != n+2 {
		t.Fatalf("%d messages stored, want %d", got, n+2)
	}
}

// TestMaxConns refuses the connection past MaxConns with
// CodeTooManyConnections, and admits one again once a slot is free.
func TestMaxConns(t *testing.T) {
	b := startBridge(t, Config{MaxConns: 2}, ingest.DispatcherConfig{}, newRecSink())
	c1 := dial(t, b.Addr(), nil)
	c2 := dial(t, b.Addr(), nil)
	for i, c := range []*quic.Conn{c1, c2} {
		if err := oneShot(context.Background(), c, fmt.Sprintf("conn%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	c3 := dial(t, b.Addr(), nil)
	select {
	case <-c3.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("third connection not refused")
	}
	var ae *quic.ApplicationError
	if err := context.Cause(c3.Context()); !errors.As(err, &ae) || ae.ErrorCode != CodeTooManyConnections || !ae.Remote {
		t.Fatalf("refusal %v, want application error %d from the server", err, CodeTooManyConnections)
	} else {
		t.Logf("refused: %v", err)
	}
	if st := b.Stats(); st.ConnsRefused != 1 || st.ConnsActive != 2 {
		t.Fatalf("stats %+v", st)
	}
	_ = c1.CloseWithError(0, "bye")
	waitFor(t, 5*time.Second, "the closed connection to be reclaimed", func() bool { return b.Stats().ConnsActive == 1 })
	c4 := dial(t, b.Addr(), nil)
	if err := oneShot(context.Background(), c4, "conn4"); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.ClosedBy[CloseClient] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestLargeFrames sends frames larger than a read buffer, up to
// MaxPayload, on two streams at once while the large-frame budget holds
// only one maximal frame: one stream waits for the other, both arrive intact.
func TestLargeFrames(t *testing.T) {
	const maxPayload = 256 << 10
	sink := newRecSink()
	b := startBridge(t, Config{ReadBufferSize: 4 << 10, MaxPayload: maxPayload,
		StreamReceiveWindow: 64 << 10, ConnReceiveWindow: 128 << 10}, ingest.DispatcherConfig{FrameMemory: maxPayload + ingest.HeaderSize}, sink)
	c := dial(t, b.Addr(), nil)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i := range 2 {
		wg.Go(func() {
			str, err := c.OpenStreamSync(context.Background())
			if err != nil {
				errs <- err
				return
			}
			key := fmt.Sprintf("large%d", i)
			for seq := uint64(1); seq <= 6; seq++ {
				p := payloadFor(key, seq)
				p = append(p, make([]byte, []int{10 << 10, maxPayload - len(p), 5000}[seq%3])...)
				for j := range p[100:] {
					p[100+j] = byte(seq + uint64(j))
				}
				if _, err := str.Write(dataFrame(seq, p)); err != nil {
					errs <- err
					return
				}
			}
			_ = str.Close()
			dec := ingest.NewReplyDecoder()
			var acked uint64
			for {
				f, err := readFrame(str, &dec)
				if err != nil {
					break
				}
				acked = f.Seq
			}
			if acked != 6 {
				errs <- fmt.Errorf("%s: last ACK %d, want 6", key, acked)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for pid, recs := range sink.snapshot() {
		if len(recs) != 6 {
			t.Fatalf("producer %#x: %d records", pid, len(recs))
		}
		for _, r := range recs {
			for j := 100; j < len(r.payload); j++ {
				if r.payload[j] != byte(r.seq+uint64(j-100)) {
					t.Fatalf("producer %#x seq %d: byte %d damaged", pid, r.seq, j)
				}
			}
		}
	}
	waitFor(t, 5*time.Second, "buffers to be released", func() bool {
		st := b.Stats()
		return st.LargeFrameBytes == 0 && st.BufferBytes == 0
	})
}

// TestPartialFrameTimeout: a stream that starts a frame and never finishes
// it is reset once the idle timeout passes, although the connection stays
// alive (the client sends keep-alives); its read buffer is released.
func TestPartialFrameTimeout(t *testing.T) {
	b := startBridge(t, Config{IdleTimeout: 400 * time.Millisecond}, ingest.DispatcherConfig{}, newRecSink())
	c := dial(t, b.Addr(), &quic.Config{KeepAlivePeriod: 50 * time.Millisecond})
	str, err := c.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := str.Write(dataFrame(1, make([]byte, 500))[:100]); err != nil {
		t.Fatal(err)
	}
	var end error
	for range replies(str, &end) {
	}
	var se *quic.StreamError
	if !errors.As(end, &se) || se.ErrorCode != StreamCodeFrameTimeout {
		t.Fatalf("stream ended with %v, want a reset with code %d", end, StreamCodeFrameTimeout)
	}
	waitFor(t, 5*time.Second, "the stream to be released", func() bool {
		st := b.Stats()
		return st.StreamsActive == 0 && st.BufferBytes == 0
	})
	if st := b.Stats(); st.FrameTimeouts != 1 || st.ConnsActive != 1 {
		t.Fatalf("stats %+v", st)
	}
	if err := oneShot(context.Background(), c, "after-timeout"); err != nil {
		t.Fatal(err)
	}
}

// TestSlowReaderReset: a client that sends PINGs and never reads the PONGs
// fills its small receive window, then the server's pending replies; the
// server resets the stream instead of buffering more.
func TestSlowReaderReset(t *testing.T) {
	b := startBridge(t, Config{}, ingest.DispatcherConfig{}, newRecSink())
	c := dial(t, b.Addr(), &quic.Config{InitialStreamReceiveWindow: 2 << 10, MaxStreamReceiveWindow: 2 << 10})
	str, err := c.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_ = str.SetWriteDeadline(time.Now().Add(10 * time.Second))
	payload := make([]byte, ingest.MaxPingPayload)
	var se *quic.StreamError
	for seq := uint64(1); ; seq++ {
		ping, _ := ingest.AppendPing(nil, seq, payload)
		if _, err := str.Write(ping); err != nil {
			if !errors.As(err, &se) {
				t.Fatalf("write: %v, want a stream error", err)
			}
			break
		}
	}
	if se.ErrorCode != StreamCodeSlowReader || !se.Remote {
		t.Fatalf("stream error %v, want the server's code %d", se, StreamCodeSlowReader)
	}
	waitFor(t, 5*time.Second, "the stream to be released", func() bool { return b.Stats().StreamsActive == 0 })
	if st := b.Stats(); st.SlowReaders != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestAcceptQueueRefusalsCounted makes handshakes complete while the
// bridge cannot accept (its accept loop waits for the bridge's lock, held
// here), so quic-go's accept queue of 32 overflows and quic-go refuses the
// rest with CONNECTION_REFUSED before the bridge sees them. Every one of
// those must be counted: accepted + refused (accept_queue) = dialled, and
// the client side sees exactly that many refusals.
func TestAcceptQueueRefusalsCounted(t *testing.T) {
	const dials = 48
	var logs syncbuf.Buffer
	b := startBridge(t, Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, ingest.DispatcherConfig{}, newRecSink())
	b.mu.Lock()
	locked := true
	defer func() {
		if locked {
			b.mu.Unlock()
		}
	}()
	conns := make([]*quic.Conn, dials)
	errs := make([]error, dials)
	var wg sync.WaitGroup
	for i := range dials {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conns[i], errs[i] = quic.DialAddr(ctx, b.Addr(), clientTLS(t), nil)
		})
	}
	wg.Wait()
	// Each connection is now either queued, taken by the blocked accept
	// loop, or refused; the refusals may still be on their way.
	waitFor(t, 10*time.Second, "quic-go to refuse the connections past its queue", func() bool {
		return b.Stats().ConnsRefusedQueue >= dials-33
	})
	b.mu.Unlock()
	locked = false
	waitFor(t, 10*time.Second, "every connection to be accepted or refused", func() bool {
		st := b.Stats()
		return st.ConnsAccepted+st.ConnsRefusedQueue == dials
	})
	refusedSeen := 0
	time.Sleep(300 * time.Millisecond) // for a refusal still on its way to the client
	for i, c := range conns {
		err := errs[i]
		if c != nil {
			t.Cleanup(func() { _ = c.CloseWithError(0, "") })
			select {
			case <-c.Context().Done():
				err = context.Cause(c.Context())
			default:
				continue // accepted and alive
			}
		}
		var te *quic.TransportError
		if !errors.As(err, &te) || te.ErrorCode != quic.ConnectionRefused || !te.Remote {
			t.Fatalf("connection %d: %v, want CONNECTION_REFUSED from the server or a live connection", i, err)
		}
		refusedSeen++
	}
	st := b.Stats()
	t.Logf("accepted %d, refused by the accept queue %d", st.ConnsAccepted, st.ConnsRefusedQueue)
	if uint64(refusedSeen) != st.ConnsRefusedQueue || st.ConnsRefused != 0 {
		t.Fatalf("clients saw %d refusals; stats %+v", refusedSeen, st)
	}
	if got := refusedMetric(t, b, "accept_queue"); got != float64(st.ConnsRefusedQueue) {
		t.Fatalf("gyre_quic_connections_refused_total{reason=accept_queue} = %v, want %d", got, st.ConnsRefusedQueue)
	}
	if !strings.Contains(logs.String(), "quic-go's accept queue holds 32") {
		t.Fatalf("no warning about the accept queue in the log:\n%s", logs.String())
	}
}

// refusedMetric reads gyre_quic_connections_refused_total{reason} as a
// Prometheus registry would.
func refusedMetric(t *testing.T, b *Bridge, reason string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(b.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "gyre_quic_connections_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("gyre_quic_connections_refused_total{reason=%q} missing", reason)
	return 0
}

// TestUDPReceiveBuffer: the configured receive buffer is what the socket
// gets (this test runs as root in CI, so SO_RCVBUFFORCE may pass
// net.core.rmem_max; otherwise the bridge must still start, with at
// least rmem_max), and a negative size is refused.
func TestUDPReceiveBuffer(t *testing.T) {
	const want = 16 << 20
	b := startBridge(t, Config{UDPReceiveBuffer: want}, ingest.DispatcherConfig{}, newRecSink())
	rc, err := b.pc.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		got, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if os.Geteuid() == 0 && got/2 < want {
		t.Fatalf("receive buffer %d bytes usable, want %d", got/2, want)
	}
	t.Logf("receive buffer: %d bytes usable", got/2)
	c := dial(t, b.Addr(), nil)
	if err := oneShot(context.Background(), c, "udpbuf"); err != nil {
		t.Fatal(err)
	}

	d, err := ingest.NewDispatcher(ingest.DispatcherConfig{Sink: newRecSink()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := Listen(Config{Addr: "127.0.0.1:0", TLSConfig: serverTLS(), UDPReceiveBuffer: -1}, d); err == nil {
		t.Fatal("a negative UDPReceiveBuffer was accepted")
	}
}
