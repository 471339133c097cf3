package main

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/quicbridge"
	"github.com/quic-go/quic-go"
)

// quicTransport runs the load over QUIC (docs/quic.md). --conns QUIC
// connections are dialed, each from its own UDP socket (like separate
// client hosts, and so that --kill can drop one without a CONNECTION_CLOSE),
// or, with --quic-sockets N, from N shared sockets (connection i uses
// socket i mod N), so that more connections than the open-file limit fit.
//
//   - reuse: every connection carries --streams long-lived streams; each
//     stream is one load stream with its own --window and seqs.
//   - per-message: every connection is one load stream (msgStream); each
//     DATA frame travels on a stream of its own (DATA, FIN), at most
//     --streams at once.
type quicTransport struct {
	cfg     config
	tlsConf *tls.Config
	qconf   *quic.Config
	cache   *notifyingCache // --0rtt: the session cache, primed before the load

	next    atomic.Int64 // Dial calls so far
	mu      sync.Mutex
	conns   []*qconn // by index, dialed lazily
	sockets []*sharedSocket
	prime   sync.Once
	wg      sync.WaitGroup // per-message goroutines
}

// sharedSocket is one of the --quic-sockets UDP sockets and its transport,
// opened by the first connection that needs it, closed by Close.
type sharedSocket struct {
	once sync.Once
	err  error
	udp  *net.UDPConn
	tr   *quic.Transport
}

// qconn is one QUIC connection of the load and its UDP socket.
type qconn struct {
	idx    int // index in quicTransport.conns
	once   sync.Once
	err    error
	udp    *net.UDPConn    // nil on a shared socket
	tr     *quic.Transport // shared with other connections when udp is nil
	conn   *quic.Conn
	killed atomic.Bool
	open   atomic.Int64 // load streams still using the connection

	// --0rtt: the streams opened in 0-RTT, before the server's handshake
	// could be processed (see gatedConn); later streams wait for the
	// handshake.
	emu   sync.Mutex
	early []*quic.Stream
}

