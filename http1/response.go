package http1

import (
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	"github.com/gyre-io/gyre/reactor"
)

// Response writes the response to one request straight into the
// connection's output. Its methods are loop-only, except Handle's Post.
//
// The head (status line and fields) is sent with the first body bytes
// past Config.ResponseBuffer, at Flush, when the handler call returns with
// body written but the response not ended, or at End. Until then SetStatus
// and AddHeader may be called in any order, and a response ended within
// the buffer gets a Content-Length. Otherwise the body is framed with the
// Content-Length the handler set, or chunked (HTTP/1.1), or delimited by
// closing the connection (HTTP/1.0). A Response is reused for the
// connection's next request: do not keep it past End (keep a Handle).
type Response struct {
	cn      *conn
	buf     *respBuf // the head and body kept back until the head is sent
	status  int
	clen    int64 // Content-Length set by the handler; -1: none
	written int64 // body bytes written (counted, not sent, for HEAD)
	seq     uint32

	active    bool // serving a request
	committed bool // the head is in the connection's output
	ended     bool
	detached  bool
	chunked   bool // the body is sent chunked
	head      bool // a HEAD request: the body is counted, not sent
	closeReq  bool // the handler set Connection: close
	hasDate   bool // the handler set Date
	touched   bool // the handler set a status, a field or body bytes
	// wantTrailer: the handler declared a Trailer field or added a
	// trailer before the head went out, so the body is chunked (HTTP/1.1)
	// to carry them; trailer holds "Name: value\r\n" lines for End.
	wantTrailer bool
	trailer     []byte
}

// respBuf holds a response's head fields and kept-back body until the
// head is sent. Buffers are pooled per reactor: an idle connection holds
// none.
type respBuf struct {
	hdr  []byte // "Name: value\r\n" lines set by the handler
	body []byte
	out  []byte // the assembled head (and first body bytes)
}

// reset prepares w for a new request.
func (w *Response) reset(seq uint32, head bool) {
	*w = Response{cn: w.cn, status: 200, clen: -1, seq: seq, active: true, head: head}
}

// SetStatus sets the status code (200 unless set). It has no effect once
// the head is sent. Codes outside 200-999 panic: informational (1xx)
// responses are not supported, except the 100 Continue the server sends
// itself (see Request.ReadBody).
func (w *Response) SetStatus(code int) {
	if code < 200 || code > 999 {
		panic(fmt.Sprintf("http1: invalid response status code %d", code))
	}
	if w.committed || w.ended {
		return
	}
	w.status = code
	w.touched = true
}

// Status returns the status code set (200 by default).
func (w *Response) Status() int { return w.status }

// AddHeader adds a header field to the response. It has no effect once
// the head is sent. Names that are not tokens are dropped and CR, LF and
// NUL in values become spaces (net/http does the same). The server owns
// the framing: Content-Length sets the body length (as SetContentLength),
// Connection: close closes the connection after the response (other
// Connection values are dropped), Transfer-Encoding is dropped. A Date
// field replaces the server's. It does not allocate once the connection's
// reactor has served a few responses.
func (w *Response) AddHeader(name, value string) {
	w.AddHeaderBytes(stringBytes(name), stringBytes(value))
}

// AddHeaderBytes is AddHeader for byte slices (copied).
func (w *Response) AddHeaderBytes(name, value []byte) {
	if w.committed || w.ended || len(name) == 0 {
		return
	}
	for i := 0; i < len(name); i++ {
		if !isToken[name[i]] {
			return
		}
	}
	switch len(name) {
	case 4:
		if equalFold(name, "date") {
			w.hasDate = true
		}
	case 10:
		if equalFold(name, "connection") {
			if c, _ := connectionTokens(value); c {
				w.closeReq = true
			}
			return
		}
	case 7:
		if equalFold(name, "trailer") {
			w.wantTrailer = true // a body that carries trailers is chunked
		}
	case 14:
		if equalFold(name, "content-length") {
			if n, ok := parseContentLength(trimOWS(value)); ok {
				w.clen = n
			}
			return
		}
	case 17:
		if equalFold(name, "transfer-encoding") {
			return
		}
	}
	b := w.ensureBuf()
	b.hdr = appendField(b.hdr, name, value)
	w.touched = true
}

