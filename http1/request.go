package http1

import (
	"bytes"
	"net"

	"github.com/gyre-io/gyre/reactor"
)

// Request is a zero-copy view of one request. Its methods are loop-only
// (call them from the handler's callbacks on the reactor).
//
// The head (MethodBytes, Target, Path, RawQuery, Host, Header and the
// fields) and a buffered Body are slices of the connection's receive
// buffer: valid only until ServeHTTP1 returns. Copy what must outlive the
// call. The scalar facts (Method, ProtoMinor, ContentLength, Chunked,
// KeepAlive) stay valid until the response ends. A Request is reused for
// the connection's next request.
type Request struct {
	cn *conn

	method  string // interned for the common methods
	methodB []byte
	target  []byte
	path    []byte
	query   []byte
	host    []byte
	fields  []field // in the reactor's field array
	body    []byte  // a buffered body, during ServeHTTP1
	value   any     // SetValue's

	contentLength  int64 // -1: none (no body, or chunked)
	minor          uint8 // 0 or 1 (HTTP/1.2-1.9 are served as 1.1)
	chunked        bool
	keepAlive      bool // the client allows keep-alive
	expectContinue bool // Expect: 100-continue on a request with a body (HTTP/1.1)
	buffered       bool // the body was read whole before the handler ran
}

// Method returns the method. The common ones (GET, HEAD, POST, PUT,
// DELETE, CONNECT, OPTIONS, TRACE, PATCH) cost no allocation; others are
// copied once per request.
func (r *Request) Method() string { return r.method }

// MethodBytes returns the method as it appeared in the request line.
func (r *Request) MethodBytes() []byte { return r.methodB }

// Target returns the request target as sent: "/path?query" usually, an
// absolute URI through proxies, "*" for OPTIONS, "host:port" for CONNECT.
func (r *Request) Target() []byte { return r.target }

// Path returns the target's path, still percent-encoded ("/" for an
// absolute URI without one; nil for CONNECT's authority form).
func (r *Request) Path() []byte { return r.path }

// RawQuery returns the target's query without the "?", still encoded.
func (r *Request) RawQuery() []byte { return r.query }

// QueryValue returns the raw (still percent-encoded) value of the first
// query parameter named name, and whether there was one. A parameter
// without "=" has an empty value.
func (r *Request) QueryValue(name string) ([]byte, bool) {
	q := r.query
	for len(q) > 0 {
		var kv []byte
		if i := bytes.IndexByte(q, '&'); i >= 0 {
			kv, q = q[:i], q[i+1:]
		} else {
			kv, q = q, nil
		}
		k, v := kv, []byte(nil)
		if i := bytes.IndexByte(kv, '='); i >= 0 {
			k, v = kv[:i], kv[i+1:]
		}
		if string(k) == name {
			if v == nil {
				v = kv[len(kv):]
			}
			return v, true
		}
	}
	return nil, false
}

// ProtoMinor returns 0 for HTTP/1.0 and 1 for HTTP/1.1.
func (r *Request) ProtoMinor() int { return int(r.minor) }

// Host returns the Host field's value (nil if none).
func (r *Request) Host() []byte { return r.host }

// Header returns the value of the first field named name (compared
// ignoring ASCII case), or nil. It does not allocate.
func (r *Request) Header(name string) []byte {
	for i := range r.fields {
		f := &r.fields[i]
		if len(f.name) == len(name) && equalFoldBytesString(f.name, name) {
			return f.value
		}
	}
	return nil
}

// NumHeaders returns the number of header fields.
func (r *Request) NumHeaders() int { return len(r.fields) }

// HeaderAt returns the i-th header field, in the order received.
func (r *Request) HeaderAt(i int) (name, value []byte) {
	f := &r.fields[i]
	return f.name, f.value
}

// Trailer returns the value of the first trailer field named name
// (compared ignoring ASCII case) that came after a chunked body, or nil.
// Trailers are known once the body has ended (the BodyHandler's call with
// io.EOF) and stay until the response ends.
func (r *Request) Trailer(name string) []byte {
	var found []byte
	r.Trailers(func(n, v []byte) bool {
		if len(n) == len(name) && equalFoldBytesString(n, name) {
			found = v
			return false
		}
		return true
	})
	return found
}

