package http1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gyre-io/gyre/reactor"
)

// Defaults for NetHTTP's zero fields.
const (
	// DefaultNetHTTPWorkers bounds the goroutines running handlers at
	// once, per NetHTTP value.
	DefaultNetHTTPWorkers = 4096
	// DefaultNetHTTPQueue bounds the requests waiting for a worker; past
	// it a request gets 503 and its connection closes.
	DefaultNetHTTPQueue = 65536
	// DefaultNetHTTPBodyBuffer bytes of a streamed request body may wait
	// for the handler's Read; past it the reactor stops reading.
	DefaultNetHTTPBodyBuffer = 64 << 10
	// netHTTPWriteBuffer bytes a handler writes are gathered before they
	// go to the reactor (net/http's bufio.Writer has 4 KiB too).
	netHTTPWriteBuffer = 4 << 10
)

// NetHTTP serves a net/http Handler (net/http's ServeMux, chi,
// gorilla/mux, gin's Engine...) on the reactors. It is a Handler: set it
// as Server.Handler, or use NewNetHTTPServer to carry an http.Server's
// settings over.
//
// The reactor parses each request and builds its *http.Request; the
// handler runs on a goroutine from a bounded pool (Workers), at most one
// at a time per connection and in request order (the connection reads
// its next request once the response has ended). Request.Body streams
// from the reactor through a buffer of BodyBuffer bytes: when it is full
// the reactor stops reading and TCP holds the client back. The
// ResponseWriter gathers writes in a 4 KiB buffer and hands them to the
// reactor; a handler whose client does not read blocks in Write once the
// connection's output is over the reactor's WriteHighWater, until it
// drains. It implements http.Flusher (and FlushError, for
// http.ResponseController) and http.Hijacker: the hijacked net.Conn
// reads and writes through the reactor with blocking calls and deadlines,
// so WebSocket libraries work on it (see exchange.Hijack's rules).
//
// Request.Context is canceled when ServeHTTP returns, when the connection
// closes (the client closes or resets it, a write fails, a timeout,
// Server.Close, the Shutdown deadline), and when a body read fails. Once
// the request has been read the connection keeps reading while the
// handler runs, to see the client go away, until bytes of a next
// (pipelined) request arrive; as in net/http, a client's FIN behind such
// bytes is seen only after the response. Unlike net/http, a client that
// only half-closes (shuts down its sending side) is gone as well: the
// reactor closes a connection at the peer's FIN, so its response is not
// sent.
type NetHTTP struct {
	// Handler serves the requests; nil means http.DefaultServeMux.
	Handler http.Handler
	// Workers bounds the handler goroutines (DefaultNetHTTPWorkers).
	// Goroutines start as requests need them and exit when none waits.
	Workers int
	// Queue bounds the requests waiting for a worker (DefaultNetHTTPQueue);
	// a request past it is answered 503 and its connection closed.
	Queue int
	// BodyBuffer bounds the body bytes received and not yet read by the
	// handler, per request (DefaultNetHTTPBodyBuffer).
	BodyBuffer int
	// ErrorLog receives handler panics; nil means the log package's
	// standard logger.
	ErrorLog *log.Logger
	// BaseContext is the parent of every request's context; nil means
	// context.Background().
	BaseContext context.Context

	once       sync.Once
	pool       workerPool
	bodyBuffer int
	base       context.Context
	handler    http.Handler

	hjMu    sync.Mutex
	hjLoops map[*reactor.Reactor]*hijackLoop // per reactor, made at its first Hijack
}

var _ Handler = (*NetHTTP)(nil)

func (a *NetHTTP) init() {
	a.handler = a.Handler
	if a.handler == nil {
		a.handler = http.DefaultServeMux
	}
	a.pool.max = defaultInt(a.Workers, DefaultNetHTTPWorkers)
	a.pool.maxQueue = defaultInt(a.Queue, DefaultNetHTTPQueue)
	a.bodyBuffer = defaultInt(a.BodyBuffer, DefaultNetHTTPBodyBuffer)
	a.base = a.BaseContext
	if a.base == nil {
		a.base = context.Background()
	}
}

