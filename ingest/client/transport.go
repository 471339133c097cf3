package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// stream is one ingest-v1 byte stream: a TCP connection or a QUIC stream.
// Read and Write are used by one goroutine each; Close may be called
// concurrently with both, any number of times, and makes them return.
type stream interface {
	io.ReadWriteCloser
}

// dialEndpoint connects to e within timeout (the QUIC handshake and the
// opening of the stream included).
func dialEndpoint(ctx context.Context, e endpoint, tlsConf *tls.Config, timeout time.Duration) (stream, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !e.quic {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", e.addr)
		if err != nil {
			return nil, fmt.Errorf("client: dial %s: %w", e, err)
		}
		return c, nil
	}
	tc := tlsConf
	if tc.ServerName == "" {
		host, _, _ := net.SplitHostPort(e.addr)
		tc = tc.Clone()
		tc.ServerName = host
	}
	qc, err := quic.DialAddr(ctx, e.addr, tc, &quic.Config{
		HandshakeIdleTimeout: timeout,
		MaxIdleTimeout:       30 * time.Second,
		KeepAlivePeriod:      5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", e, err)
	}
	str, err := qc.OpenStreamSync(ctx)
	if err != nil {
		_ = qc.CloseWithError(0, "")
		return nil, fmt.Errorf("client: dial %s: opening a stream: %w", e, err)
	}
	return &quicStream{conn: qc, str: str}, nil
}

// quicStream is one QUIC connection carrying one ingest-v1 stream.
type quicStream struct {
	conn *quic.Conn
	str  *quic.Stream
	once sync.Once
}

func (q *quicStream) Read(p []byte) (int, error)  { return q.str.Read(p) }
func (q *quicStream) Write(p []byte) (int, error) { return q.str.Write(p) }

// Close closes the connection (and its UDP socket, which quic.DialAddr
// made for it alone): a Read or Write in progress returns. Closing the
// connection rather than the stream is safe while another goroutine is in
// Write.
func (q *quicStream) Close() error {
	q.once.Do(func() { _ = q.conn.CloseWithError(0, "") })
	return nil
}