// appendField appends the field line "name: value\r\n" (name already
// checked), with CR, LF and NUL in value turned into spaces, as net/http
// does: nothing can be smuggled into a head or trailer through a value.
func appendField[T string | []byte](dst []byte, name, value T) []byte {
	dst = append(dst, name...)
	dst = append(dst, ':', ' ')
	for i := 0; i < len(value); i++ {
		c := value[i]
		if c == '\r' || c == '\n' || c == 0 {
			c = ' '
		}
		dst = append(dst, c)
	}
	return append(dst, '\r', '\n')
}

// Upgrade switches the connection to another protocol (RFC 9110 section
// 7.8): it sends the head now, status 101 Switching Protocols with the
// fields the handler added (Upgrade, and whatever the protocol needs)
// and Connection: Upgrade, ends the response, and once the handler call
// returns hands the connection to h. From then on h gets the connection's
// events on the reactor like any reactor.Handler: OnOpen at once, then
// OnData, starting with the bytes the client sent after the request, and
// the optional interfaces (PressureHandler, ShutdownHandler, without
// which Shutdown closes the connection; HalfCloseHandler). h is this
// connection's alone: keep its state in it, since the server keeps using
// Conn.SetContext for the connection. The request must have been read
// whole (a body taken and read to its end); the caller checks that the
// client asked for this protocol (Connection: upgrade, Upgrade: ...).
// It fails with ErrUpgrade once the head was sent or the response ended,
// before the body was read, or during Shutdown.
func (w *Response) Upgrade(h reactor.Handler) error {
	cn := w.cn
	if w.committed || w.ended || !w.active || cn.in != inDone || !cn.bodyDone || cn.draining || h == nil {
		return ErrUpgrade
	}
	b := w.ensureBuf()
	out := appendStatusLine(b.out[:0], cn.req.minor, 101)
	if !w.hasDate {
		out = append(out, cn.ls.date.get(cn.ls.r.Now())...)
	}
	out = append(out, b.hdr...)
	out = append(out, "Connection: Upgrade\r\n\r\n"...)
	b.out = out
	w.status, w.committed, w.ended, w.active = 101, true, true, false
	_, err := cn.c.Write(out)
	w.releaseBuf()
	if err != nil {
		cn.abort()
		return err
	}
	cn.in = inClosed // no more HTTP on this connection
	cn.upgradeTo = h
	return nil
}

// Informational sends an informational (1xx) response now, before the
// final one: 103 Early Hints with its Link fields, say. fields are name,
// value pairs, checked as AddHeader checks them. To an HTTP/1.0 client it
// sends nothing (RFC 9110 section 15.2). It fails with ErrHeadSent once
// the final head was sent, ErrResponseEnded after End. Codes outside
// 100-199, and 101 (see Upgrade), panic.
func (w *Response) Informational(code int, fields ...string) error {
	if code < 100 || code > 199 || code == 101 {
		panic(fmt.Sprintf("http1: invalid informational status code %d", code))
	}
	switch {
	case w.ended || !w.active:
		return ErrResponseEnded
	case w.committed:
		return ErrHeadSent
	case w.cn.req.minor == 0:
		return nil
	}
	b := appendStatusLine(nil, w.cn.req.minor, code)
	for i := 0; i+1 < len(fields); i += 2 {
		if validFieldName(fields[i]) {
			b = appendField(b, fields[i], fields[i+1])
		}
	}
	_, err := w.cn.c.Write(append(b, crlf...))
	return err
}

// validFieldName reports whether name is a non-empty token.
func validFieldName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isToken[name[i]] {
			return false
		}
	}
	return true
}

