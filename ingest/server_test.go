package ingest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gyre-io/gyre/reactor"
	"github.com/prometheus/client_golang/prometheus"
)

// startServer runs a Server with sink on a loopback port and shuts it down
// (and closes nothing else) when the test ends.
func startServer(t testing.TB, cfg ServerConfig) *Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.Reactors == 0 {
		cfg.Reactors = 2
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

// testClient speaks ingest-v1 over one TCP connection.
type testClient struct {
	t   *testing.T
	c   net.Conn
	w   *bufio.Writer
	dec Decoder
	buf []byte
	seq uint64
	ack uint64 // highest ACK seen
}

func dialClient(t *testing.T, addr string) *testClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	return &testClient{t: t, c: c, w: bufio.NewWriterSize(c, 64<<10), dec: NewReplyDecoder()}
}

func (tc *testClient) data(payload []byte) uint64 {
	tc.seq++
	b, err := AppendData(nil, tc.seq, payload)
	if err != nil {
		tc.t.Fatal(err)
	}
	if _, err := tc.w.Write(b); err != nil {
		tc.t.Fatal(err)
	}
	return tc.seq
}

func (tc *testClient) flush() {
	if err := tc.w.Flush(); err != nil {
		tc.t.Fatal(err)
	}
}

// next reads the next reply frame (its payload copied).
func (tc *testClient) next() (Frame, error) {
	for {
		f, n, err := tc.dec.Decode(tc.buf)
		if err == nil {
			f.Payload = append([]byte(nil), f.Payload...)
			tc.buf = tc.buf[n:]
			return f, nil
		}
		if !errors.Is(err, ErrNeedMore) {
			return Frame{}, err
		}
		tmp := make([]byte, 64<<10)
		m, err := tc.c.Read(tmp)
		tc.buf = append(tc.buf, tmp[:m]...)
		if err != nil {
			if m == 0 {
				return Frame{}, err
			}
		}
	}
}

// waitAck reads replies until an ACK covering seq arrives.
func (tc *testClient) waitAck(seq uint64) {
	tc.t.Helper()
	for {
		f, err := tc.next()
		if err != nil {
			tc.t.Fatalf("waiting for ACK %d: %v", seq, err)
		}
		if f.Kind != KindAck {
			tc.t.Fatalf("waiting for ACK %d: got %v seq %d", seq, f.Kind, f.Seq)
		}
		tc.ack = f.Seq
		if f.Seq >= seq {
			return
		}
	}
}

// TestServerPipelined100k runs 100,000 pipelined messages through the
// server, with the sink worker and with the reactor writing the sink
// itself (NonBlockingSink); then, in the second case, 500 messages one at a
// time, each waiting for its ACK.
func TestServerPipelined100k(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(fmt.Sprintf("NonBlockingSink=%v", inline), func(t *testing.T) {
			sink := &DiscardSink{}
			s := startServer(t, ServerConfig{Sink: sink, NonBlockingSink: inline})
			c := dialClient(t, s.Addr())
			payload := []byte("0123456789abcdef0123456789abcdef")
			const n = 100000
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				for i := 0; i < n; i++ {
					c.data(payload)
				}
				c.flush()
			}()
			c.waitAck(n)
			<-wrote // the writer's flush may still be returning: it owns c.w until then
			if got := sink.Records(); got != n {
				t.Fatalf("sink has %d records, want %d", got, n)
			}
			st := s.Stats()
			if st.MessagesIn != n || st.Acks == 0 || st.Acks >= n {
				t.Errorf("stats: %+v (acks should be cumulative: fewer than messages)", st)
			}
			if !inline {
				return
			}
			for i := 1; i <= 500; i++ {
				c.data(payload)
				c.flush()
				c.waitAck(uint64(n + i))
			}
			if got := sink.Records(); got != n+500 {
				t.Fatalf("sink has %d records, want %d", got, n+500)
			}
		})
	}
}

