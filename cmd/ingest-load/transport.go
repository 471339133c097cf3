package main

import (
	"context"
	"io"
	"net"
	"time"
)

// Transport opens the byte streams a load runs over: one ingest-v1 stream
// per connection of the load (a TCP connection, or later a QUIC stream).
// Dial is called from many goroutines at once and must be safe for
// concurrent use.
//
// The returned stream is used by two goroutines at once, one reading and
// one writing. Close must be safe to call concurrently with Read and Write
// and must make a Read or Write in progress return.
//
// A stream may also implement readDeadliner (to let the load probe whether
// the server dropped a slow client) and readBufferSetter (to give slow
// clients a small receive buffer, so the server meets their backlog
// sooner); both are optional.
type Transport interface {
	Dial(ctx context.Context) (io.ReadWriteCloser, error)
	// Name is the transport's name in reports ("tcp", "quic").
	Name() string
}

// Optional upgrades of a stream returned by Transport.Dial.
type (
	readDeadliner interface {
		SetReadDeadline(t time.Time) error
	}
	readBufferSetter interface {
		SetReadBuffer(bytes int) error
	}
)

var (
	_ readDeadliner    = (*net.TCPConn)(nil)
	_ readBufferSetter = (*net.TCPConn)(nil)
)

// tcpTransport dials plain TCP connections (TCP_NODELAY is on, Go's default).
type tcpTransport struct {
	addr   string
	dialer net.Dialer
}

func newTCPTransport(addr string, connectTimeout time.Duration) *tcpTransport {
	return &tcpTransport{addr: addr, dialer: net.Dialer{Timeout: connectTimeout}}
}

func (t *tcpTransport) Name() string { return "tcp" }

func (t *tcpTransport) Dial(ctx context.Context) (io.ReadWriteCloser, error) {
	return t.dialer.DialContext(ctx, "tcp", t.addr)
}

// Optional upgrades of a Transport: killer drops a fraction of its
// connections abruptly (--kill); io.Closer releases what it holds once the
// load is over.
type killer interface {
	kill(fraction float64) int
}

// newTransport returns the transport named by --transport (validated).
func newTransport(cfg config) (Transport, error) {
	switch cfg.Transport {
	case "quic":
		return newQUICTransport(cfg)
	default: // "tcp"; validate refuses anything else
		return newTCPTransport(cfg.Addr, cfg.ConnectTimeout), nil
	}
}
