// Command quic-plain is the baseline of `make bench-quic` (docs/quic.md,
// section Benchmark): ingest-v1 over QUIC served by plain quic-go, without
// gyre's bridge, dispatcher or sink. It speaks what ingest-load needs:
// every client bidirectional stream carries DATA frames (a long-lived
// stream, or one DATA and FIN per stream); each message is copied into a
// pooled buffer and handed to one channel, whose single consumer drops it
// (the discard sink); once the consumer took a message, the stream sends a
// cumulative ACK (one per stream for each batch the consumer took from the
// channel). After the client's FIN, the stream sends its last ACK and
// FIN.
//
// It is written as well as quic-go allows, the way the bridge is: the same
// quic.Config limits as ingestd's defaults (windows, streams, timeouts,
// 0-RTT), a reader goroutine per stream that waits in Peek holding no
// buffer, pooled read buffers with frames decoded in place, and an ACK
// writer goroutine started only while there is an ACK to send. What it
// leaves out: connection limits, memory budgets, GOAWAY and NACKs (a
// protocol error resets the stream). ACKs go out at once, as the bridge's do.
//
// /metrics serves the Go runtime metrics under the same names as ingestd's
// (go_memstats_*) and quicplain_connections_active; /debug/pprof/ the
// profiles (heap?gc=1 forces a GC).
//
//	quic-plain --addr 127.0.0.1:7401 --metrics 127.0.0.1:9401
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/quicbridge"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/quic-go/quic-go"
)

func main() {
	cfg := config{}
	flag.StringVar(&cfg.addr, "addr", quicbridge.DefaultAddr, "UDP listen address")
	metrics := flag.String("metrics", "127.0.0.1:9401", "address of the /metrics and /debug/pprof/ HTTP server (empty: off)")
	flag.IntVar(&cfg.queue, "queue", ingest.DefaultQueueMessages, "capacity of the message channel (ingestd: --queue-messages)")
	flag.IntVar(&cfg.maxPayload, "max-payload", ingest.DefaultMaxPayload, "largest DATA payload in bytes")
	flag.BoolVar(&cfg.direct, "direct", false, "read and ACK: no queue, no copy; each read's last DATA seq is acknowledged by the reader itself (the simplest server quic-go allows; what issue 14 calls plain quic-go)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, *metrics); err != nil {
		fmt.Fprintf(os.Stderr, "quic-plain: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, metricsAddr string) error {
	s, err := listen(cfg)
	if err != nil {
		return err
	}
	defer s.close()
	if metricsAddr != "" {
		ln, err := net.Listen("tcp", metricsAddr)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		srv := &http.Server{Handler: s.metricsHandler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}
	fmt.Fprintf(os.Stderr, "quic-plain: listening on %s (ALPN %s, self-signed certificate sha256=%s), metrics on %q\n",
		s.addr(), quicbridge.ALPN, s.fingerprint, metricsAddr)
	<-ctx.Done()
	fmt.Fprintf(os.Stderr, "quic-plain: stopped: %d messages, %d bytes, %d connections\n",
		s.messages.Load(), s.bytes.Load(), s.conns.Load())
	return nil
}

type config struct {
	addr       string
	queue      int
	maxPayload int
	direct     bool // --direct
}

// server is the listener, the message channel and its consumer.
type server struct {
	cfg         config
	tr          *quic.Transport
	ln          *quic.EarlyListener
	fingerprint string
	msgs        chan message
	stop        chan struct{} // closed by close: the consumer and blocked pushes return
	payloads    sync.Pool     // *[]byte: message payload copies
	readBufs    sync.Pool     // *[]byte: stream read buffers, readBufSize each
	wg          sync.WaitGroup

	messages, bytes, conns atomic.Uint64
	active                 atomic.Int64 // open connections
}

// message is one DATA payload on its way to the consumer.
type message struct {
	st      *stream
	seq     uint64
	payload *[]byte // from server.payloads; the consumer puts it back
}

// readBufSize is a stream's read buffer, as quicbridge's default.
const readBufSize = quicbridge.DefaultReadBufferSize

func listen(cfg config) (*server, error) {
	cert, err := quicbridge.SelfSignedCert()
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp", cfg.addr)
	if err != nil {
		return nil, err
	}
	var resetKey quic.StatelessResetKey
	_, _ = rand.Read(resetKey[:])
	s := &server{
		cfg:         cfg,
		tr:          &quic.Transport{Conn: pc, StatelessResetKey: &resetKey},
		fingerprint: quicbridge.Fingerprint(cert.Certificate[0]),
		msgs:        make(chan message, cfg.queue),
		stop:        make(chan struct{}),
	}
	s.readBufs.New = func() any { b := make([]byte, readBufSize); return &b }
	s.payloads.New = func() any { b := make([]byte, 0, 256); return &b }
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{quicbridge.ALPN}, MinVersion: tls.VersionTLS13}
	// ingestd's defaults (quicbridge.Config's zero values).
	qconf := &quic.Config{
		HandshakeIdleTimeout:           quicbridge.DefaultHandshakeTimeout,
		MaxIdleTimeout:                 quicbridge.DefaultIdleTimeout,
		InitialStreamReceiveWindow:     quicbridge.DefaultStreamWindow,
		MaxStreamReceiveWindow:         quicbridge.DefaultStreamWindow,
		InitialConnectionReceiveWindow: quicbridge.DefaultConnWindow,
		MaxConnectionReceiveWindow:     quicbridge.DefaultConnWindow,
		MaxIncomingStreams:             quicbridge.DefaultMaxIncomingStreams,
		MaxIncomingUniStreams:          -1,
		Allow0RTT:                      true,
	}
	if s.ln, err = s.tr.ListenEarly(tlsConf, qconf); err != nil {
		_ = pc.Close()
		return nil, err
	}
	s.wg.Add(2)
	go s.consume()
	go s.acceptLoop()
	return s, nil
}

func (s *server) addr() string { return s.tr.Conn.LocalAddr().String() }

// close stops accepting and closes every connection (no drain).
func (s *server) close() {
	_ = s.ln.Close()
	_ = s.tr.Close()
	_ = s.tr.Conn.Close()
	close(s.stop)
	s.wg.Wait()
}

func (s *server) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "quicplain_connections_active", Help: "Open QUIC connections."},
			func() float64 { return float64(s.active.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "quicplain_messages_total", Help: "Messages the consumer took."},
			func() float64 { return float64(s.messages.Load()) }))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	return mux
}