// openStream opens a stream: one of the early ones while they last, else,
// for a 0-RTT connection, only after the handshake completed.
func (q *qconn) openStream(ctx context.Context, zeroRTT bool) (*quic.Stream, error) {
	q.emu.Lock()
	if n := len(q.early); n > 0 {
		s := q.early[n-1]
		q.early = q.early[:n-1]
		q.emu.Unlock()
		return s, nil
	}
	q.emu.Unlock()
	if zeroRTT {
		select {
		case <-q.conn.HandshakeComplete():
		case <-q.conn.Context().Done():
			return nil, context.Cause(q.conn.Context())
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return q.conn.OpenStreamSync(ctx)
}

// gatedConn holds the client's incoming datagrams until release. quic-go
// v0.65.0 races when a stream is opened on a 0-RTT connection while the
// server's transport parameters are being applied (quic-go issue #4303:
// Conn.newFlowController reads peerParams unlocked). With the gate closed
// the server's reply cannot be processed, so the early streams are opened
// safely; after the handshake they are safe again. Any deadline change or
// Close opens the gate, so Transport.Close never waits on it. It embeds
// net.PacketConn, so quic-go uses the plain (non-OOB) path for 0-RTT runs.
type gatedConn struct {
	net.PacketConn
	once sync.Once
	open chan struct{}
}

func (g *gatedConn) release() { g.once.Do(func() { close(g.open) }) }

func (g *gatedConn) ReadFrom(p []byte) (int, net.Addr, error) {
	<-g.open
	return g.PacketConn.ReadFrom(p)
}

func (g *gatedConn) SetReadDeadline(t time.Time) error {
	g.release()
	return g.PacketConn.SetReadDeadline(t)
}

func (g *gatedConn) SetDeadline(t time.Time) error {
	g.release()
	return g.PacketConn.SetDeadline(t)
}

func (g *gatedConn) Close() error {
	g.release()
	return g.PacketConn.Close()
}

func newQUICTransport(cfg config) (*quicTransport, error) {
	var tc *tls.Config
	switch {
	case cfg.PinSHA256 != "":
		var err error
		if tc, err = quicbridge.PinnedClientTLS(cfg.PinSHA256); err != nil {
			return nil, badUsage("--pin-sha256: %v", err)
		}
	default:
		tc = &tls.Config{NextProtos: []string{quicbridge.ALPN}, MinVersion: tls.VersionTLS13, InsecureSkipVerify: cfg.Insecure}
	}
	host, _, _ := net.SplitHostPort(cfg.Addr)
	tc.ServerName = host
	if net.ParseIP(host) != nil && (cfg.Insecure || cfg.PinSHA256 != "") {
		// The name is not verified; it keys the session cache (0-RTT).
		tc.ServerName = "localhost"
	}
	t := &quicTransport{
		cfg:     cfg,
		tlsConf: tc,
		qconf:   &quic.Config{KeepAlivePeriod: cfg.QUICKeepAlive, HandshakeIdleTimeout: cfg.ConnectTimeout},
		conns:   make([]*qconn, cfg.Conns),
	}
	if cfg.QUICSockets > 0 {
		t.sockets = make([]*sharedSocket, min(cfg.QUICSockets, cfg.Conns))
		for i := range t.sockets {
			t.sockets[i] = &sharedSocket{}
		}
	}
	if cfg.ZeroRTT {
		t.cache = &notifyingCache{ClientSessionCache: tls.NewLRUClientSessionCache(16), put: make(chan struct{}, 1)}
		tc.ClientSessionCache = t.cache
		t.qconf.TokenStore = quic.NewLRUTokenStore(16, 16)
	}
	return t, nil
}

func (t *quicTransport) Name() string { return "quic" }

// Dial returns the next load stream: in reuse mode the next stream of the
// connection it belongs to, in per-message mode a new connection.
func (t *quicTransport) Dial(ctx context.Context) (io.ReadWriteCloser, error) {
	k := int(t.next.Add(1) - 1)
	ci := k
	if t.cfg.QUICStreams == "reuse" {
		ci = k / t.cfg.Streams
	}
	if ci >= len(t.conns) {
		return nil, errors.New("more load streams than configured")
	}
	if t.cfg.ZeroRTT {
		t.prime.Do(func() { t.primeSession(ctx) })
	}
	t.mu.Lock()
	q := t.conns[ci]
	if q == nil {
		q = &qconn{idx: ci}
		t.conns[ci] = q
	}
	q.open.Add(1)
	t.mu.Unlock()
	q.once.Do(func() { q.err = t.dial(ctx, q) })
	if q.err != nil {
		q.release()
		return nil, q.err
	}
	if t.cfg.QUICStreams == "per-message" {
		return newMsgStream(q, t.cfg.Streams, t.cfg.ZeroRTT, &t.wg), nil
	}
	str, err := q.openStream(ctx, t.cfg.ZeroRTT)
	if err != nil {
		q.release()
		return nil, fmt.Errorf("opening a QUIC stream: %w", err)
	}
	return &qstream{Stream: str, q: q}, nil
}

// dial connects q from a UDP socket of its own, or from its shared one.
func (t *quicTransport) dial(ctx context.Context, q *qconn) error {
	raddr, err := net.ResolveUDPAddr("udp", t.cfg.Addr)
	if err != nil {
		return err
	}
	if len(t.sockets) > 0 {
		// --quic-sockets (validation excludes --0rtt and --kill).
		s := t.sockets[q.idx%len(t.sockets)]
		s.once.Do(func() {
			if s.udp, s.err = net.ListenUDP("udp", nil); s.err != nil {
				s.err = fmt.Errorf("opening a UDP socket: %w", s.err)
				return
			}
			s.tr = &quic.Transport{Conn: s.udp}
		})
		if s.err != nil {
			return s.err
		}
		ctx, cancel := context.WithTimeout(ctx, t.cfg.ConnectTimeout)
		defer cancel()
		q.tr = s.tr
		q.conn, err = q.tr.Dial(ctx, raddr, t.tlsConf, t.qconf)
		return err
	}
	if q.udp, err = net.ListenUDP("udp", nil); err != nil {
		return fmt.Errorf("opening a UDP socket: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.ConnectTimeout)
	defer cancel()
	if !t.cfg.ZeroRTT {
		q.tr = &quic.Transport{Conn: q.udp}
		if q.conn, err = q.tr.Dial(ctx, raddr, t.tlsConf, t.qconf); err != nil {
			q.closeSocket()
			return err
		}
		return nil
	}
	if !t.cache.allowsEarlyData(t.tlsConf.ServerName) {
		// No ticket for 0-RTT (the priming dial, or a server that does not
		// offer it): DialEarly waits for the handshake, so no gate.
		q.tr = &quic.Transport{Conn: q.udp}
		if q.conn, err = q.tr.DialEarly(ctx, raddr, t.tlsConf, t.qconf); err != nil {
			q.closeSocket()
			return err
		}
		return nil
	}
	gate := &gatedConn{PacketConn: q.udp, open: make(chan struct{})}
	q.tr = &quic.Transport{Conn: gate}
	// With a 0-RTT ticket DialEarly returns as soon as 0-RTT data can be
	// sent, without waiting for a packet from the server, so the gate can
	// stay closed until the early streams are open. Should the ticket turn
	// out unusable after all, DialEarly waits for the handshake: the
	// watchdog opens the gate then.
	watchdog := time.AfterFunc(time.Second, gate.release)
	defer watchdog.Stop()
	if q.conn, err = q.tr.DialEarly(ctx, raddr, t.tlsConf, t.qconf); err != nil {
		gate.release()
		q.closeSocket()
		return err
	}
	for range t.cfg.Streams {
		s, err := q.conn.OpenStream()
		if err != nil {
			break // the stream limit remembered from the ticket: the rest waits for the handshake
		}
		q.early = append(q.early, s)
	}
	gate.release()
	return nil
}

func (q *qconn) closeSocket() {
	_ = q.tr.Close()
	_ = q.udp.Close()
	q.tr, q.udp = nil, nil
}

// primeSession makes one full handshake so that the session cache holds a
// ticket for the load's connections to resume with 0-RTT.
func (t *quicTransport) primeSession(ctx context.Context) {
	q := &qconn{}
	if err := t.dial(ctx, q); err != nil {
		return // the load's own dials will report it
	}
	select {
	case <-t.cache.put: // the ticket follows the handshake
	case <-time.After(t.cfg.ConnectTimeout):
	case <-ctx.Done():
	}
	_ = q.conn.CloseWithError(0, "")
	_ = q.tr.Close()
	_ = q.udp.Close()
}

// release drops one load stream's use of the connection; the last one
// closes it (gracefully, unless it was killed).
func (q *qconn) release() {
	if q.open.Add(-1) != 0 || q.conn == nil {
		return
	}
	if !q.killed.Load() {
		_ = q.conn.CloseWithError(0, "")
	}
}

// kill drops that fraction of the connections (at least one) without a
// CONNECTION_CLOSE: their UDP sockets are closed under them, as if the
// client's host vanished. It returns how many it dropped.
func (t *quicTransport) kill(fraction float64) int {
	t.mu.Lock()
	var live []*qconn
	for _, q := range t.conns {
		if q != nil && q.conn != nil && q.udp != nil {
			live = append(live, q)
		}
	}
	t.mu.Unlock()
	n := min(max(int(math.Round(fraction*float64(len(live)))), 1), len(live))
	for _, q := range live[len(live)-n:] { // the last ones, like the slow clients
		q.killed.Store(true)
		_ = q.udp.Close()
	}
	return n
}

// zeroRTT returns how many connections used 0-RTT.
func (t *quicTransport) zeroRTT() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, q := range t.conns {
		if q != nil && q.conn != nil && q.conn.ConnectionState().Used0RTT {
			n++
		}
	}
	return n
}

// Close releases every socket once the load is over.
func (t *quicTransport) Close() error {
	t.mu.Lock()
	conns := t.conns
	t.mu.Unlock()
	for _, q := range conns {
		if q == nil || q.conn == nil {
			continue
		}
		if !q.killed.Load() {
			_ = q.conn.CloseWithError(0, "")
		}
		if q.udp != nil { // a socket of its own
			_ = q.tr.Close()
			_ = q.udp.Close()
		}
	}
	for _, s := range t.sockets {
		if s.tr != nil {
			_ = s.tr.Close()
			_ = s.udp.Close()
		}
	}
	t.wg.Wait()
	return nil
}

// notifyingCache is a session cache that says when a ticket arrived, and
// gives every Get its own copy of the session: quic-go (v0.65.0) writes to
// the resumed *tls.SessionState (its EarlyData field) during the handshake,
// so concurrent 0-RTT dials sharing one cached session would race.
type notifyingCache struct {
	tls.ClientSessionCache
	put chan struct{}
}

// allowsEarlyData reports whether a dial to key will offer 0-RTT: the
// cached session (if any) allows early data.
func (c *notifyingCache) allowsEarlyData(key string) bool {
	cs, ok := c.ClientSessionCache.Get(key)
	if !ok || cs == nil {
		return false
	}
	_, state, err := cs.ResumptionState()
	return err == nil && state != nil && state.EarlyData
}

func (c *notifyingCache) Get(key string) (*tls.ClientSessionState, bool) {
	cs, ok := c.ClientSessionCache.Get(key)
	if !ok || cs == nil {
		return cs, ok
	}
	ticket, state, err := cs.ResumptionState()
	if err != nil || state == nil {
		return nil, false
	}
	b, err := state.Bytes()
	if err != nil {
		return nil, false
	}
	own, err := tls.ParseSessionState(b)
	if err != nil {
		return nil, false
	}
	cp, err := tls.NewResumptionState(ticket, own)
	if err != nil {
		return nil, false
	}
	return cp, true
}

func (c *notifyingCache) Put(key string, cs *tls.ClientSessionState) {
	c.ClientSessionCache.Put(key, cs)
	if cs != nil {
		select {
		case c.put <- struct{}{}:
		default:
		}
	}
}

// qstream is a long-lived stream (reuse mode) as a load stream. It has
// SetReadDeadline, so slow clients work as over TCP.
type qstream struct {
	*quic.Stream
	q    *qconn
	once sync.Once
}

// Write sends p. A server that drains sends GOAWAY, the ACKs due and FIN on
// the stream, then stops reading it (STOP_SENDING with
// quicbridge.StreamCodeShuttingDown): what is written from then on was not
// accepted, as the GOAWAY (which the reader is about to see) says, just like
// bytes a TCP client sends after the server's GOAWAY. So that is not a
// write error.
func (s *qstream) Write(p []byte) (int, error) {
	n, err := s.Stream.Write(p)
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote && se.ErrorCode == quicbridge.StreamCodeShuttingDown {
		return len(p), nil
	}
	return n, err
}

// Close ends both halves: FIN after what was written (a Write in progress
// returns at once), and no more reading.
func (s *qstream) Close() error {
	s.once.Do(func() {
		_ = s.Stream.SetWriteDeadline(time.Now())
		_ = s.Stream.Close()
		s.Stream.CancelRead(0)
		s.q.release()
	})
	return nil
}

func (s *qstream) killed() bool { return s.q.killed.Load() }

// msgStream presents one QUIC connection as one ingest-v1 byte stream
// (per-message mode). Write sends each DATA frame on a new stream (DATA,
// FIN), keeping its seq: any seq >= 1 may start a stream. A goroutine per
// stream reads the reply. Read returns the replies as the load's
// connection expects them on one stream: in seq order, one cumulative ACK
// for each run of acknowledged seqs. So an ACK reaches the load once every
// earlier message is answered too; its latency includes that wait.
//
// A stream refused with GOAWAY 0 (the server is draining) becomes NACK 4
// for its seq. When the server closes the connection after a drain, the
// messages not answered by then end the stream with a GOAWAY (they were not
// accepted); any other loss of the connection is an error.
type msgStream struct {
	q   *qconn
	sem chan struct{} // streams in flight
	wg  *sync.WaitGroup

	ctx     context.Context
	cancel  context.CancelFunc
	zeroRTT bool
	wmu     sync.Mutex // Write
	wdead   error      // Writes after a failure: nil result for a graceful close, else this error
	wfail   bool

	mu      sync.Mutex
	cond    sync.Cond
	out     []byte             // replies ready for Read
	results map[uint64]outcome // answered seqs not yet passed to out
	next    uint64             // lowest seq not yet passed to out
	ackPend uint64             // highest seq of a run of ACKs not yet in out
	acked   uint64             // highest ACK put in out
	term    error              // the end of the reply stream, after out
	closed  bool
}

type outcome struct {
	kind  int    // ocAck, ocNack, ocRefused, ocGone
	frame []byte // the NACK
	err   error  // ocGone: why
}

const (
	ocAck = iota
	ocNack
	ocRefused
	ocGone
)

func newMsgStream(q *qconn, streams int, zeroRTT bool, wg *sync.WaitGroup) *msgStream {
	ctx, cancel := context.WithCancel(q.conn.Context())
	m := &msgStream{q: q, sem: make(chan struct{}, streams), wg: wg, ctx: ctx, cancel: cancel,
		zeroRTT: zeroRTT, results: map[uint64]outcome{}, next: 1}
	m.cond.L = &m.mu
	return m
}

func (m *msgStream) killed() bool { return m.q.killed.Load() }

// gracefulClose reports whether err is the server's CONNECTION_CLOSE after
// a drain (quicbridge.CodeNoError).
func gracefulClose(err error) bool {
	var ae *quic.ApplicationError
	return errors.As(err, &ae) && ae.Remote && ae.ErrorCode == quicbridge.CodeNoError
}

// Write sends every frame in p, each on a stream of its own; it blocks
// while --streams are in flight or the server grants no stream credit.
func (m *msgStream) Write(p []byte) (int, error) {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	if m.wfail {
		if m.wdead == nil {
			return len(p), nil // the server closed after a drain: these are not accepted (GOAWAY)
		}
		return 0, m.wdead
	}
	for off := 0; off < len(p); {
		if len(p)-off < ingest.HeaderSize {
			return off, errors.New("per-message: partial frame written")
		}
		n := 4 + int(binary.BigEndian.Uint32(p[off:]))
		if n > len(p)-off {
			return off, errors.New("per-message: partial frame written")
		}
		frame, seq := p[off:off+n], binary.BigEndian.Uint64(p[off+8:])
		if err := m.send(seq, frame); err != nil {
			m.complete(seq, outcome{kind: ocGone, err: err})
			m.wfail = true
			if gracefulClose(err) {
				return len(p), nil
			}
			m.wdead = err
			return off, err
		}
		off += n
	}
	return len(p), nil
}

func (m *msgStream) send(seq uint64, frame []byte) error {
	select {
	case m.sem <- struct{}{}:
	case <-m.ctx.Done():
		return m.closedErr()
	}
	str, err := m.q.openStream(m.ctx, m.zeroRTT)
	if err != nil {
		<-m.sem
		if m.ctx.Err() != nil {
			return m.closedErr()
		}
		return err
	}
	if _, err := str.Write(frame); err != nil {
		<-m.sem
		str.CancelRead(0)
		return err
	}
	_ = str.Close()
	m.wg.Add(1)
	go m.await(str, seq)
	return nil
}

// closedErr is why the connection (or this msgStream) is gone.
func (m *msgStream) closedErr() error {
	if err := context.Cause(m.q.conn.Context()); err != nil {
		return err
	}
	return net.ErrClosed
}

// await reads one message's reply until the server's FIN.
func (m *msgStream) await(str *quic.Stream, seq uint64) {
	defer m.wg.Done()
	defer func() { <-m.sem }()
	dec := ingest.NewReplyDecoder()
	var buf [512]byte
	have := 0
	o := outcome{kind: ocGone}
	var goaway bool
	var err error
	for err == nil {
		var n int
		n, err = str.Read(buf[have:])
		have += n
		used := 0
		for {
			f, k, derr := dec.Decode(buf[used:have])
			if derr != nil {
				if derr != ingest.ErrNeedMore {
					o = outcome{kind: ocGone, err: fmt.Errorf("per-message seq %d: bad reply: %w", seq, derr)}
					err = derr
				}
				break
			}
			used += k
			switch {
			case f.Kind == ingest.KindAck && f.Seq >= seq:
				o = outcome{kind: ocAck}
			case f.Kind == ingest.KindNack && f.Seq == seq:
				o = outcome{kind: ocNack, frame: append([]byte(nil), buf[used-k:used]...)}
			case f.Kind == ingest.KindGoaway && f.Seq < seq:
				goaway = true
			}
		}
		have = copy(buf[:], buf[used:have])
	}
	switch {
	case o.kind != ocGone:
	case goaway:
		o = outcome{kind: ocRefused}
	case errors.Is(err, io.EOF):
		o.err = fmt.Errorf("per-message seq %d: the server finished the stream without answering", seq)
	case o.err == nil:
		o.err = err
	}
	str.CancelRead(0)
	m.complete(seq, o)
}

// complete records a seq's outcome and passes every outcome that is next
// in seq order on to the reader.
func (m *msgStream) complete(seq uint64, o outcome) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.term != nil {
		return
	}
	m.results[seq] = o
	flush := func() {
		if m.ackPend > m.acked {
			m.out = ingest.AppendAck(m.out, m.ackPend)
			m.acked = m.ackPend
		}
	}
	for {
		o, ok := m.results[m.next]
		if !ok {
			break
		}
		delete(m.results, m.next)
		switch o.kind {
		case ocAck:
			m.ackPend = m.next
		case ocNack:
			flush()
			m.out = append(m.out, o.frame...)
		case ocRefused:
			flush()
			m.out = ingest.AppendNack(m.out, m.next, ingest.NackShuttingDown, "stream refused with GOAWAY")
		case ocGone:
			flush()
			if gracefulClose(o.err) {
				m.out = ingest.AppendGoaway(m.out, m.next-1)
				m.term = io.EOF
			} else {
				m.term = o.err
			}
			m.results = nil
			m.cond.Broadcast()
			return
		}
		m.next++
	}
	flush()
	m.cond.Broadcast()
}

func (m *msgStream) Read(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(m.out) == 0 && m.term == nil && !m.closed {
		m.cond.Wait()
	}
	if len(m.out) > 0 {
		n := copy(p, m.out)
		m.out = m.out[:copy(m.out, m.out[n:])]
		return n, nil
	}
	if m.closed {
		return 0, net.ErrClosed
	}
	return 0, m.term
}

// Close stops the load stream: a Write or Read in progress returns, and
// the connection is closed (the streams in flight end with it).
func (m *msgStream) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.cond.Broadcast()
	m.mu.Unlock()
	m.cancel()
	m.q.release()
	return nil
}