func TestServerOneByteAtATime(t *testing.T) {
	sink := &DiscardSink{}
	s := startServer(t, ServerConfig{Sink: sink, Reactors: 1})
	c := dialClient(t, s.Addr())
	var stream []byte
	for i := uint64(1); i <= 50; i++ {
		stream, _ = AppendData(stream, i, []byte("payload split across many reads"))
	}
	for _, b := range stream {
		if _, err := c.c.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	c.waitAck(50)
	if sink.Records() != 50 {
		t.Fatalf("sink has %d records", sink.Records())
	}
}

func TestServerPingPong(t *testing.T) {
	s := startServer(t, ServerConfig{Sink: &DiscardSink{}})
	c := dialClient(t, s.Addr())
	ping, _ := AppendPing(nil, 7, []byte("are you there"))
	if _, err := c.c.Write(ping); err != nil {
		t.Fatal(err)
	}
	f, err := c.next()
	if err != nil {
		t.Fatal(err)
	}
	if f.Kind != KindPong || f.Seq != 7 || string(f.Payload) != "are you there" {
		t.Fatalf("got %v seq %d %q", f.Kind, f.Seq, f.Payload)
	}
}

// expectNackAndClose sends raw bytes and expects a NACK with code, then EOF.
func expectNackAndClose(t *testing.T, addr string, raw []byte, code NackCode) {
	t.Helper()
	c := dialClient(t, addr)
	if _, err := c.c.Write(raw); err != nil {
		t.Fatal(err)
	}
	f, err := c.next()
	if err != nil {
		t.Fatal(err)
	}
	if f.Kind != KindNack || f.NackCode() != code {
		t.Fatalf("got %v code %v, want NACK %v", f.Kind, f.NackCode(), code)
	}
	if _, err := c.next(); err != io.EOF {
		t.Fatalf("after NACK %v: %v, want the server to close (EOF)", code, err)
	}
}

func TestServerMalformed(t *testing.T) {
	s := startServer(t, ServerConfig{Sink: &DiscardSink{}})
	good, _ := AppendData(nil, 5, []byte("x"))
	badVer := append([]byte(nil), good...)
	badVer[4] = 2
	badKind := append([]byte(nil), good...)
	badKind[5] = 9
	badFlags := append([]byte(nil), good...)
	badFlags[7] = 1
	shortLen := append([]byte(nil), good...)
	shortLen[3] = 11
	seqBack := append(append([]byte(nil), good...), good...) // seq 5 twice
	for name, raw := range map[string][]byte{"version": badVer, "kind": badKind, "flags": badFlags, "len": shortLen, "seq": seqBack} {
		t.Run(name, func(t *testing.T) { expectNackAndClose(t, s.Addr(), raw, NackMalformed) })
	}
	if s.Stats().Nacks[NackMalformed] < 5 {
		t.Errorf("nack counter: %+v", s.Stats().Nacks)
	}
}

// TestServerOversize: a header announcing 1 GiB gets NACK 2 at once; the
// server does not wait for (or buffer) the payload.
func TestServerOversize(t *testing.T) {
	s := startServer(t, ServerConfig{Sink: &DiscardSink{}, MaxPayload: 1024})
	hdr := appendHeader(nil, KindData, 0, 1, 1<<30)
	expectNackAndClose(t, s.Addr(), hdr, NackTooLarge)
}

// stallSink blocks every Write until released.
type stallSink struct {
	DiscardSink
	gate    chan struct{}
	entered atomic.Int64
}

func (s *stallSink) Write(b []Record) error {
	s.entered.Add(1)
	<-s.gate
	return s.DiscardSink.Write(b)
}

// TestServerBackpressureBlock: with the sink stalled and the block policy,
// clients writing as fast as they can get stuck, having written no more
// than the server and the kernel can hold; the server's Go heap stays
// within the configured bounds meanwhile; once the sink resumes every
// message is acknowledged and stored, none lost.
//
// What a stalled server can absorb from one connection, in payload bytes:
//
//   - its share of the shard queue: QueueBytes for all connections together
//     (QueueMessages also caps it, but the bytes bound is the larger here);
//   - the reactor's kept input: MaxInput = MaxPayload + 16 + 64 KiB, plus
//     the receive buffers already filled when the pause took effect, at
//     most the whole buffer ring;
//   - the server socket's receive buffer: at most net.ipv4.tcp_rmem's
//     maximum (autotuning grows it only while the server reads);
//   - the client socket's send buffer (SO_SNDBUF as the kernel set it).
//
// The server's heap holds the queue's arena (allocated at start, so not
// growth) and per connection at most one frame being reassembled
// (MaxPayload + 16), MaxInput of kept input and OutputCap of unsent
// replies; receive buffers are mmap'ed, outside the heap.
func TestServerBackpressureBlock(t *testing.T) {
	const (
		conns      = 4
		maxPayload = 16 << 10
		payload    = 16000
		queueBytes = 64 << 10
		outputCap  = 256 << 10
		sndBuf     = 64 << 10
	)
	bufs := reactor.BufferConfig{Count: 64, Size: 4096}
	maxInput := maxPayload + HeaderSize + 64<<10 // as NewServer sets it
	rmemMax := tcpMemMax(t, "/proc/sys/net/ipv4/tcp_rmem")

	sink := &stallSink{gate: make(chan struct{})}
	s := startServer(t, ServerConfig{Sink: sink, Reactors: 1, QueueMessages: 64, QueueBytes: queueBytes,
		MaxPayload: maxPayload, OutputCap: outputCap, ReceiveBuffers: bufs})
	heapBefore := heapInuse()

	frame, _ := AppendData(nil, 0, make([]byte, payload))
	type writer struct {
		c       net.Conn
		sndBuf  int
		written atomic.Int64 // frames whose Write returned
		total   int64
		err     error
		done    chan struct{}
	}
	var ws []*writer
	for i := 0; i < conns; i++ {
		w := &writer{done: make(chan struct{})}
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, sndBuf)
			})
		}}
		c, err := d.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		rc, _ := c.(*net.TCPConn).SyscallConn()
		_ = rc.Control(func(fd uintptr) { w.sndBuf, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF) })
		w.c = c
		// Enough to overflow everything a stalled server could hold.
		capacity := queueBytes + maxInput + bufs.Count*bufs.Size + rmemMax + w.sndBuf
		w.total = int64(capacity/len(frame) + 2)
		ws = append(ws, w)
	}
	for _, w := range ws {
		go func() {
			defer close(w.done)
			_ = w.c.SetWriteDeadline(time.Now().Add(60 * time.Second))
			f := append([]byte(nil), frame...)
			for seq := int64(1); seq <= w.total; seq++ {
				binary.BigEndian.PutUint64(f[8:], uint64(seq))
				if _, err := w.c.Write(f); err != nil {
					w.err = err
					return
				}
				w.written.Add(1)
			}
		}()
	}

	// Wait until no writer has progressed for 300 ms: all stuck.
	last, still := int64(-1), time.Now()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var sum int64
		for _, w := range ws {
			select {
			case <-w.done:
				t.Fatalf("a client wrote all %d frames (err %v): the server did not push back", w.total, w.err)
			default:
			}
			sum += w.written.Load()
		}
		if sum != last {
			last, still = sum, time.Now()
		} else if time.Since(still) > 300*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("clients still writing after 30 s")
		}
	}
	if s.Stats().Backpressure == 0 {
		t.Error("no backpressure event counted")
	}
	// Each client's written bytes stay under what the server side can hold:
	// the whole queue (shared; a bound for each), its input cap, the buffer
	// ring, and both socket buffers.
	var totalWritten int
	for i, w := range ws {
		n := int(w.written.Load()) * len(frame)
		totalWritten += n
		bound := queueBytes + maxInput + bufs.Count*bufs.Size + rmemMax + w.sndBuf
		t.Logf("client %d stuck after %d bytes (%d frames); bound %d (queue %d + input %d + ring %d + tcp_rmem max %d + SO_SNDBUF %d)",
			i, n, w.written.Load(), bound, queueBytes, maxInput, bufs.Count*bufs.Size, rmemMax, w.sndBuf)
		if n > bound {
			t.Errorf("client %d wrote %d bytes into a stalled server, over the bound %d", i, n, bound)
		}
	}
	// The server's heap grew by at most the per-connection caps (the queue's
	// arena was allocated before heapBefore), with 1 MiB of slack for the
	// runtime and the test's own bookkeeping.
	heapAfter := heapInuse()
	heapBound := conns*(maxPayload+HeaderSize+maxInput+outputCap) + 1<<20
	t.Logf("heap in use %d -> %d (+%d; bound %d) with %d bytes written by clients", heapBefore, heapAfter,
		int64(heapAfter)-int64(heapBefore), heapBound, totalWritten)
	if grew := int64(heapAfter) - int64(heapBefore); grew > int64(heapBound) {
		t.Errorf("heap grew by %d bytes under a stalled sink, over the bound %d", grew, heapBound)
	}

	close(sink.gate)
	// Released: everything is written, acked and stored.
	var want uint64
	for i, w := range ws {
		<-w.done
		if w.err != nil {
			t.Fatalf("client %d: %v", i, w.err)
		}
		c := &testClient{t: t, c: w.c, dec: NewReplyDecoder()}
		_ = w.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		c.waitAck(uint64(w.total))
		want += uint64(w.total)
	}
	if got := sink.Records(); got != want {
		t.Fatalf("sink has %d records, want %d", got, want)
	}
}

