package quicbridge

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
)

// TestFrameMemorySharedWithTCP: the bridge and the TCP server of one node
// draw large frames from one budget, the dispatcher's. While a QUIC stream
// holds half of a maximal frame, a TCP connection's maximal frame is
// refused for want of frame memory (NACK 3); once the QUIC frame is done,
// the TCP frame, resent with a new seq, is stored.
func TestFrameMemorySharedWithTCP(t *testing.T) {
	const maxPayload = 256 << 10
	const frameSize = maxPayload + ingest.HeaderSize
	sink := newRecSink()
	srv, err := ingest.NewServer(ingest.ServerConfig{Addr: "127.0.0.1:0", Reactors: 1, Sink: sink, MaxPayload: maxPayload,
		FrameMemory: frameSize, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	b, err := Listen(Config{Addr: "127.0.0.1:0", TLSConfig: serverTLS(), MaxPayload: maxPayload, Logger: testLogger(),
		StreamReceiveWindow: 512 << 10, ConnReceiveWindow: 512 << 10}, srv.Dispatcher())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	qframe := dataFrame(1, make([]byte, maxPayload))
	str, err := dial(t, b.Addr(), nil).OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := str.Write(qframe[:len(qframe)/2]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the QUIC stream to hold frame memory", func() bool { return b.Stats().LargeFrameBytes == frameSize })

	tcp, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	if _, err := tcp.Write(dataFrame(1, make([]byte, maxPayload))); err != nil {
		t.Fatal(err)
	}
	tdec := ingest.NewReplyDecoder()
	_ = tcp.SetReadDeadline(time.Now().Add(10 * time.Second))
	if f, err := readFrame(tcp, &tdec); err != nil || f.Kind != ingest.KindNack || srv.Stats().FrameRefusals != 1 {
		t.Fatalf("TCP: %v seq %d (%v), want NACK 3 for want of frame memory", f.Kind, f.Seq, err)
	}
	if _, err := str.Write(qframe[len(qframe)/2:]); err != nil {
		t.Fatal(err)
	}
	dec := ingest.NewReplyDecoder()
	if f, err := readFrame(str, &dec); err != nil || f.Kind != ingest.KindAck || f.Seq != 1 {
		t.Fatalf("QUIC: %v seq %d (%v), want ACK 1", f.Kind, f.Seq, err)
	}
	if _, err := tcp.Write(dataFrame(2, make([]byte, maxPayload))); err != nil {
		t.Fatal(err)
	}
	if f, err := readFrame(tcp, &tdec); err != nil || f.Kind != ingest.KindAck || f.Seq != 2 {
		t.Fatalf("TCP: %v seq %d (%v), want ACK 2", f.Kind, f.Seq, err)
	}
	if n := sink.count(); n != 2 {
		t.Fatalf("sink holds %d records, want 2", n)
	}
	if held := srv.Stats().FrameMemory; held != 0 {
		t.Fatalf("%d bytes of frame memory still held", held)
	}
}