// AddTrailer adds a trailer field, sent after the body at End. Trailers
// need a chunked body (HTTP/1.1, no Content-Length): a response that adds
// one, or declares one with a Trailer header field, before its head goes
// out is chunked; trailers of a response sent otherwise (a
// Content-Length, HTTP/1.0, HEAD) are dropped, as net/http drops them.
// Names and values are checked as AddHeader checks them; framing fields
// (Content-Length, Transfer-Encoding, Trailer, Host) are dropped.
func (w *Response) AddTrailer(name, value string) {
	if w.ended || !w.active || !validFieldName(name) {
		return
	}
	switch {
	case strings.EqualFold(name, "content-length"), strings.EqualFold(name, "transfer-encoding"),
		strings.EqualFold(name, "trailer"), strings.EqualFold(name, "host"):
		return
	}
	if !w.committed {
		w.wantTrailer = true
	}
	w.trailer = appendField(w.trailer, name, value)
}

// SetContentLength declares the body's length, so the head can be sent
// before the body (with no chunked framing). Writing more than n bytes
// fails with ErrContentLength; ending with fewer closes the connection.
// It has no effect once the head is sent.
func (w *Response) SetContentLength(n int64) {
	if w.committed || w.ended || n < 0 {
		return
	}
	w.clen = n
	w.touched = true
}