// ServeHTTP1 builds the *http.Request on the reactor and hands it to a
// worker.
func (a *NetHTTP) ServeHTTP1(w *Response, r *Request) {
	a.once.Do(a.init)
	x := &exchange{a: a, ack: make(chan error, 1), closedC: make(chan struct{}), status: 200, clen: -1}
	req, err := x.buildRequest(r)
	if err != nil {
		w.SetStatus(400)
		w.AddHeader("Connection", "close")
		_, _ = w.WriteString("400 Bad Request")
		return
	}
	x.req = req
	x.handle = w.Detach()
	x.highWater = w.cn.ls.lim.highWater
	w.cn.obs = x
	r.SetValue(x)
	if !a.pool.submit(x) {
		x.cancel()
		w.cn.obs = nil
		w.SetStatus(503)
		w.AddHeader("Connection", "close")
		_, _ = w.WriteString("503 Service Unavailable")
		_ = w.End()
		return
	}
	x.watchLater(w.cn)
}

// watchLater keeps the connection reading while the handler runs, once
// the request has been read whole, so that the client going away (its
// FIN or a reset) closes the connection and cancels the request's
// context, as net/http's background read does. The connection pauses
// (pauseWait) as the request ends; at the end of this loop iteration the
// pause is lifted. Bytes that arrive meanwhile (a pipelined request)
// pause it again and wait, and the peer's FIN behind them is then only
// seen after the response, as in net/http. Loop-only.
func (x *exchange) watchLater(cn *conn) {
	c, seq := cn.c, cn.resp.seq
	cn.ls.r.Later(func() {
		if cn.c != c || cn.resp.seq != seq || cn.resp.ended || cn.in != inDone || cn.pause != pauseWait {
			return
		}
		cn.clearPause(pauseWait)
	})
}

// exchange is one request served by a worker. Fields marked (loop) are
// only touched on the reactor; the rest belong to the worker, except the
// channels and what the body's mutex guards.
type exchange struct {
	a      *NetHTTP
	handle Handle
	req    *http.Request
	cancel context.CancelFunc
	body   *netBody // a streamed body, or nil

	// Worker side: the ResponseWriter.
	header      http.Header
	sent        http.Header // the header as of WriteHeader
	status      int
	wroteHeader bool
	buf         []byte
	written     int64
	clen        int64 // from the Content-Length field at WriteHeader; -1: none
	failed      error // a write that failed: every later one fails too
	shipped     bool  // bytes went to the reactor: the head is out
	highWater   int
	hijacked    bool // Hijack succeeded: the connection is the handler's

	// Between the two.
	ack       chan error    // the loop's answer to each hand-over
	closedC   chan struct{} // closed when the connection closes (loop)
	closeOnce sync.Once
	closeErr  error

	headApplied bool // (loop) the status and fields went to the Response
	waitDrain   bool // (loop) the ack waits for the output to drain
}

