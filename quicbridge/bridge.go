// Package quicbridge serves the ingest-v1 protocol (docs/protocol.md) over
// QUIC and feeds the same dispatcher shards as the TCP server.
//
// Every client-initiated bidirectional stream is one ingest-v1 stream with
// its own seq space: DATA and PING go up, ACK, NACK, PONG and GOAWAY come
// back on the same stream. A stream that starts with HELLO belongs to a
// producer session instead (WELCOME answers it), whose seq space
// continues across streams and connections; a session is attached to one
// stream at a time. Clients may keep one long-lived stream per
// connection or open one stream per message (DATA, FIN; the server ACKs and
// FINs). Each connection pushes into one shard, so every stream's order is
// kept.
//
// Memory is bounded by Config, not by clients: fixed QUIC flow-control
// windows, a stream limit per connection, a connection limit, and two
// bridge-wide budgets for stream buffers. docs/quic.md has the arithmetic
// and the defaults.
//
// A Bridge is safe for concurrent use.
package quicbridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/gyre-io/gyre/internal/ratelog"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/internal/framemem"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlogwriter"
)

// Application error codes in the bridge's CONNECTION_CLOSE frames.
const (
	// CodeNoError closes a connection after a graceful drain (Shutdown).
	CodeNoError quic.ApplicationErrorCode = 0x0
	// CodeTooManyConnections refuses a connection because MaxConns
	// connections are being served. Try again later or elsewhere.
	CodeTooManyConnections quic.ApplicationErrorCode = 0x1
	// CodeShed closes a connection dropped by the shed overload policy.
	CodeShed quic.ApplicationErrorCode = 0x2
	// CodeServerClosed closes connections at Close, or when Shutdown's
	// context ends before they drained.
	CodeServerClosed quic.ApplicationErrorCode = 0x3
)

// Stream error codes in the bridge's STOP_SENDING and RESET_STREAM frames.
// The first four equal the NACK code the stream received just before.
const (
	// StreamCodeMalformed and StreamCodeTooLarge end the reading half of a
	// stream after NACK 1 or 2; the writing half still delivers that NACK
	// and the ACKs due, then FIN.
	StreamCodeMalformed quic.StreamErrorCode = 0x1
	StreamCodeTooLarge  quic.StreamErrorCode = 0x2
	// StreamCodeShuttingDown ends the reading half of a stream after
	// GOAWAY, the ACKs due and FIN: the bridge drains, or a stream with a
	// producer session was taken over by a newer HELLO or got NACK 3, 4
	// or 6.
	StreamCodeShuttingDown quic.StreamErrorCode = 0x4
	// StreamCodeUnknownSession ends the reading half of a stream after
	// NACK 5 (its HELLO named a session the server does not know), like
	// StreamCodeMalformed.
	StreamCodeUnknownSession quic.StreamErrorCode = 0x5
	// StreamCodeSlowReader resets both halves of a stream whose client
	// does not read its replies.
	StreamCodeSlowReader quic.StreamErrorCode = 0x10
	// StreamCodeFrameTimeout resets both halves of a stream on which a
	// frame did not arrive in full in time (see Config.IdleTimeout).
	StreamCodeFrameTimeout quic.StreamErrorCode = 0x11
)

// errTooManyConns refuses a connection at its first packet (QUIC
// CONNECTION_REFUSED): the polite refusal slots are all in use.
var errTooManyConns = errors.New("quicbridge: too many connections")

// extEarlyData is the TLS early_data extension: a ClientHello that carries
// it offers 0-RTT.
const extEarlyData = 42