// Trailers calls fn for each trailer field, in the order received, until
// fn returns false. The slices are valid until the response ends.
func (r *Request) Trailers(fn func(name, value []byte) bool) {
	if !r.chunked {
		return
	}
	for t := r.cn.dec.trailer; len(t) > 0; {
		nl := bytes.IndexByte(t, '\n')
		line := t[:nl]
		t = t[nl+1:]
		colon := bytes.IndexByte(line, ':')
		if !fn(line[:colon], trimOWS(line[colon+1:])) {
			return
		}
	}
}

// ContentLength returns the body's declared length: -1 when chunked,
// 0 when the request has no body.
func (r *Request) ContentLength() int64 {
	if r.chunked {
		return -1
	}
	return max(r.contentLength, 0)
}

// Chunked reports whether the body uses the chunked transfer coding.
func (r *Request) Chunked() bool { return r.chunked }

// HasBody reports whether the request has a body (chunked, or a
// Content-Length above zero).
func (r *Request) HasBody() bool { return r.chunked || r.contentLength > 0 }

// KeepAlive reports whether the client allows the connection to serve
// another request after this one.
func (r *Request) KeepAlive() bool { return r.keepAlive }

// Body returns the whole body when the server read it before calling the
// handler (a Content-Length up to Config.BufferBody), else nil: use
// ReadBody, which works for both. Valid until ServeHTTP1 returns.
func (r *Request) Body() []byte { return r.body }

// Buffered reports whether the body was read whole before the handler
// ran (Body holds it). A request without a body counts as buffered.
func (r *Request) Buffered() bool { return r.buffered }

// ReadBody takes the body: h.OnBody receives it, in pieces valid during
// each call, the last with err == io.EOF (or another error if the body
// ends badly). Called during ServeHTTP1 (the usual case), OnBody does not
// run inside ReadBody: pieces already received follow when ServeHTTP1
// returns, the rest as it arrives.
//
// Until a streamed body is taken, the server does not read it (TCP flow
// control holds the client back); with Expect: 100-continue, ReadBody is
// what sends "100 Continue". ReadBody may also be called later, from a
// function run on the loop (Handle.Post) while the response is open: a
// streamed body then starts flowing at the end of the loop iteration. A
// buffered body was only valid during ServeHTTP1: OnBody then runs at
// once, inside ReadBody, with ErrBodyGone (or io.EOF for a request without
// a body). The response ends when the last OnBody returns, unless the
// handler called Response.Detach. Calling ReadBody again replaces h.
func (r *Request) ReadBody(h BodyHandler) { r.cn.takeBody(h) }

// PauseBody stops reading the body (and the connection) until ResumeBody:
// for a handler that cannot take more for now.
func (r *Request) PauseBody() { r.cn.setPause(pauseUser) }

// ResumeBody undoes PauseBody. Pieces that arrived meanwhile follow at
// the end of the loop iteration.
func (r *Request) ResumeBody() { r.cn.clearPause(pauseUser) }

// SetValue attaches v to the request, for the handler's own callbacks
// (OnBody, functions run by Handle.Post): per-request state without a
// closure. It is dropped when the next request starts. Storing a pointer
// does not allocate.
func (r *Request) SetValue(v any) { r.value = v }

// Value returns what SetValue stored for this request, or nil.
func (r *Request) Value() any { return r.value }

// Conn returns the connection, for its addresses, ID and reactor. Writing
// to it directly bypasses the response framing: do not.
func (r *Request) Conn() *reactor.Conn { return r.cn.c }

// RemoteAddr returns the client's address.
func (r *Request) RemoteAddr() net.Addr { return r.cn.c.RemoteAddr() }

// clearHead forgets the views into the receive buffer once the handler
// call that could use them has returned.
func (r *Request) clearHead() {
	r.methodB, r.target, r.path, r.query, r.host = nil, nil, nil, nil, nil
	r.fields = nil
	r.body = nil
}

// equalFoldBytesString compares b and s ignoring ASCII case.
func equalFoldBytesString(b []byte, s string) bool {
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