// heapInuse returns the Go heap in use after a full collection.
func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// tcpMemMax reads the maximum (third) value of net.ipv4.tcp_rmem or
// tcp_wmem.
func tcpMemMax(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("cannot read %s: %v", path, err)
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		t.Fatalf("%s: %q", path, b)
	}
	n, err := strconv.Atoi(f[2])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestServerBackpressureReject(t *testing.T) {
	sink := &stallSink{gate: make(chan struct{})}
	s := startServer(t, ServerConfig{Sink: sink, Reactors: 1, QueueMessages: 8, QueueBytes: 64 << 10, Overload: OverloadReject, MaxPayload: 1024})
	c := dialClient(t, s.Addr())
	for i := 0; i < 50; i++ {
		c.data([]byte("m"))
	}
	c.flush()
	// The queue holds 8 (the stalled batch included): 9..50 are refused
	// with NACK 3, and after the sink resumes ACK 8 covers the rest.
	for want := uint64(9); want <= 50; want++ {
		f, err := c.next()
		if err != nil {
			t.Fatal(err)
		}
		if f.Kind != KindNack || f.NackCode() != NackOverloaded || f.Seq != want {
			t.Fatalf("got %v %v seq %d, want NACK overloaded seq %d", f.Kind, f.NackCode(), f.Seq, want)
		}
	}
	close(sink.gate)
	c.waitAck(8)
	if c.ack != 8 {
		t.Fatalf("ACK %d, want 8", c.ack)
	}
	// The connection stays usable after NACK 3: resend with new seqs.
	c.data([]byte("again"))
	c.flush()
	c.waitAck(51)
}