// consumeBatch is the most messages the consumer takes before it lets
// their streams acknowledge them.
const consumeBatch = 256

// consume is the discard sink: it takes the messages waiting (up to
// consumeBatch), drops them, and then lets each of their streams
// acknowledge once, so a backlog costs one ACK per stream, not one per
// message. It does not wait for more messages to batch.
func (s *server) consume() {
	defer s.wg.Done()
	batch := make([]*stream, 0, consumeBatch)
	for {
		var m message
		select {
		case m = <-s.msgs:
		case <-s.stop:
			return
		}
		for n := 0; ; n++ {
			s.messages.Add(1)
			s.bytes.Add(uint64(len(*m.payload)))
			s.payloads.Put(m.payload)
			if !m.st.inBatch {
				m.st.inBatch = true
				batch = append(batch, m.st)
			}
			m.st.batchSeq = m.seq
			if n+1 == consumeBatch {
				break
			}
			var more bool
			select {
			case m = <-s.msgs:
				more = true
			default:
			}
			if !more {
				break
			}
		}
		for i, st := range batch {
			st.inBatch = false
			st.accepted(st.batchSeq)
			batch[i] = nil
		}
		batch = batch[:0]
	}
}

func (s *server) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept(context.Background())
		if err != nil {
			return // closed
		}
		s.conns.Add(1)
		go s.serveConn(c)
	}
}

// serveConn accepts the connection's streams once its handshake is
// complete: nothing is acknowledged on a 0-RTT flight that may be a replay.
func (s *server) serveConn(c *quic.Conn) {
	s.active.Add(1)
	defer s.active.Add(-1)
	select {
	case <-c.HandshakeComplete():
	case <-c.Context().Done():
		return
	}
	for {
		str, err := c.AcceptStream(context.Background())
		if err != nil {
			return // the connection is gone
		}
		st := &stream{s: s, str: str}
		st.cond.L = &st.mu
		go st.serve()
	}
}

// stream is one ingest-v1 stream: serve reads and hands messages over;
// accepted (on the consumer) records progress and gets an ACK written.
type stream struct {
	s   *server
	str *quic.Stream
	dec ingest.Decoder

	mu       sync.Mutex
	cond     sync.Cond // (mu) serve waits on it after reading ended
	done     uint64    // (mu) highest seq the consumer took
	acked    uint64    // (mu) highest seq acknowledged on the wire
	pushed   uint64    // (mu) highest seq handed over
	writing  bool      // (mu) a writer goroutine runs
	readDone bool      // (mu) serve has stopped reading and writes itself
	dead     bool      // (mu) a write failed: the stream is gone
	ack      [ingest.HeaderSize]byte

	// The consumer's own: the highest seq of this stream in its batch.
	inBatch  bool
	batchSeq uint64
}

