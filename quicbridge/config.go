package quicbridge

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/quic-go/quic-go"
)

// ALPN is the TLS application protocol the bridge negotiates. A client that
// does not offer it fails the handshake.
const ALPN = "ingest-v1"

// Defaults for Config's zero fields. They are sized so that DefaultMaxConns
// connections fit a 1 GiB budget; docs/quic.md has the arithmetic.
const (
	DefaultAddr                = "127.0.0.1:7401"
	DefaultMaxConns            = 20000
	DefaultMaxIncomingStreams  = 4
	DefaultStreamWindow        = 16 << 10
	DefaultConnWindow          = 16 << 10
	DefaultIdleTimeout         = 30 * time.Second
	DefaultHandshakeTimeout    = 5 * time.Second
	DefaultReadBufferSize      = 16 << 10
	DefaultBufferMemory        = 32 << 20
	minReadBufferSize          = 1 << 10
	maxPendingOutput           = 4 << 10 // unsent NACK/PONG bytes per stream before it counts as a slow reader
	defaultRefuseSlackFraction = 16      // connections in handshake past MaxConns: MaxConns/16, at least 64
)

// Config configures a Bridge. The zero value of every field is a
// documented default; fields are read once by Listen and not retained.
type Config struct {
	// Addr is the UDP listen address (default DefaultAddr,
	// 127.0.0.1:7401). Ignored when PacketConn is set.
	Addr string
	// PacketConn, if set, is served instead of listening on Addr. The
	// bridge owns it from then on and closes it when it stops.
	PacketConn net.PacketConn

	// TLSConfig is the server's TLS configuration. It is cloned; the clone
	// gets NextProtos = [ALPN], TLS 1.3 as the minimum version, and
	// TicketKeys if set. When nil, CertFile and KeyFile are loaded; when
	// those are empty too, a self-signed certificate for localhost is
	// generated in memory (development only: clients must pin it or skip
	// verification) and its SHA-256 fingerprint is logged.
	TLSConfig *tls.Config
	// CertFile and KeyFile are PEM files, used when TLSConfig is nil.
	CertFile, KeyFile string
	// TicketKeys are the TLS session ticket keys: the first encrypts new
	// tickets, all decrypt. With the same keys, a restarted server resumes
	// sessions (and accepts 0-RTT) issued before the restart. The QUIC
	// address-validation token key and the stateless reset key are derived
	// from the first key too. Default: random keys, so tickets do not
	// survive a restart. See LoadTicketKeys.
	TicketKeys [][32]byte
	// Disable0RTT refuses 0-RTT data (default: accepted; a DATA frame
	// received in 0-RTT is acknowledged only after the handshake
	// completes).
	Disable0RTT bool

	// MaxConns is the most QUIC connections served at once (default
	// DefaultMaxConns). Past it, a new connection is closed right after
	// its handshake with CodeTooManyConnections; while more than
	// MaxConns/16 (at least 64) such refusals are still handshaking,
	// further attempts get a QUIC CONNECTION_REFUSED instead, which keeps
	// no state at all.
	MaxConns int
	// MaxIncomingStreams is the most bidirectional streams a client may
	// have open on one connection (default DefaultMaxIncomingStreams). A
	// client that wants more waits for one to finish: QUIC's stream credit
	// (MAX_STREAMS) is returned only when both halves of a stream are
	// complete.
	MaxIncomingStreams int64
	// StreamReceiveWindow and ConnReceiveWindow are the QUIC flow-control
	// windows: the most unread bytes a client may have in flight towards
	// one stream, and towards one connection over all its streams
	// (defaults DefaultStreamWindow and DefaultConnWindow). They are fixed
	// (no auto-tuning), so they bound what quic-go buffers per connection.
	StreamReceiveWindow uint64
	ConnReceiveWindow   uint64
	// IdleTimeout closes a connection after this long without a packet
	// from the client (default DefaultIdleTimeout); the effective value is
	// the smaller of this and the client's. It also bounds how long a
	// stream may take to deliver one frame once its first byte arrived.
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the QUIC handshake (default
	// DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration

	// MaxPayload is the largest DATA payload accepted (default
	// ingest.DefaultMaxPayload); larger frames get NACK 2 and the stream
	// is closed without the payload being read.
	MaxPayload int
	// ReadBufferSize is the size of a stream's read buffer (default
	// DefaultReadBufferSize). Frames that fit are decoded in place, many
	// per read. A stream holds a buffer only while it has unread bytes.
	ReadBufferSize int
	// BufferMemory bounds the read buffers of all streams together
	// (default DefaultBufferMemory). A stream that finds it used up stops
	// reading until a buffer is free, so flow control pushes back. Frames
	// larger than ReadBufferSize take an exact-size buffer from the
	// dispatcher's frame memory instead (ingest.DispatcherConfig's
	// FrameMemory, shared with the TCP server), and wait the same way.
	BufferMemory int64
	// UDPReceiveBuffer is the kernel receive buffer of the listening UDP
	// socket, in bytes (0: quic-go's own choice, 7 MiB). Every client's
	// datagrams wait there until quic-go reads them; when a busy server
	// lets it fill (thousands of handshakes at once), the kernel drops
	// datagrams and their senders back off by doubling probe timeouts,
	// long enough for a connection to hit IdleTimeout. A larger buffer
	// turns such bursts into delay. Set with SO_RCVBUF, and with
	// SO_RCVBUFFORCE past net.core.rmem_max when the process may
	// (CAP_NET_ADMIN); Listen logs the size it got when it is smaller.
	// Not applied to a caller's PacketConn.
	UDPReceiveBuffer int

	// Overload is the policy when a dispatcher shard is full (default
	// block): block stops reading the stream, so QUIC flow control pushes
	// back on the client; reject answers NACK 3; shed closes the
	// connection with CodeShed.
	Overload ingest.Overload
	// Logger receives events; lines about a connection carry "conn" (the
	// bridge's number for it) and "quic_cid" (the client's original
	// destination connection id, as in its qlog), lines about a stream
	// also "stream" (the QUIC stream id).
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxIncomingStreams == 0 {
		c.MaxIncomingStreams = DefaultMaxIncomingStreams
	}
	if c.StreamReceiveWindow == 0 {
		c.StreamReceiveWindow = DefaultStreamWindow
	}
	if c.ConnReceiveWindow == 0 {
		c.ConnReceiveWindow = max(DefaultConnWindow, c.StreamReceiveWindow)
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = ingest.DefaultMaxPayload
	}
	if c.ReadBufferSize == 0 {
		c.ReadBufferSize = DefaultReadBufferSize
	}
	if c.BufferMemory == 0 {
		c.BufferMemory = DefaultBufferMemory
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.MaxConns < 0, c.MaxIncomingStreams < 0, c.IdleTimeout < 0, c.HandshakeTimeout < 0,
		c.ReadBufferSize < 0, c.BufferMemory < 0, c.UDPReceiveBuffer < 0:
		return c, errors.New("quicbridge: negative limit in Config")
	case c.MaxPayload < 0 || c.MaxPayload > ingest.MaxFramePayload:
		return c, fmt.Errorf("quicbridge: MaxPayload %d out of range", c.MaxPayload)
	case c.ConnReceiveWindow < c.StreamReceiveWindow:
		return c, fmt.Errorf("quicbridge: ConnReceiveWindow %d is smaller than StreamReceiveWindow %d", c.ConnReceiveWindow, c.StreamReceiveWindow)
	case c.ReadBufferSize < minReadBufferSize:
		return c, fmt.Errorf("quicbridge: ReadBufferSize %d is below the minimum of %d", c.ReadBufferSize, minReadBufferSize)
	case c.BufferMemory < int64(c.ReadBufferSize):
		return c, fmt.Errorf("quicbridge: BufferMemory %d cannot hold one read buffer of %d bytes", c.BufferMemory, c.ReadBufferSize)
	case c.Overload > ingest.OverloadShed:
		return c, fmt.Errorf("quicbridge: unknown overload policy %d", c.Overload)
	}
	return c, nil
}

// refuseSlack is how many connections past MaxConns may be handshaking
// towards a polite refusal before further attempts are refused statelessly.
func (c Config) refuseSlack() int {
	return max(64, c.MaxConns/defaultRefuseSlackFraction)
}

// serverTLS builds the server's TLS configuration. fingerprint is the
// SHA-256 of a generated certificate ("" if the caller supplied one).
func (c Config) serverTLS() (conf *tls.Config, fingerprint string, err error) {
	switch {
	case c.TLSConfig != nil:
		conf = c.TLSConfig.Clone()
	case c.CertFile != "" || c.KeyFile != "":
		if c.CertFile == "" || c.KeyFile == "" {
			return nil, "", errors.New("quicbridge: CertFile and KeyFile must be given together")
		}
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, "", fmt.Errorf("quicbridge: loading the TLS key pair: %w", err)
		}
		conf = &tls.Config{Certificates: []tls.Certificate{cert}}
	default:
		cert, err := SelfSignedCert()
		if err != nil {
			return nil, "", err
		}
		conf = &tls.Config{Certificates: []tls.Certificate{cert}}
		fingerprint = Fingerprint(cert.Certificate[0])
	}
	conf.NextProtos = []string{ALPN}
	conf.MinVersion = tls.VersionTLS13
	if len(c.TicketKeys) > 0 {
		conf.SetSessionTicketKeys(c.TicketKeys)
	}
	return conf, fingerprint, nil
}

// transportKeys returns the keys of the quic.Transport: derived from the
// first ticket key when there is one, so that they survive a restart
// together with the tickets; random otherwise.
func (c Config) transportKeys() (*quic.StatelessResetKey, *quic.TokenGeneratorKey, error) {
	var reset quic.StatelessResetKey
	var token quic.TokenGeneratorKey
	if len(c.TicketKeys) == 0 {
		if _, err := rand.Read(reset[:]); err != nil {
			return nil, nil, fmt.Errorf("quicbridge: generating the stateless reset key: %w", err)
		}
		return &reset, nil, nil // quic-go picks a random token key
	}
	secret := c.TicketKeys[0][:]
	r, err := hkdf.Key(sha256.New, secret, nil, "gyre quicbridge stateless reset", len(reset))
	if err != nil {
		return nil, nil, fmt.Errorf("quicbridge: deriving the stateless reset key: %w", err)
	}
	t, err := hkdf.Key(sha256.New, secret, nil, "gyre quicbridge token", len(token))
	if err != nil {
		return nil, nil, fmt.Errorf("quicbridge: deriving the token key: %w", err)
	}
	copy(reset[:], r)
	copy(token[:], t)
	return &reset, &token, nil
}