func TestServerBackpressureShed(t *testing.T) {
	sink := &stallSink{gate: make(chan struct{})}
	s := startServer(t, ServerConfig{Sink: sink, Reactors: 1, QueueMessages: 16, QueueBytes: 64 << 10, Overload: OverloadShed, MaxPayload: 4096})
	big := dialClient(t, s.Addr())
	for i := 0; i < 15; i++ {
		big.data(make([]byte, 2000))
	}
	big.flush()
	for deadline := time.Now().Add(5 * time.Second); s.Stats().MessagesIn < 15; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the big connection's messages were not queued: %+v", s.Stats())
		}
	}
	small := dialClient(t, s.Addr())
	for i := 0; i < 3; i++ {
		small.data([]byte("x"))
	}
	small.flush()
	// The big connection is shed.
	_ = big.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, big.c); err != nil && !errors.Is(err, net.ErrClosed) {
		var ne net.Error
		if !errors.As(err, &ne) || ne.Timeout() {
			t.Fatalf("big connection not closed: %v", err)
		}
	}
	close(sink.gate)
	if s.Stats().Shed == 0 {
		t.Error("shed not counted")
	}
	// The small connection is shed as well (the queue is still full when
	// its next frame comes) or gets an answer for each of its three
	// messages; either way, nothing more is shed after that.
	nacked := map[uint64]bool{}
	_ = small.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for answered := false; !answered; {
		f, err := small.next()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the small connection got no answer: %v", err)
			}
			break // closed: shed too
		}
		switch f.Kind {
		case KindAck:
			small.ack = f.Seq
		case KindNack:
			nacked[f.Seq] = true
		}
		answered = true
		for seq := small.ack + 1; seq <= 3; seq++ {
			answered = answered && nacked[seq]
		}
	}
	// Every shed connection's close is counted under its cause, shed
	// (ErrShed), not as an ordinary server close.
	var st Stats
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if st = s.Stats(); st.ClosedBy[CloseShed] >= st.Shed || time.Now().After(deadline) {
			break
		}
	}
	if st.ClosedBy[CloseShed] != st.Shed || st.ClosedBy[CloseServer] != 0 {
		t.Errorf("ClosedBy = %v, want shed %d (as many as were shed) and no server", st.ClosedBy, st.Shed)
	}
	if v := closedMetric(t, s, "shed"); v != float64(st.Shed) {
		t.Errorf(`gyre_ingest_connections_closed_total{cause="shed"} = %v, want %d`, v, st.Shed)
	}
}

// closedMetric gathers s's collector and returns
// gyre_ingest_connections_closed_total for cause.
func closedMetric(t *testing.T, s *Server, cause string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "gyre_ingest_connections_closed_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "cause" && l.GetValue() == cause {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no gyre_ingest_connections_closed_total{cause=%q}", cause)
	return 0
}