// accepted runs on the consumer and never blocks.
func (st *stream) accepted(seq uint64) {
	st.mu.Lock()
	st.done = seq // the consumer takes a stream's messages in seq order
	switch {
	case st.readDone:
		st.cond.Signal()
	case !st.writing && !st.dead:
		st.writing = true
		go st.writer()
	}
	st.mu.Unlock()
}

// writer sends cumulative ACKs while there is something to acknowledge.
func (st *stream) writer() {
	st.mu.Lock()
	for st.done > st.acked && !st.dead {
		st.writeAckLocked()
	}
	st.writing = false
	st.cond.Broadcast()
	st.mu.Unlock()
}

// writeAckLocked writes ACK done, releasing mu meanwhile; st.ack is used by
// one writer at a time (writing, or readDone with no writer left).
func (st *stream) writeAckLocked() {
	seq := st.done
	b := ingest.AppendAck(st.ack[:0], seq)
	st.mu.Unlock()
	_, err := st.str.Write(b)
	st.mu.Lock()
	if err != nil {
		st.dead = true
		return
	}
	st.acked = seq
}

// serve reads frames until the client's FIN or an error, then sends the
// last ACK and FIN.
func (st *stream) serve() {
	st.dec = ingest.NewDecoder(st.s.cfg.maxPayload)
	err := st.read()
	st.mu.Lock()
	st.readDone = true
	for err == nil && !st.dead && (st.writing || st.done < st.pushed || st.done > st.acked) {
		if !st.writing && st.done > st.acked {
			st.writeAckLocked()
			continue
		}
		st.cond.Wait()
	}
	st.mu.Unlock()
	var pe *ingest.ProtocolError
	switch {
	case errors.As(err, &pe):
		st.str.CancelRead(quic.StreamErrorCode(pe.Code))
		st.str.CancelWrite(quic.StreamErrorCode(pe.Code))
	case err != nil:
		st.str.CancelRead(0)
		st.str.CancelWrite(0)
	default:
		_ = st.str.Close() // FIN after the last ACK
	}
}

// read decodes frames until EOF (nil) or an error. Between bursts it waits
// in Peek without a buffer; a buffer is taken from the pool while there are
// bytes to decode.
func (st *stream) read() error {
	var one [1]byte
	var bp *[]byte
	var buf []byte // *bp, or a larger buffer for one big frame
	have := 0
	var lastData uint64 // direct: the last DATA seq of this read
	defer func() {
		if bp != nil {
			st.s.readBufs.Put(bp)
		}
	}()
	for {
		if have == 0 && bp != nil {
			st.s.readBufs.Put(bp)
			bp, buf = nil, nil
		}
		if bp == nil {
			if _, err := st.str.Peek(one[:]); err != nil {
				if errors.Is(err, io.EOF) {
					_, _ = st.str.Read(one[:]) // consume the FIN so the reading half completes
					return nil
				}
				return err
			}
			bp = st.s.readBufs.Get().(*[]byte)
			buf = *bp
		}
		n, rerr := st.str.Read(buf[have:])
		have += n
		used := 0
		for {
			f, k, err := st.dec.Decode(buf[used:have])
			if err == ingest.ErrNeedMore {
				if k > len(buf) { // a frame larger than the buffer
					big := make([]byte, k)
					copy(big, buf[used:have])
					buf, have, used = big, have-used, 0
				}
				break
			}
			if err != nil {
				return err
			}
			used += k
			if f.Kind == ingest.KindData {
				if st.s.cfg.direct {
					lastData = f.Seq
					st.s.messages.Add(1)
					st.s.bytes.Add(uint64(len(f.Payload)))
				} else {
					st.push(f.Seq, f.Payload)
				}
			} // PING: not used by the load; ignored
		}
		if lastData > 0 {
			// Direct: acknowledge what this read brought, from the reader.
			if _, err := st.str.Write(ingest.AppendAck(st.ack[:0], lastData)); err != nil {
				return err
			}
			st.mu.Lock()
			st.pushed, st.done, st.acked = lastData, lastData, lastData
			st.mu.Unlock()
			lastData = 0
		}
		have = copy(buf, buf[used:have])
		if len(buf) > readBufSize && have == 0 {
			buf = *bp // the big frame is done
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				if have > 0 {
					return &ingest.ProtocolError{Code: ingest.NackMalformed, Reason: "stream ended inside a frame"}
				}
				return nil
			}
			return rerr
		}
	}
}

// push hands a copy of payload to the consumer; a full channel blocks the
// reader, so flow control holds the client back.
func (st *stream) push(seq uint64, payload []byte) {
	p := st.s.payloads.Get().(*[]byte)
	*p = append((*p)[:0], payload...)
	st.mu.Lock()
	st.pushed = seq
	st.mu.Unlock()
	select {
	case st.s.msgs <- message{st: st, seq: seq, payload: p}:
	case <-st.s.stop:
	}
}