// Bridge serves ingest-v1 over QUIC into a dispatcher.
type Bridge struct {
	cfg         Config
	disp        *ingest.Dispatcher
	log         *slog.Logger
	pc          net.PacketConn
	tr          *quic.Transport
	ln          *quic.EarlyListener
	fingerprint string
	stats       counters

	bufBudget *budget
	// frames is the dispatcher's frame memory, shared with the TCP server:
	// the buffers of frames larger than a read buffer.
	frames  *framemem.Budget
	bufPool sync.Pool // *[]byte of cfg.ReadBufferSize

	// live counts the connections quic-go holds, from their first packet
	// to their end, refused ones included; it bounds the state a flood of
	// handshakes can create (MaxConns + refuseSlack).
	live            atomic.Int64
	nextConn        atomic.Uint64
	nextProducer    atomic.Uint64
	refusalLog      ratelog.OncePerSecond // refusals over MaxConns
	queueRefusalLog ratelog.OncePerSecond // refusals by quic-go's accept queue

	mu      sync.Mutex
	conns   map[*conn]struct{}
	closing bool           // Shutdown or Close began: admit nothing
	wg      sync.WaitGroup // accept loop, connections, refusals

	stop       chan struct{} // closed when the bridge stops for good
	stopOnce   sync.Once
	finishOnce sync.Once
}

// connInfo travels in a connection's context from its first packet: what
// the bridge learns before the connection is accepted.
type connInfo struct {
	cid         atomic.Pointer[string] // original destination connection id, hex
	offered0RTT atomic.Bool
	// accepted: the bridge's Accept returned the connection. One that
	// ends without it never reached the bridge; see refusedByQueue.
	accepted atomic.Bool
}

type connInfoKey struct{}