// Write appends p to the body. p may be reused when Write returns. It
// writes all of p or nothing: ErrOutputFull when the connection's unsent
// output would go over reactor.Config.MaxOutput (the client is not
// reading; try again later, or End), ErrContentLength past the declared
// length, ErrBodyNotAllowed for a 204 or 304 response, ErrResponseEnded
// after End, an error wrapping net.ErrClosed when the connection closed.
// For a HEAD request the bytes are counted (for Content-Length) and
// dropped.
func (w *Response) Write(p []byte) (int, error) {
	if w.ended {
		return 0, ErrResponseEnded
	}
	cn := w.cn
	if cn.in == inClosed || cn.c.Closed() {
		return 0, reactor.ErrConnClosed
	}
	if !bodyAllowed(w.status) {
		return 0, ErrBodyNotAllowed
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.clen >= 0 && w.written+int64(len(p)) > w.clen {
		return 0, ErrContentLength
	}
	w.touched = true
	if w.head {
		w.written += int64(len(p))
		return len(p), nil
	}
	if !w.committed {
		b := w.ensureBuf()
		if len(b.body)+len(p) <= cn.ls.lim.respBuffer {
			b.body = append(b.body, p...)
			w.written += int64(len(p))
			return len(p), nil
		}
		if err := w.commit(false); err != nil {
			return 0, err
		}
	}
	if err := w.send(p); err != nil {
		return 0, err
	}
	w.written += int64(len(p))
	return len(p), nil
}

// WriteString is Write for a string, without copying it first.
func (w *Response) WriteString(s string) (int, error) { return w.Write(stringBytes(s)) }

// send writes body bytes after the head, framed.
func (w *Response) send(p []byte) error {
	c := w.cn.c
	if !w.chunked {
		_, err := c.Write(p)
		return err
	}
	var hdr [18]byte
	h := strconv.AppendUint(hdr[:0], uint64(len(p)), 16)
	h = append(h, '\r', '\n')
	if c.Buffered()+len(h)+len(p)+2 > w.cn.ls.lim.maxOutput {
		return ErrOutputFull
	}
	if _, err := c.Write(h); err != nil {
		return err
	}
	_, _ = c.Write(p) // cannot fail: room was checked, the connection is open
	_, _ = c.Write(crlf)
	return nil
}

var (
	crlf          = []byte("\r\n")
	lastChunk     = []byte("0\r\n\r\n")
	hdrCL         = []byte("Content-Length: ")
	hdrChunked    = []byte("Transfer-Encoding: chunked\r\n")
	hdrClose      = []byte("Connection: close\r\n")
	hdrKeepAlive  = []byte("Connection: keep-alive\r\n")
	hdrTextPlain  = []byte("Content-Type: text/plain; charset=utf-8\r\n")
	errorBodyText = [...]string{400: "400 Bad Request", 413: "413 Request Entity Too Large"}
)

// Flush sends the head now (if it is not sent yet) with what the body
// has so far; the body then streams (chunked unless a Content-Length was
// set). The bytes leave at the end of the reactor's loop iteration.
func (w *Response) Flush() error {
	if w.ended {
		return ErrResponseEnded
	}
	if w.committed {
		return nil
	}
	return w.commit(false)
}

// End completes the response: the head if not sent yet (with a
// Content-Length when the body was kept back whole), the last chunk of a
// chunked body. The connection then serves its next request, or closes.
// A body shorter than a Content-Length set by the handler fails with
// ErrContentLength and closes the connection. End is called for the
// handler when ServeHTTP1 returns (see Handler); calling it again returns
// ErrResponseEnded.
func (w *Response) End() error {
	if w.ended || !w.active {
		return ErrResponseEnded
	}
	cn := w.cn
	var err error
	switch {
	case cn.in == inClosed || cn.c.Closed():
		err = reactor.ErrConnClosed
	case !w.committed:
		err = w.commit(true)
		if err == nil && w.chunked && !w.head {
			err = w.lastChunk()
		}
	case w.chunked && !w.head:
		err = w.lastChunk()
	}
	if err == nil && w.clen >= 0 && w.written < w.clen && !w.head && bodyAllowed(w.status) {
		err = ErrContentLength
	}
	w.ended = true
	w.active = false
	w.releaseBuf()
	if err != nil && cn.in != inClosed {
		// The response cannot be completed: the client must see the
		// connection end rather than wait for the rest.
		cn.closeAfter = true
		if err == ErrContentLength {
			cn.closeConn()
		} else {
			cn.abort()
		}
		return err
	}
	cn.advance()
	return err
}

// lastChunk ends a chunked body, with the trailers added.
func (w *Response) lastChunk() error {
	if len(w.trailer) == 0 {
		_, err := w.cn.c.Write(lastChunk)
		return err
	}
	b := append(w.trailer[:0:0], "0\r\n"...)
	b = append(b, w.trailer...)
	b = append(b, crlf...)
	_, err := w.cn.c.Write(b)
	return err
}

// Ended reports whether End ran.
func (w *Response) Ended() bool { return w.ended }

// Committed reports whether the head has been sent.
func (w *Response) Committed() bool { return w.committed }

// Buffered returns the connection's unsent output in bytes: a producer
// writing a long body can hold back while it is high.
func (w *Response) Buffered() int { return w.cn.c.Buffered() }

// WhenWritable runs fn once the connection can take more output: at the
// end of the current loop iteration if its unsent output is within the
// reactor's WriteHighWater, else once it has drained to WriteLowWater.
// It is for a handler producing a long body itself: write until
// Buffered() goes over the high-water mark (or Write returns
// ErrOutputFull), then continue in fn. fn runs on the reactor as a
// callback of this response (what it writes is sent as after a handler
// call), once, and not at all if the response ends or the connection
// closes first. A later call replaces a pending fn. The response must be
// detached (see Detach), or it ends when the current callback returns.
// A function value made once costs no allocation. Loop-only.
func (w *Response) WhenWritable(fn func(w *Response, r *Request)) { w.cn.whenWritable(fn) }

// Detach keeps the response open after the current callback returns: it
// ends only at End. Use it to answer later, from another goroutine
// through the returned Handle's Post. The connection reads nothing more
// until the response ends (a streamed body the handler took keeps
// flowing to its BodyHandler).
func (w *Response) Detach() Handle {
	w.detached = true
	return Handle{cn: w.cn, c: w.cn.c, seq: w.seq}
}

// Handle refers to one response, for code outside the handler's
// callbacks. Unlike a *Response it never reaches another request's
// response.
type Handle struct {
	cn  *conn
	c   *reactor.Conn
	seq uint32
}

// Post runs fn with the response and its request on their reactor, unless the response has
// ended or the connection closed by then (fn then does not run). After
// fn returns, body bytes it wrote are sent as for a handler callback. It
// never blocks: it returns reactor.ErrInboxFull when the reactor's inbox
// is full (try again) and an error wrapping net.ErrClosed when the
// connection has closed. It allocates (the queued function). Safe for
// concurrent use.
func (h Handle) Post(fn func(w *Response, r *Request)) error {
	cn, seq := h.cn, h.seq
	return h.c.Post(func(c *reactor.Conn) { cn.runPosted(c, seq, fn) })
}

// Response returns the response if it has not ended and its connection
// is open, else nil. Loop-only: for code on the same reactor (a function
// run by Post on another connection, say) that wants to write to it;
// call Flush afterwards, since no handler callback returns to send it.
func (h Handle) Response() *Response {
	cn := h.cn
	if cn == nil || cn.c != h.c || cn.resp.seq != h.seq || cn.resp.ended || cn.in == inClosed {
		return nil
	}
	return &cn.resp
}

// commit sends the head, with the body kept back so far. final: the
// response ends now, so a kept-back body gets its Content-Length.
func (w *Response) commit(final bool) error {
	cn := w.cn
	req := &cn.req
	b := w.ensureBuf()
	out := appendStatusLine(b.out[:0], req.minor, w.status)
	if !w.hasDate {
		out = append(out, cn.ls.date.get(cn.ls.r.Now())...)
	}
	out = append(out, b.hdr...)
	closeDelimited := false
	switch {
	case !bodyAllowed(w.status):
	case w.clen >= 0:
		out = appendContentLength(out, w.clen)
	case final && !(w.head && w.written == 0) && !(w.wantTrailer && req.minor >= 1 && !w.head):
		out = appendContentLength(out, w.written)
	case w.head:
		// A HEAD response not ended within its handler call: its
		// length is unknown, and it has no body to frame.
	case req.minor >= 1:
		out = append(out, hdrChunked...)
		w.chunked = true
	default:
		closeDelimited = true
	}
	if cn.keepAliveAfter(closeDelimited || w.closeReq) {
		if req.minor == 0 {
			out = append(out, hdrKeepAlive...)
		}
	} else {
		cn.closeAfter = true
		if req.minor >= 1 {
			out = append(out, hdrClose...)
		}
	}
	out = append(out, crlf...)
	if len(b.body) > 0 && !w.head {
		if w.chunked {
			out = strconv.AppendUint(out, uint64(len(b.body)), 16)
			out = append(out, crlf...)
			out = append(out, b.body...)
			out = append(out, crlf...)
		} else {
			out = append(out, b.body...)
		}
	}
	b.out = out
	w.committed = true
	_, err := cn.c.Write(out)
	w.releaseBuf()
	return err
}

func appendContentLength(b []byte, n int64) []byte {
	b = append(b, hdrCL...)
	b = strconv.AppendInt(b, n, 10)
	return append(b, crlf...)
}

// bodyAllowed reports whether a response with this status has a body
// (RFC 9110 section 6.4.1).
func bodyAllowed(status int) bool {
	return status != 204 && status != 304 && status >= 200
}

// ensureBuf takes a buffer from the reactor's pool if w has none.
func (w *Response) ensureBuf() *respBuf {
	if w.buf == nil {
		w.buf = w.cn.ls.getBuf()
	}
	return w.buf
}

func (w *Response) releaseBuf() {
	if w.buf != nil {
		w.cn.ls.putBuf(w.buf)
		w.buf = nil
	}
}

// afterCallback sends body bytes a callback wrote to a response it did
// not end: the head goes first, and the body continues streamed.
func (w *Response) afterCallback() error {
	if w.active && !w.ended && !w.committed && w.buf != nil && len(w.buf.body) > 0 {
		return w.commit(false)
	}
	return nil
}

// writeErrorBody answers a request whose body failed, for a handler that
// wrote nothing.
func (w *Response) writeErrorBody(code int) {
	w.status = code
	w.ensureBuf().hdr = append(w.buf.hdr, hdrTextPlain...)
	_, _ = w.WriteString(errorBodyText[code])
}

// stringBytes returns the bytes of s without copying. The result must
// only be read, and not kept: every caller copies from it (the reactor's
// Write, the response buffers).
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
