package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/gyre-io/gyre/ingest"
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

// openSession opens a new producer session on a freshly dialed stream
// (--session): HELLO, then the WELCOME, which for a new session has seq 0,
// so the load's seqs 1, 2, 3, ... are the session's.
func openSession(rw io.ReadWriter) error {
	hello, _ := ingest.AppendHello(nil, ingest.SessionID{}, "ingest-load")
	if _, err := rw.Write(hello); err != nil {
		return fmt.Errorf("session: write HELLO: %w", err)
	}
	var b [ingest.HeaderSize + ingest.SessionIDSize]byte // a WELCOME's size
	if _, err := io.ReadFull(rw, b[:]); err != nil {
		return fmt.Errorf("session: read WELCOME: %w", err)
	}
	dec := ingest.NewReplyDecoder()
	f, _, err := dec.Decode(b[:])
	if err == nil && (f.Kind != ingest.KindWelcome || f.Seq != 0) {
		err = fmt.Errorf("got %v seq %d, want WELCOME seq 0", f.Kind, f.Seq)
	}
	if err != nil {
		return fmt.Errorf("session: HELLO answered wrongly: %w", err)
	}
	return nil
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