// Listen starts serving QUIC on cfg.Addr (or cfg.PacketConn), pushing DATA
// into d's shards. The dispatcher must outlive the bridge: stop the bridge
// (Shutdown or Close) before closing the dispatcher.
func Listen(cfg Config, d *ingest.Dispatcher) (*Bridge, error) {
	if d == nil {
		return nil, errors.New("quicbridge: nil dispatcher")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if maxFrame := cfg.MaxPayload + ingest.HeaderSize; maxFrame > cfg.ReadBufferSize && framemem.Of(d).Size() < int64(maxFrame) {
		return nil, fmt.Errorf("quicbridge: the dispatcher's FrameMemory %d cannot hold one maximal frame of %d bytes", framemem.Of(d).Size(), maxFrame)
	}
	tlsConf, fingerprint, err := cfg.serverTLS()
	if err != nil {
		return nil, err
	}
	resetKey, tokenKey, err := cfg.transportKeys()
	if err != nil {
		return nil, err
	}
	if fingerprint == "" && len(tlsConf.Certificates) > 0 && len(tlsConf.Certificates[0].Certificate) > 0 {
		fingerprint = Fingerprint(tlsConf.Certificates[0].Certificate[0])
	}
	pc := cfg.PacketConn
	if pc == nil {
		if pc, err = net.ListenPacket("udp", cfg.Addr); err != nil {
			return nil, fmt.Errorf("quicbridge: listening on %s: %w", cfg.Addr, err)
		}
		if cfg.UDPReceiveBuffer > 0 {
			got, err := setReceiveBuffer(pc.(*net.UDPConn), cfg.UDPReceiveBuffer)
			switch {
			case err != nil:
				_ = pc.Close()
				return nil, fmt.Errorf("quicbridge: UDP receive buffer: %w", err)
			case got < cfg.UDPReceiveBuffer:
				cfg.Logger.Warn("the UDP receive buffer is smaller than configured: raise net.core.rmem_max or grant CAP_NET_ADMIN",
					"wanted", cfg.UDPReceiveBuffer, "got", got)
			}
		}
	}
	b := &Bridge{
		cfg:         cfg,
		disp:        d,
		log:         cfg.Logger,
		pc:          pc,
		fingerprint: fingerprint,
		bufBudget:   newBudget(cfg.BufferMemory),
		frames:      framemem.Of(d),
		conns:       make(map[*conn]struct{}),
		stop:        make(chan struct{}),
	}
	size := cfg.ReadBufferSize
	b.bufPool.New = func() any { buf := make([]byte, size); return &buf }

	prevGCFC := tlsConf.GetConfigForClient
	tlsConf.GetConfigForClient = func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		if info, ok := chi.Context().Value(connInfoKey{}).(*connInfo); ok && slices.Contains(chi.Extensions, extEarlyData) {
			info.offered0RTT.Store(true)
		}
		if prevGCFC != nil {
			return prevGCFC(chi)
		}
		return nil, nil
	}
	b.tr = &quic.Transport{
		Conn:              pc,
		StatelessResetKey: resetKey,
		TokenGeneratorKey: tokenKey,
		ConnContext:       b.connContext,
	}
	qconf := &quic.Config{
		HandshakeIdleTimeout:           cfg.HandshakeTimeout,
		MaxIdleTimeout:                 cfg.IdleTimeout,
		InitialStreamReceiveWindow:     cfg.StreamReceiveWindow,
		MaxStreamReceiveWindow:         cfg.StreamReceiveWindow,
		InitialConnectionReceiveWindow: cfg.ConnReceiveWindow,
		MaxConnectionReceiveWindow:     cfg.ConnReceiveWindow,
		MaxIncomingStreams:             cfg.MaxIncomingStreams,
		MaxIncomingUniStreams:          -1, // ingest-v1 uses bidirectional streams only
		Allow0RTT:                      !cfg.Disable0RTT,
		Tracer: func(ctx context.Context, _ bool, id quic.ConnectionID) qlogwriter.Trace {
			if info, ok := ctx.Value(connInfoKey{}).(*connInfo); ok {
				s := id.String()
				info.cid.Store(&s)
			}
			return nil
		},
	}
	ln, err := b.tr.ListenEarly(tlsConf, qconf)
	if err != nil {
		_ = b.tr.Close()
		_ = pc.Close()
		return nil, fmt.Errorf("quicbridge: starting the QUIC listener on %s: %w", pc.LocalAddr(), err)
	}
	b.ln = ln
	b.wg.Add(1)
	go b.acceptLoop()
	b.log.Info("quic listening", "transport", "quic", "addr", b.Addr(), "alpn", ALPN,
		"max_conns", cfg.MaxConns, "max_streams", cfg.MaxIncomingStreams,
		"stream_window", cfg.StreamReceiveWindow, "conn_window", cfg.ConnReceiveWindow,
		"idle_timeout", cfg.IdleTimeout, "0rtt", !cfg.Disable0RTT, "overload", cfg.Overload.String(),
		"max_payload", cfg.MaxPayload)
	if cfg.TLSConfig == nil && cfg.CertFile == "" {
		b.log.Warn("serving a generated self-signed certificate for localhost (development only); clients must pin it or skip verification",
			"sha256", fingerprint)
	}
	return b, nil
}

// Addr returns the bound UDP address.
func (b *Bridge) Addr() string { return b.pc.LocalAddr().String() }

// Fingerprint returns the SHA-256 (hex) of the certificate the bridge
// serves, for clients to pin; "" when TLSConfig supplies certificates only
// through a callback.
func (b *Bridge) Fingerprint() string { return b.fingerprint }

// connContext runs at a connection's first packet. It refuses the attempt
// outright when even the polite refusal slots are used up, and attaches the
// connInfo otherwise.
func (b *Bridge) connContext(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
	if b.live.Add(1) > int64(b.cfg.MaxConns+b.cfg.refuseSlack()) {
		b.live.Add(-1)
		b.stats.connsRefused.Add(1)
		b.logRefusal("quic_connection_refused")
		return nil, errTooManyConns
	}
	info := &connInfo{}
	ctx = context.WithValue(ctx, connInfoKey{}, info)
	context.AfterFunc(ctx, func() {
		b.live.Add(-1)
		if !info.accepted.Load() && refusedByQueue(context.Cause(ctx)) {
			b.stats.connsRefusedQueue.Add(1)
			b.logQueueRefusal()
		}
	})
	return ctx, nil
}

