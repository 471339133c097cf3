package http1

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gyre-io/gyre/acceptor"
	"github.com/gyre-io/gyre/reactor"
)

// Defaults for Config's zero fields. Each is chosen so that the zero
// Config serves ordinary clients and bounds what a hostile one costs.
const (
	// DefaultMaxRequestLine bytes for the request line (method, target,
	// version): longer gets 414 URI Too Long. Browsers and proxies work
	// with targets up to 8 KiB (nginx's default large header buffer).
	DefaultMaxRequestLine = 8 << 10
	// DefaultMaxHeaderBytes bytes for the whole request head, request line
	// included: larger gets 431 Request Header Fields Too Large. The head
	// waits in the connection's input until it is complete, so this is
	// memory a slow client can make the server hold.
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultMaxHeaders header fields per request (and per trailer
	// section): more gets 431. Apache's default.
	DefaultMaxHeaders = 100
	// DefaultBufferBody: a request body with a Content-Length up to this
	// is read whole before the handler runs (Request.Body); larger ones,
	// and chunked ones, stream (Request.ReadBody).
	DefaultBufferBody = 64 << 10
	// DefaultResponseBuffer bytes of response body are kept back while a
	// handler writes, so a response written whole within one handler
	// call goes out with a Content-Length; past it, or when the call
	// returns before the response ends, the head is sent and the body
	// streams chunked.
	DefaultResponseBuffer = 64 << 10
	// DefaultReadHeaderTimeout: a request head must arrive whole within
	// this of its first byte. It is what cuts off slowloris clients.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultIdleTimeout: a keep-alive connection waiting for its next
	// request is closed after this.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultBodyTimeout: see Config.BodyTimeout.
	DefaultBodyTimeout = 30 * time.Second
	// DefaultSlowReaderTimeout: see Config.SlowReaderTimeout.
	DefaultSlowReaderTimeout = 30 * time.Second
	// DefaultMaxDiscard bytes of a request body the handler did not read
	// are read and dropped after its response to keep the connection;
	// a larger remainder closes it (net/http's figure).
	DefaultMaxDiscard = 256 << 10
)

// Config holds a Server's limits and timeouts. The zero value is valid:
// every zero field takes the default above. Fields are read once, when the
// server starts.
type Config struct {
	// Reactor configures the reactor group: Engine, Reactors, CPUs,
	// Buffers, the output watermarks and MaxOutput, Logger. The server
	// raises MaxInput to at least MaxHeaderBytes + BufferBody + 64 KiB (a
	// request head and a buffered body wait in the connection's input)
	// and leaves the reactor's IdleTimeout at zero: the HTTP timeouts
	// below replace it.
	Reactor reactor.Config
	// Listener configures the listening sockets (Backlog, ReusePort,
	// socket buffers, Balancer). Its Addrs are used when Start is given no
	// address.
	Listener acceptor.Config

	// MaxRequestLine caps the request line; longer gets 414. When zero and
	// MaxHeaderBytes is smaller than the default, MaxHeaderBytes.
	MaxRequestLine int
	// MaxHeaderBytes caps the request head, request line included, and
	// the trailer section of a chunked body; larger gets 431.
	MaxHeaderBytes int
	// MaxHeaders caps the header fields of a request (and the fields of a
	// trailer section); more gets 431.
	MaxHeaders int
	// MaxBodyBytes caps a request body. A Content-Length over it gets 413
	// at once; a chunked body that grows over it ends with ErrBodyTooLarge
	// and the connection is closed after the response (413 if the handler
	// has not answered). 0 means no cap: a streamed body costs bounded
	// memory whatever its size, and a buffered one is bounded by
	// BufferBody.
	MaxBodyBytes int64
	// BufferBody: a body with a Content-Length up to this many bytes is
	// read whole before the handler runs and is Request.Body. Larger
	// bodies and chunked ones stream through Request.ReadBody. Negative:
	// every body streams.
	BufferBody int
	// ResponseBuffer bytes of body a handler writes are kept back before
	// the head is sent, so a response completed within them gets a
	// Content-Length. Negative: none (every response that is not ended
	// within its handler call, or has no Content-Length set, is chunked).
	ResponseBuffer int

	// ReadHeaderTimeout: a request head must be complete within this of
	// its first byte, or the connection is closed without a response (as
	// net/http does). Negative disables it.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that has waited this
	// long for its next request. Negative disables it.
	IdleTimeout time.Duration
	// BodyTimeout bounds the wait for request body bytes: a buffered body
	// (see BufferBody) must arrive whole within BodyTimeout of its head,
	// and while a streamed body is being read (the handler took it) no
	// byte may be missing for longer. Otherwise the connection is closed
	// without a response (a body handler gets reactor.ErrReadTimeout).
	// While reading is paused (the handler has not taken the body, or
	// output backpressure) the clock does not run. Negative disables it.
	BodyTimeout time.Duration
	// SlowReaderTimeout closes a connection whose unsent output went over
	// the reactor's WriteHighWater (reading stops then) and did not drain
	// to WriteLowWater within this time: a client that does not read its
	// responses. Negative disables it.
	SlowReaderTimeout time.Duration
	// MaxDiscard: after a response, up to this many bytes of a request
	// body the handler did not read are read and dropped so the
	// connection can serve the next request; a longer remainder closes
	// it. Negative: never discard, always close.
	MaxDiscard int64

	// Logger receives server events (a handler panic); nil means the
	// reactor's Logger, or slog.Default().
	Logger *slog.Logger
}

// ErrConfig is wrapped by every error about an invalid Config.
var ErrConfig = errors.New("http1: invalid config")

// limits is a Config with defaults applied, in the forms the hot path
// uses.
type limits struct {
	maxLine, maxHead, maxHeaders int
	maxBody                      int64 // 0: none
	bufferBody                   int   // -1: never buffer
	respBuffer                   int   // 0: none
	headerTimeout, idleTimeout   time.Duration
	bodyTimeout, slowReader      time.Duration
	maxDiscard                   int64 // -1: never discard
	maxOutput, highWater         int
}

func defaultInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func defaultDur(v, def time.Duration) time.Duration {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

func (c *Config) limits() (limits, error) {
	l := limits{
		maxLine:       defaultInt(c.MaxRequestLine, DefaultMaxRequestLine),
		maxHead:       defaultInt(c.MaxHeaderBytes, DefaultMaxHeaderBytes),
		maxHeaders:    defaultInt(c.MaxHeaders, DefaultMaxHeaders),
		maxBody:       c.MaxBodyBytes,
		bufferBody:    defaultInt(c.BufferBody, DefaultBufferBody),
		respBuffer:    defaultInt(c.ResponseBuffer, DefaultResponseBuffer),
		headerTimeout: defaultDur(c.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		idleTimeout:   defaultDur(c.IdleTimeout, DefaultIdleTimeout),
		bodyTimeout:   defaultDur(c.BodyTimeout, DefaultBodyTimeout),
		slowReader:    defaultDur(c.SlowReaderTimeout, DefaultSlowReaderTimeout),
		maxDiscard:    c.MaxDiscard,
		maxOutput:     defaultInt(c.Reactor.MaxOutput, reactor.DefaultMaxOutput),
		highWater:     defaultInt(c.Reactor.WriteHighWater, reactor.DefaultWriteHighWater),
	}
	if c.MaxRequestLine == 0 && l.maxLine > l.maxHead {
		l.maxLine = l.maxHead // a small head limit bounds the default line too
	}
	if l.maxDiscard == 0 {
		l.maxDiscard = DefaultMaxDiscard
	}
	switch {
	case l.maxLine < 16:
		return l, fmt.Errorf("%w: MaxRequestLine %d is below 16", ErrConfig, l.maxLine)
	case l.maxHead < l.maxLine:
		return l, fmt.Errorf("%w: MaxHeaderBytes %d is below MaxRequestLine %d", ErrConfig, l.maxHead, l.maxLine)
	case l.maxHeaders < 1:
		return l, fmt.Errorf("%w: MaxHeaders %d", ErrConfig, l.maxHeaders)
	case l.maxBody < 0:
		return l, fmt.Errorf("%w: MaxBodyBytes %d", ErrConfig, l.maxBody)
	}
	if l.bufferBody < 0 {
		l.bufferBody = -1
	}
	if l.maxBody > 0 && int64(l.bufferBody) > l.maxBody {
		l.bufferBody = int(l.maxBody)
	}
	if l.respBuffer < 0 {
		l.respBuffer = 0
	}
	if l.maxDiscard < 0 {
		l.maxDiscard = -1
	}
	return l, nil
}
