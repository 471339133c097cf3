package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/quicbridge"
)

// Defaults for Config's zero fields.
const (
	DefaultWindow          = 256
	DefaultMaxUnackedBytes = 16 << 20
	DefaultDialTimeout     = 5 * time.Second
	DefaultBackoffInitial  = 5 * time.Millisecond
	DefaultBackoffMax      = 2 * time.Second
	// DefaultMaxPayload is Config.MaxPayload's default, the server's
	// default limit (ingest.DefaultMaxPayload).
	DefaultMaxPayload = ingest.DefaultMaxPayload
)

// Config configures a Client. Only Endpoints is required; every zero
// field is a documented default. Config is read by Dial and not retained
// (except OnResult).
type Config struct {
	// Endpoints are the servers, in order of preference: "quic://host:port",
	// "tcp://host:port", or "host:port" (TCP). The client connects to the
	// first that answers and moves to the next one on connection loss,
	// GOAWAY, NACK 4 or NACK 6 (wrapping around after the last).
	Endpoints []string
	// TLSConfig is used for quic:// endpoints. It is cloned; the clone gets
	// NextProtos = [quicbridge.ALPN], TLS 1.3 as the minimum version and,
	// if ServerName is empty, the endpoint's host. Nil means the system
	// roots (see quicbridge.PinnedClientTLS for a self-signed server).
	TLSConfig *tls.Config
	// Window is the most records sent and not yet answered, counted from
	// the oldest one (default DefaultWindow). Send blocks while it is
	// reached.
	Window int
	// MaxUnackedBytes bounds the payload bytes of records not yet answered
	// (default DefaultMaxUnackedBytes). Send blocks while a record would
	// exceed it (a record alone may always be in flight).
	MaxUnackedBytes int
	// MaxPayload is the largest payload Send accepts (default
	// DefaultMaxPayload). Set it to the server's --max-payload.
	MaxPayload int
	// DialTimeout bounds each connection attempt, including the QUIC
	// handshake and opening the stream (default DefaultDialTimeout). A QUIC
	// endpoint behind a firewall that drops UDP costs this long before the
	// next endpoint is tried. It also bounds how long a connection the
	// client is leaving (GOAWAY, NACK 4 or 6) may take to answer what is in
	// flight before the client closes it.
	DialTimeout time.Duration
	// Backoff is the capped exponential backoff with jitter used between
	// failed connection attempts and after NACK 3 (overloaded).
	Backoff Backoff
	// Session resumes a session an earlier client opened (Client.Session),
	// so that records it sent and a restarted producer sends again are not
	// stored twice. Zero opens a new session.
	Session ingest.SessionID
	// Name is sent in HELLO for the server's logs (at most
	// ingest.MaxClientName bytes of UTF-8).
	Name string
	// OnResult, if set, is called once for every record Send queued, when
	// it is acknowledged (err nil) or has failed (err a
	// *ingest.ProtocolError for NACK 1 or 2, or an error matching
	// net.ErrClosed for a record Close abandoned). id is the value Send
	// returned. Results may come out of id order (a record resent after
	// NACK 3 is answered after later ones). It is called from one goroutine
	// at a time, never with a lock of the client held, and must not block:
	// it holds up the reading of replies.
	OnResult func(id uint64, err error)
}

// Backoff is a capped exponential backoff with jitter: attempt n waits
// a random duration in [d/2, d] with d = min(Initial * 2^(n-1), Max).
type Backoff struct {
	Initial time.Duration // default DefaultBackoffInitial
	Max     time.Duration // default DefaultBackoffMax
}

// delay returns the wait before attempt n (n >= 1); 0 for n <= 0.
func (b Backoff) delay(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := b.Initial
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	return d/2 + rand.N(d/2+1)
}

// endpoint is one parsed entry of Config.Endpoints.
type endpoint struct {
	quic bool
	addr string // host:port
	raw  string
}

func (e endpoint) String() string { return e.raw }

func parseEndpoint(s string) (endpoint, error) {
	scheme, addr, ok := strings.Cut(s, "://")
	if !ok {
		scheme, addr = "tcp", s
	}
	var e endpoint
	switch scheme {
	case "tcp":
	case "quic":
		e.quic = true
	default:
		return e, fmt.Errorf("client: endpoint %q: unknown scheme %q (want quic or tcp)", s, scheme)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return e, fmt.Errorf("client: endpoint %q: %w", s, err)
	}
	e.addr, e.raw = addr, s
	return e, nil
}

// settings is a Config with its defaults applied.
type settings struct {
	Config
	endpoints []endpoint
	tls       *tls.Config // nil when no quic endpoint
}

func (cfg Config) resolve() (settings, error) {
	s := settings{Config: cfg}
	if len(cfg.Endpoints) == 0 {
		return s, errors.New("client: no endpoints")
	}
	if _, err := ingest.AppendHello(nil, cfg.Session, cfg.Name); err != nil {
		return s, fmt.Errorf("client: Config.Name: %w", err)
	}
	for _, raw := range cfg.Endpoints {
		e, err := parseEndpoint(raw)
		if err != nil {
			return s, err
		}
		s.endpoints = append(s.endpoints, e)
		if e.quic && s.tls == nil {
			if cfg.TLSConfig != nil {
				s.tls = cfg.TLSConfig.Clone()
			} else {
				s.tls = &tls.Config{}
			}
			s.tls.NextProtos = []string{quicbridge.ALPN}
			s.tls.MinVersion = tls.VersionTLS13
		}
	}
	if s.Window <= 0 {
		s.Window = DefaultWindow
	}
	if s.MaxUnackedBytes <= 0 {
		s.MaxUnackedBytes = DefaultMaxUnackedBytes
	}
	if s.MaxPayload <= 0 {
		s.MaxPayload = DefaultMaxPayload
	}
	s.MaxPayload = min(s.MaxPayload, ingest.MaxFramePayload)
	if s.DialTimeout <= 0 {
		s.DialTimeout = DefaultDialTimeout
	}
	if s.Backoff.Initial <= 0 {
		s.Backoff.Initial = DefaultBackoffInitial
	}
	if s.Backoff.Max <= 0 {
		s.Backoff.Max = DefaultBackoffMax
	}
	s.Backoff.Max = max(s.Backoff.Max, s.Backoff.Initial)
	return s, nil
}