// refusedByQueue reports whether a connection that never reached Accept
// was closed by quic-go itself with CONNECTION_REFUSED: its handshake
// completed while quic-go's accept queue (32 connections) was full, or
// while the listener was closing. quic-go does not tell the application;
// without this the client sees a refusal the server's metrics do not.
func refusedByQueue(cause error) bool {
	var te *quic.TransportError
	return errors.As(cause, &te) && !te.Remote && te.ErrorCode == quic.ConnectionRefused
}

// logQueueRefusal logs refusals by quic-go's accept queue; they have their
// own limiter so that MaxConns refusals cannot hide them.
func (b *Bridge) logQueueRefusal() {
	if b.queueRefusalLog.OK() {
		b.log.Warn("refusing QUIC connections: handshakes complete faster than they are accepted (quic-go's accept queue holds 32); clients should retry with backoff",
			"refused_accept_queue_total", b.stats.connsRefusedQueue.Load())
	}
}

// logRefusal logs refusals over MaxConns.
func (b *Bridge) logRefusal(how string) {
	if !b.refusalLog.OK() {
		return
	}
	b.log.Warn("refusing QUIC connections: too many", "max_conns", b.cfg.MaxConns, "how", how,
		"refused_total", b.stats.connsRefused.Load())
}

func (b *Bridge) acceptLoop() {
	defer b.wg.Done()
	for {
		qc, err := b.ln.Accept(context.Background())
		if err != nil {
			return // the listener was closed
		}
		b.admit(qc)
	}
}

// admit serves a new connection, or refuses it past MaxConns.
func (b *Bridge) admit(qc *quic.Conn) {
	info, _ := qc.Context().Value(connInfoKey{}).(*connInfo)
	if info == nil {
		info = &connInfo{}
	}
	info.accepted.Store(true)
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		_ = qc.CloseWithError(CodeServerClosed, "server shutting down")
		return
	}
	if len(b.conns) >= b.cfg.MaxConns {
		b.wg.Add(1)
		b.mu.Unlock()
		b.stats.connsRefused.Add(1)
		b.logRefusal("connection_close")
		go b.refuse(qc)
		return
	}
	id := b.nextConn.Add(1)
	cid := ""
	if p := info.cid.Load(); p != nil {
		cid = *p
	}
	ctx, cancel := context.WithCancel(qc.Context())
	c := &conn{
		b:           b,
		ctx:         ctx,
		cancelDrain: cancel,
		qc:          qc,
		id:          id,
		info:        info,
		shard:       b.disp.Shard(int(id % uint64(len(b.disp.Shards())))),
		log:         b.log.With("conn", id, "quic_cid", cid),
		streams:     make(map[*stream]struct{}),
	}
	b.conns[c] = struct{}{}
	b.wg.Add(1)
	b.mu.Unlock()
	b.stats.connsActive.Add(1)
	b.stats.connsAccepted.Add(1)
	c.log.Debug("quic connection accepted", "remote", qc.RemoteAddr().String())
	go c.run()
}

// refuse closes a connection over MaxConns with CodeTooManyConnections. It
// waits for the handshake so that the code arrives in a 1-RTT packet:
// during the handshake, QUIC replaces application codes by a bare
// APPLICATION_ERROR.
func (b *Bridge) refuse(qc *quic.Conn) {
	defer b.wg.Done()
	select {
	case <-qc.HandshakeComplete():
	case <-qc.Context().Done():
		return
	case <-b.stop:
	}
	_ = qc.CloseWithError(CodeTooManyConnections, fmt.Sprintf("too many connections (max %d)", b.cfg.MaxConns))
}

func (b *Bridge) unregister(c *conn) {
	b.mu.Lock()
	delete(b.conns, c)
	b.mu.Unlock()
	cause := context.Cause(c.qc.Context())
	cl := classify(cause)
	// The cause first: whoever sees the active count drop also sees why.
	b.stats.closedBy[cl].Add(1)
	b.stats.observeClose(c.qc.ConnectionStats().SmoothedRTT)
	b.stats.connsActive.Add(-1)
	c.log.Debug("quic connection closed", "cause", cl.String(), "err", cause)
}