// buildRequest makes the *http.Request from the zero-copy view: this is
// where the net/http face allocates (strings, the header map, the URL).
func (x *exchange) buildRequest(r *Request) (*http.Request, error) {
	target := string(r.Target())
	req := &http.Request{
		Method:     r.Method(),
		RequestURI: target,
		Proto:      "HTTP/1." + strconv.Itoa(min(r.ProtoMinor(), 1)),
		ProtoMajor: 1,
		ProtoMinor: min(r.ProtoMinor(), 1),
		Header:     make(http.Header, r.NumHeaders()),
		Close:      !r.KeepAlive(),
	}
	if ra := r.RemoteAddr(); ra != nil {
		req.RemoteAddr = ra.String()
	}
	rawurl := target
	justAuthority := req.Method == "CONNECT" && (len(target) == 0 || target[0] != '/')
	if justAuthority {
		rawurl = "http://" + rawurl
	}
	u, err := url.ParseRequestURI(rawurl)
	if err != nil {
		return nil, err
	}
	if justAuthority {
		u.Scheme = ""
	}
	req.URL = u
	for i := 0; i < r.NumHeaders(); i++ {
		k, v := r.HeaderAt(i)
		key := textproto.CanonicalMIMEHeaderKey(string(k))
		if key == "Host" {
			continue // net/http moves it to Request.Host
		}
		req.Header[key] = append(req.Header[key], string(v))
	}
	req.Host = u.Host
	if req.Host == "" {
		req.Host = string(r.Host())
	}
	if r.Chunked() {
		// As net/http: the declared trailer keys, with nil values until
		// the body has been read to its end.
		for _, k := range trailerKeys(req.Header.Values("Trailer")) {
			if req.Trailer == nil {
				req.Trailer = make(http.Header)
			}
			req.Trailer[k] = nil
		}
	}
	switch {
	case r.Chunked():
		req.ContentLength = -1
		req.TransferEncoding = []string{"chunked"}
		req.Header.Del("Content-Length")
	case r.HasBody():
		req.ContentLength = r.ContentLength()
	}
	switch {
	case !r.HasBody():
		req.Body = http.NoBody
	case r.Buffered():
		req.Body = io.NopCloser(bytes.NewReader(bytes.Clone(r.Body())))
	default:
		x.body = &netBody{x: x, notify: make(chan struct{}, 1)}
		req.Body = x.body
	}
	ctx, cancel := context.WithCancel(x.a.base)
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, r.Conn().LocalAddr())
	x.cancel = cancel
	return req.WithContext(ctx), nil
}

// drained and closed: the connection's observer (loop).

func (x *exchange) drained() {
	if x.waitDrain {
		x.waitDrain = false
		x.ack <- nil
	}
}

// peerGone: the client half-closed; like net/http, the request's context
// ends, but the response may still be written.
func (x *exchange) peerGone() { x.cancel() }

func (x *exchange) closed(cause error) {
	x.closeOnce.Do(func() {
		x.closeErr = fmt.Errorf("http1: connection closed: %w", cause)
		close(x.closedC)
		x.cancel()
	})
}

// run serves the request on a worker.
func (x *exchange) run() {
	defer x.cancel()
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				x.logf("http: panic serving %v: %v\n%s", x.req.RemoteAddr, p, buf)
			}
			x.abort()
		}
	}()
	x.a.handler.ServeHTTP(x, x.req)
	x.finish()
}

func (x *exchange) logf(format string, args ...any) {
	if l := x.a.ErrorLog; l != nil {
		l.Printf(format, args...)
	} else {
		log.Printf(format, args...)
	}
}

// abort closes the connection after a panic, without the rest of the
// response (as net/http does).
func (x *exchange) abort() {
	if x.hijacked {
		return // the connection is the handler's (net/http leaves it too)
	}
	_ = x.post(func(w *Response, r *Request) { w.cn.abort() })
}

// Header returns the response header map.
func (x *exchange) Header() http.Header {
	if x.header == nil {
		x.header = make(http.Header)
	}
	return x.header
}

// WriteHeader records the status and the header as they are now. As in
// net/http, a 1xx code other than 101 sends an informational response at
// once (103 Early Hints, say) with the header as it is, and a final one
// may follow; 101 Switching Protocols is final: the head goes out at
// Hijack.
func (x *exchange) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if x.wroteHeader || x.hijacked {
		return
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		x.informational(code)
		return
	}
	x.wroteHeader = true
	x.status = code
	x.sent = x.Header().Clone()
	x.clen = -1
	if cl := x.sent.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			x.clen = n
		}
	}
}