// TestServerShutdownGoaway: every accepted message is acked, then GOAWAY
// with the last seq, then the connection closes; everything reached the sink.
func TestServerShutdownGoaway(t *testing.T) {
	sink := &DiscardSink{}
	s, err := NewServer(ServerConfig{Addr: "127.0.0.1:0", Sink: sink, Reactors: 2})
	if err != nil {
		t.Fatal(err)
	}
	var clients []*testClient
	for i := 0; i < 10; i++ {
		c := dialClient(t, s.Addr())
		for j := 0; j < 100; j++ {
			c.data([]byte("before shutdown"))
		}
		c.flush()
		clients = append(clients, c)
	}
	for _, c := range clients {
		c.waitAck(1) // connected and served
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func(c *testClient) {
			defer wg.Done()
			acked := c.ack
			for {
				f, err := c.next()
				if err != nil {
					t.Errorf("before GOAWAY: %v", err)
					return
				}
				switch f.Kind {
				case KindAck:
					acked = f.Seq
				case KindGoaway:
					if f.Seq != 100 || acked != 100 {
						t.Errorf("GOAWAY seq %d after ACK %d, want 100/100", f.Seq, acked)
					}
					if _, err := c.next(); err != io.EOF {
						t.Errorf("after GOAWAY: %v, want EOF", err)
					}
					return
				}
			}
		}(c)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if sink.Records() != 1000 {
		t.Errorf("sink has %d records, want 1000", sink.Records())
	}
}

// TestServerFramesSpanBuffers: with 64-byte receive buffers, every frame
// (16-byte header + 100-byte payload) spans several buffers, and many
// frames arrive per read; all are accepted intact.
func TestServerFramesSpanBuffers(t *testing.T) {
	sink := &recordingSink{}
	s := startServer(t, ServerConfig{Sink: sink, Reactors: 1, ReceiveBuffers: reactor.BufferConfig{Count: 16, Size: 64}})
	c := dialClient(t, s.Addr())
	const n = 2000
	for i := 1; i <= n; i++ {
		c.data(shardPayload(1, i, 100))
	}
	c.flush()
	c.waitAck(n)
	sink.mu.Lock() // the ACK came through the kernel: order the read for the race detector
	defer sink.mu.Unlock()
	if len(sink.recs) != n {
		t.Fatalf("sink has %d records, want %d", len(sink.recs), n)
	}
	for i, r := range sink.recs {
		if r.Seq != uint64(i+1) || !bytes.Equal(r.Payload, shardPayload(1, i+1, 100)) {
			t.Fatalf("record %d: seq %d, payload intact %v", i, r.Seq, bytes.Equal(r.Payload, shardPayload(1, i+1, 100)))
		}
	}
}

// slowReader connects with a tiny receive buffer, sends PINGs (each
// answered by an 80-byte PONG) and never reads.
func slowReader(t *testing.T, addr string, writes int) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		ping := make([]byte, 0, 64<<10)
		seq := uint64(0)
		for i := 0; i < writes; i++ {
			ping = ping[:0]
			for j := 0; j < 800; j++ {
				seq++
				ping, _ = AppendPing(ping, seq, make([]byte, MaxPingPayload))
			}
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(ping); err != nil {
				return
			}
		}
	}()
	return c
}

func waitSlowReaders(t *testing.T, s *Server, want uint64) time.Time {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().SlowReaders < want {
		if time.Now().After(deadline) {
			t.Fatalf("slow reader not disconnected; stats %+v", s.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.Stats(); st.ClosedBy[CloseSlowReader] != want {
		t.Errorf("ClosedBy = %v, want slow_reader %d", st.ClosedBy, want)
	}
	return time.Now()
}

// TestServerSlowReaderHitsCap: replies pile up past OutputCap within one
// burst: the client is disconnected at once.
func TestServerSlowReaderHitsCap(t *testing.T) {
	s := startServer(t, ServerConfig{Sink: &DiscardSink{}, Reactors: 1, OutputCap: 64 << 10, SlowReaderTimeout: time.Hour})
	slowReader(t, s.Addr(), 100)
	waitSlowReaders(t, s, 1)
}

// TestServerSlowReaderTimeout: replies stay under the cap but unread; the
// server stops reading, and after SlowReaderTimeout disconnects the client.
func TestServerSlowReaderTimeout(t *testing.T) {
	s := startServer(t, ServerConfig{Sink: &DiscardSink{}, Reactors: 1, OutputCap: 64 << 20, SlowReaderTimeout: 300 * time.Millisecond})
	began := time.Now()
	slowReader(t, s.Addr(), 1000)
	at := waitSlowReaders(t, s, 1)
	if d := at.Sub(began); d < 300*time.Millisecond {
		t.Errorf("disconnected after %v, before SlowReaderTimeout", d)
	}
}