// rtts returns the smoothed RTT of every open connection.
func (b *Bridge) rtts() []time.Duration {
	b.mu.Lock()
	conns := make([]*conn, 0, len(b.conns))
	for c := range b.conns {
		conns = append(conns, c)
	}
	b.mu.Unlock()
	out := make([]time.Duration, 0, len(conns))
	for _, c := range conns {
		if r := c.qc.ConnectionStats().SmoothedRTT; r > 0 {
			out = append(out, r)
		}
	}
	return out
}

// beginClose stops admitting connections and returns the open ones.
func (b *Bridge) beginClose() (conns []*conn, first bool) {
	b.mu.Lock()
	first = !b.closing
	b.closing = true
	for c := range b.conns {
		conns = append(conns, c)
	}
	b.mu.Unlock()
	_ = b.ln.Close() // Accept returns; connections still handshaking are refused
	return conns, first
}

// Shutdown drains the bridge: it stops accepting connections; every open
// stream (and every stream opened from then on) stops reading and gets
// GOAWAY with the highest seq taken from it, then the ACKs still due as
// the sink confirms them, then FIN; then each connection is closed with
// CodeNoError (CONNECTION_CLOSE), and Shutdown waits until every goroutine
// of the bridge has returned. A client that closes its connection itself
// after the FINs saves the bridge a short linger (a few RTTs, at most 1 s)
// that lets the last ACKs arrive.
//
// If ctx ends first, the remaining connections are closed at once with
// CodeServerClosed and Shutdown returns ctx's error. After Shutdown the
// bridge pushes nothing more into the dispatcher; messages it queued
// before may still complete (their Done calls are harmless).
func (b *Bridge) Shutdown(ctx context.Context) error {
	conns, first := b.beginClose()
	if !first {
		b.finish()
		return nil
	}
	b.log.Info("quic draining", "connections", len(conns))
	drained := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Go(func() { c.drain(ctx) })
		}
		wg.Wait()
		close(drained)
	}()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = ctx.Err()
		b.closeAll(conns)
		<-drained // every drain returns at ctx's end
	}
	b.finish()
	return err
}

// Close stops the bridge at once: every connection is closed with
// CodeServerClosed, without GOAWAY; frames already queued still reach the
// sink but are not acknowledged. It waits for the bridge's goroutines.
func (b *Bridge) Close() error {
	conns, _ := b.beginClose()
	b.closeAll(conns)
	b.finish()
	return nil
}

func (b *Bridge) closeAll(conns []*conn) {
	b.stopOnce.Do(func() { close(b.stop) })
	for _, c := range conns {
		_ = c.qc.CloseWithError(CodeServerClosed, "server closed")
	}
}

// finish waits for every goroutine and releases the socket.
func (b *Bridge) finish() {
	b.finishOnce.Do(func() {
		b.stopOnce.Do(func() { close(b.stop) })
		b.wg.Wait()
		_ = b.tr.Close()
		_ = b.pc.Close()
		st := b.Stats()
		b.log.Info("quic stopped", "connections", st.ConnsAccepted, "messages", st.MessagesIn, "acks", st.Acks)
	})
}

// conn is one QUIC connection.
type conn struct {
	b     *Bridge
	qc    *quic.Conn
	id    uint64
	info  *connInfo
	shard *ingest.Shard
	log   *slog.Logger
	shed  atomic.Bool
	// handshook is set once the handshake completed: replies may go out.
	handshook atomic.Bool
	// ctx ends when the connection closes or drains; it bounds the
	// streams' waits for queue room and buffer memory.
	ctx         context.Context
	cancelDrain context.CancelFunc

	mu       sync.Mutex
	streams  map[*stream]struct{}
	draining bool

	wg sync.WaitGroup // stream goroutines and the handshake watcher
}