// informational sends a 1xx response with the header as it is now.
func (x *exchange) informational(code int) {
	if x.failed != nil {
		return
	}
	var fields []string
	for k, vv := range x.Header() {
		for _, v := range vv {
			fields = append(fields, k, v)
		}
	}
	err := x.call(func(w *Response, r *Request) {
		err := w.Informational(code, fields...)
		if err == ErrHeadSent {
			err = nil // the final head is out: too late for a 1xx, as net/http
		}
		x.ack <- err
	})
	if err != nil {
		x.failed = err
	}
}

// appendRawHead appends a status line and the fields of h (sorted, for a
// stable order), without any framing field: for 1xx responses and a head
// that Hijack sends before it hands the connection over.
func appendRawHead(dst []byte, code int, h http.Header) []byte {
	dst = fmt.Appendf(dst, "HTTP/1.1 %03d %s\r\n", code, http.StatusText(code))
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "" || strings.IndexFunc(k, func(r rune) bool { return r >= 0x80 || !isToken[r] }) >= 0 {
			continue // as Response.AddHeader: not a field name
		}
		for _, v := range h[k] {
			dst = appendField(dst, k, v)
		}
	}
	return append(dst, "\r\n"...)
}

// Write gathers p and hands it to the reactor in 4 KiB pieces, blocking
// while the connection's output is over the high-water mark.
func (x *exchange) Write(p []byte) (int, error) {
	if x.hijacked {
		return 0, http.ErrHijacked
	}
	if !x.wroteHeader {
		x.WriteHeader(200)
	}
	if x.failed != nil {
		return 0, x.failed
	}
	if !bodyAllowed(x.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if x.clen >= 0 && x.written+int64(len(p)) > x.clen {
		return 0, http.ErrContentLength
	}
	n := 0
	for len(p) > 0 {
		if x.buf == nil {
			x.buf = make([]byte, 0, netHTTPWriteBuffer)
		}
		k := min(len(p), cap(x.buf)-len(x.buf))
		x.buf = append(x.buf, p[:k]...)
		p, n = p[k:], n+k
		x.written += int64(k)
		if len(x.buf) == cap(x.buf) {
			if err := x.ship(false, false); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// Flush sends the head and what the body has so far.
func (x *exchange) Flush() { _ = x.FlushError() }

// FlushError is Flush reporting an error (http.ResponseController uses
// it).
func (x *exchange) FlushError() error {
	if x.hijacked {
		return http.ErrHijacked
	}
	if !x.wroteHeader {
		x.WriteHeader(200)
	}
	if x.failed != nil {
		return x.failed
	}
	return x.ship(true, false)
}

// Hijack implements http.Hijacker: the connection becomes the handler's.
// The returned net.Conn reads and writes through the reactor (blocking
// calls with deadlines, no goroutine of its own); its Close closes the
// TCP connection. The bufio.Reader holds the bytes the client sent past
// the request (up to its 4 KiB), as net/http's does. After WriteHeader
// (101 Switching Protocols, typically) and before any body, Hijack sends
// that head first, as net/http does; it fails once the handler has called
// Write or Flush (errHijackStarted),
// a second time with http.ErrHijacked, and while the server is shutting
// down with ErrServerClosed. After Hijack, Write and FlushError return
// http.ErrHijacked, the request body fails with http.ErrHijacked, and
// nothing more is sent for this response. The request's context stays
// valid until ServeHTTP returns, as in net/http. A streamed body not read
// to its end is not decoded further: its remaining bytes (with their
// framing) are read from the net.Conn.
func (x *exchange) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if x.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if x.shipped || len(x.buf) > 0 || x.failed != nil {
		return nil, nil, errHijackStarted
	}
	var head []byte
	if x.wroteHeader {
		head = appendRawHead(nil, x.status, x.sent)
	}
	var hc *hijackConn
	err := x.call(func(w *Response, r *Request) {
		switch {
		case w.committed:
			x.ack <- errHijackStarted
		case w.cn.draining:
			x.ack <- ErrServerClosed
		default:
			if head != nil {
				if _, err := w.cn.c.Write(head); err != nil {
					x.ack <- err
					return
				}
			}
			hc = x.a.takeOver(w.cn)
			x.ack <- nil
		}
	})
	if err != nil {
		return nil, nil, err
	}
	x.hijacked = true
	if b := x.body; b != nil {
		b.mu.Lock()
		if b.err == nil {
			b.err = http.ErrHijacked
		}
		b.mu.Unlock()
		select {
		case b.notify <- struct{}{}:
		default:
		}
	}
	br := bufio.NewReader(hc)
	if n := min(hc.buffered(), br.Size()); n > 0 {
		_, _ = br.Peek(n) // the bytes past the request move into br, as in net/http
	}
	return hc, bufio.NewReadWriter(br, bufio.NewWriter(hc)), nil
}

// finish ends the response once the handler has returned.
func (x *exchange) finish() {
	if x.hijacked {
		return
	}
	if !x.wroteHeader {
		x.WriteHeader(200)
	}
	if x.failed == nil {
		_ = x.ship(false, true)
	}
}

// trailers returns the response's trailer fields as net/http takes them
// when the handler returns: the keys declared in the Trailer field at
// WriteHeader with their values now, and every key with the
// http.TrailerPrefix.
func (x *exchange) trailers() [][2]string {
	var out [][2]string
	for _, k := range trailerKeys(x.sent.Values("Trailer")) {
		for _, v := range x.header[k] {
			out = append(out, [2]string{k, v})
		}
	}
	for k, vv := range x.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && name != "" {
			for _, v := range vv {
				out = append(out, [2]string{name, v})
			}
		}
	}
	return out
}

// trailerKeys splits Trailer field values into canonical keys, leaving
// out the framing fields a trailer may not carry.
func trailerKeys(decls []string) []string {
	var keys []string
	for _, d := range decls {
		for k := range strings.SplitSeq(d, ",") {
			if k = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k)); k != "" && !framingField(k) {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// framingField reports whether a canonical key is one net/http refuses as
// a trailer.
func framingField(k string) bool {
	return k == "Content-Length" || k == "Transfer-Encoding" || k == "Trailer" || k == "Host"
}

// ship hands the gathered bytes to the reactor and waits until it has
// taken them (and, if the output is over the high-water mark, until it
// drains), so the buffer can be reused and a client that does not read
// holds the handler back.
func (x *exchange) ship(flush, end bool) error {
	if !x.shipped && len(x.buf) > 0 && bodyAllowed(x.status) && x.sent.Get("Content-Type") == "" {
		// As net/http: a handler that sets no type gets a sniffed one.
		x.sent.Set("Content-Type", http.DetectContentType(x.buf))
	}
	x.shipped = true
	data := x.buf
	var trailers [][2]string
	if end {
		trailers = x.trailers()
	}
	err := x.call(func(w *Response, r *Request) {
		if !x.headApplied {
			x.headApplied = true
			w.SetStatus(x.status)
			for k, vv := range x.sent {
				for _, v := range vv {
					w.AddHeader(k, v)
				}
			}
		}
		if len(data) > 0 {
			if _, err := w.Write(data); err != nil {
				x.ack <- err
				return
			}
		}
		switch {
		case end:
			for _, t := range trailers {
				w.AddTrailer(t[0], t[1])
			}
			err := w.End()
			// An idle keep-alive connection keeps nothing of the exchange
			// (its write buffer, the request's maps): drop the
			// connection's references unless the next request took them.
			if w.cn.obs == x {
				w.cn.obs = nil
			}
			if r.Value() == x {
				r.SetValue(nil)
			}
			x.ack <- err
		case flush:
			x.ack <- w.Flush()
		case w.Buffered() > x.highWater:
			x.waitDrain = true // drained() answers
		default:
			x.ack <- nil
		}
	})
	x.buf = x.buf[:0]
	if err != nil {
		x.failed = err
	}
	return err
}

// call runs fn on the reactor and waits for its answer: fn sends exactly
// one value on x.ack (or leaves it to drained, see waitDrain). A closing
// connection ends the wait with its error.
func (x *exchange) call(fn func(w *Response, r *Request)) error {
	err := x.post(fn)
	if err == nil {
		select {
		case err = <-x.ack:
		case <-x.closedC:
			err = x.closeErr
		}
	}
	return err
}

// post runs fn on the reactor, retrying while its inbox is full.
func (x *exchange) post(fn func(w *Response, r *Request)) error {
	for delay := 50 * time.Microsecond; ; delay = min(2*delay, 10*time.Millisecond) {
		err := x.handle.Post(fn)
		if !errors.Is(err, reactor.ErrInboxFull) {
			return err
		}
		select {
		case <-time.After(delay):
		case <-x.closedC:
			return x.closeErr
		}
	}
}

// netBody is a streamed Request.Body: the reactor appends what arrives,
// the handler's Read takes it. Reading starts (and 100 Continue goes out)
// at the first Read, as in net/http.
type netBody struct {
	x      *exchange
	notify chan struct{} // a signal that data or the end arrived

	mu     sync.Mutex
	data   []byte
	off    int
	err    error // io.EOF at the end
	paused bool  // the reactor stopped reading: the buffer is full
	taken  bool
	closed bool
}

var netBodyFunc = BodyFunc(func(w *Response, r *Request, chunk []byte, err error) {
	x, _ := r.Value().(*exchange)
	if x == nil || x.body == nil {
		return
	}
	b := x.body
	b.mu.Lock()
	if b.off == len(b.data) {
		b.data, b.off = b.data[:0], 0
	}
	b.data = append(b.data, chunk...)
	switch {
	case err == io.EOF:
		// The trailers, before Read can return io.EOF (the handler may
		// look at Request.Trailer from then on, as with net/http).
		r.Trailers(func(name, value []byte) bool {
			k := textproto.CanonicalMIMEHeaderKey(string(name))
			if !framingField(k) {
				if x.req.Trailer == nil {
					x.req.Trailer = make(http.Header)
				}
				x.req.Trailer[k] = append(x.req.Trailer[k], string(value))
			}
			return true
		})
		b.err = io.EOF
		x.watchLater(w.cn)
	case err != nil:
		b.err = err
		x.cancel()
	}
	pause := !b.paused && len(b.data)-b.off >= x.a.bodyBuffer && b.err == nil
	if pause {
		b.paused = true
	}
	b.mu.Unlock()
	if pause {
		r.PauseBody()
	}
	select {
	case b.notify <- struct{}{}:
	default:
	}
})

// Read reads the body as the reactor delivers it.
func (b *netBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return 0, http.ErrBodyReadAfterClose
	}
	if !b.taken {
		b.taken = true
		b.mu.Unlock()
		if err := b.x.post(func(w *Response, r *Request) { r.ReadBody(netBodyFunc) }); err != nil {
			return 0, err
		}
		b.mu.Lock()
	}
	for {
		if b.off < len(b.data) {
			n := copy(p, b.data[b.off:])
			b.off += n
			resume := b.paused && len(b.data)-b.off < b.x.a.bodyBuffer/2
			if resume {
				b.paused = false
			}
			b.mu.Unlock()
			if resume {
				_ = b.x.post(func(w *Response, r *Request) { r.ResumeBody() })
			}
			return n, nil
		}
		if b.err != nil {
			err := b.err
			b.mu.Unlock()
			return 0, err
		}
		b.mu.Unlock()
		select {
		case <-b.notify:
		case <-b.x.closedC:
			b.mu.Lock()
			if b.off < len(b.data) || b.err != nil {
				continue // what arrived before the close
			}
			b.mu.Unlock()
			return 0, io.ErrUnexpectedEOF
		}
		b.mu.Lock()
	}
}

// Close stops the handler's reading; what remains is read and dropped by
// the server after the response (within Config.MaxDiscard) or the
// connection closes.
func (b *netBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// workerPool runs exchanges on at most max goroutines, queueing up to
// maxQueue more. A goroutine starts when a request finds none free and
// exits when the queue is empty, so an idle server has none.
type workerPool struct {
	mu            sync.Mutex
	running       int
	max, maxQueue int
	queue         []*exchange
	head          int
}

func (p *workerPool) submit(x *exchange) bool {
	p.mu.Lock()
	if p.running < p.max {
		p.running++
		p.mu.Unlock()
		go p.work(x)
		return true
	}
	if len(p.queue)-p.head >= p.maxQueue {
		p.mu.Unlock()
		return false
	}
	p.queue = append(p.queue, x)
	p.mu.Unlock()
	return true
}

func (p *workerPool) work(x *exchange) {
	for {
		x.run()
		p.mu.Lock()
		if p.head == len(p.queue) {
			p.queue, p.head = p.queue[:0], 0
			p.running--
			p.mu.Unlock()
			return
		}
		x = p.queue[p.head]
		p.queue[p.head] = nil
		p.head++
		p.mu.Unlock()
	}
}

// NewNetHTTPServer returns a Server (not started) that serves hs.Handler
// through NetHTTP, with hs's settings carried over where gyre has them:
//
//   - ReadHeaderTimeout (ReadTimeout if zero) -> Config.ReadHeaderTimeout;
//     both zero: no head timeout, as in net/http;
//   - IdleTimeout (ReadTimeout if zero) -> Config.IdleTimeout; both zero:
//     none;
//   - ReadTimeout -> Config.BodyTimeout: a body stall, not the whole
//     request's time (see docs/http.md); zero: none;
//   - WriteTimeout -> Config.SlowReaderTimeout: output that stays over the
//     high-water mark, not the whole response's time; zero: none;
//   - MaxHeaderBytes (http.DefaultMaxHeaderBytes if zero) ->
//     Config.MaxHeaderBytes;
//   - ErrorLog -> NetHTTP.ErrorLog; BaseContext is called once, with a nil
//     listener, for NetHTTP.BaseContext;
//   - Addr -> Config.Listener.Addrs (":http" if empty, as net/http).
//
// ConnState, ConnContext, TLSConfig, TLSNextProto, DisableGeneralOptionsHandler
// and Protocols are not used. The reactors and listener come from cfg;
// cfg's timeouts and MaxHeaderBytes are replaced as above. Shutdown(ctx)
// and Close on the returned Server mean what they mean on hs.
func NewNetHTTPServer(hs *http.Server, cfg Config) *Server {
	firstDur := func(a, b time.Duration) time.Duration {
		if a == 0 {
			a = b
		}
		if a <= 0 {
			return -1
		}
		return a
	}
	cfg.ReadHeaderTimeout = firstDur(hs.ReadHeaderTimeout, hs.ReadTimeout)
	cfg.IdleTimeout = firstDur(hs.IdleTimeout, hs.ReadTimeout)
	cfg.BodyTimeout = firstDur(hs.ReadTimeout, 0)
	cfg.SlowReaderTimeout = firstDur(hs.WriteTimeout, 0)
	cfg.MaxHeaderBytes = defaultInt(hs.MaxHeaderBytes, http.DefaultMaxHeaderBytes)
	if addr := hs.Addr; addr != "" || len(cfg.Listener.Addrs) == 0 {
		if addr == "" {
			addr = ":http"
		}
		cfg.Listener.Addrs = []string{addr}
	}
	a := &NetHTTP{Handler: hs.Handler, ErrorLog: hs.ErrorLog}
	if hs.BaseContext != nil {
		a.BaseContext = hs.BaseContext((net.Listener)(nil))
	}
	return &Server{Handler: a, Config: cfg}
}