func (c *conn) run() {
	defer c.b.wg.Done()
	defer c.cancelDrain()
	c.wg.Add(1)
	go c.watchHandshake()
	for {
		str, err := c.qc.AcceptStream(context.Background())
		if err != nil {
			break // the connection is closed
		}
		c.startStream(str)
	}
	for _, s := range c.snapshot() {
		s.connGone()
	}
	c.wg.Wait()
	<-c.qc.Context().Done() // AcceptStream can fail just before the context gets its cause
	c.b.unregister(c)
}

// watchHandshake records the 0-RTT outcome once the handshake completes.
func (c *conn) watchHandshake() {
	defer c.wg.Done()
	select {
	case <-c.qc.HandshakeComplete():
	case <-c.qc.Context().Done():
		return
	}
	c.handshook.Store(true)
	for _, s := range c.snapshot() {
		s.mu.Lock()
		s.kickLocked()
		s.mu.Unlock()
	}
	used := c.qc.ConnectionState().Used0RTT
	switch {
	case used:
		c.b.stats.zeroRTTAccepted.Add(1)
	case c.info.offered0RTT.Load():
		c.b.stats.zeroRTTRej.Add(1)
	}
	c.log.Debug("quic handshake complete", "0rtt", used)
}

// shedConn closes the connection under the shed overload policy.
func (c *conn) shedConn() {
	if c.shed.Swap(true) {
		return
	}
	c.b.stats.shed.Add(1)
	c.log.Warn("shedding a QUIC connection: its shard queue is full")
	_ = c.qc.CloseWithError(CodeShed, "shed under overload")
}

// drain stops every stream (each sends GOAWAY, its ACKs and FIN), then
// closes the connection. It returns early when ctx ends.
func (c *conn) drain(ctx context.Context) {
	c.mu.Lock()
	c.draining = true
	c.mu.Unlock()
	streams := c.snapshot()
	for _, s := range streams {
		s.stop()
	}
	c.cancelDrain() // ends the streams' waits for queue room or buffer memory
	for _, s := range streams {
		select {
		case <-s.done:
		case <-ctx.Done():
			return
		}
	}
	// The FINs and last ACKs are written but maybe not yet delivered, and
	// CONNECTION_CLOSE discards unsent stream data: give the client a few
	// round trips to read them and close first.
	st := c.qc.ConnectionStats()
	linger := min(max(2*(st.SmoothedRTT+4*st.MeanDeviation+25*time.Millisecond), 20*time.Millisecond), time.Second)
	t := time.NewTimer(linger)
	defer t.Stop()
	select {
	case <-c.qc.Context().Done():
		return
	case <-t.C:
	case <-ctx.Done():
		return
	}
	_ = c.qc.CloseWithError(CodeNoError, "server shutting down")
}

// snapshot returns the open streams.
func (c *conn) snapshot() []*stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*stream, 0, len(c.streams))
	for s := range c.streams {
		out = append(out, s)
	}
	return out
}

func (c *conn) startStream(str *quic.Stream) {
	b := c.b
	s := &stream{
		c:    c,
		str:  str,
		qid:  str.StreamID(),
		pid:  1<<63 | b.nextProducer.Add(1),
		dec:  ingest.NewDecoder(b.cfg.MaxPayload),
		done: make(chan struct{}),
	}
	s.cond.L = &s.mu
	c.mu.Lock()
	c.streams[s] = struct{}{}
	if c.draining {
		s.stopLocked()
	}
	c.mu.Unlock()
	b.stats.streamsActive.Add(1)
	b.stats.streamsOpened.Add(1)
	c.wg.Add(1)
	go s.serve()
}

func (c *conn) removeStream(s *stream) {
	c.mu.Lock()
	delete(c.streams, s)
	c.mu.Unlock()
	c.b.stats.streamsActive.Add(-1)
}
