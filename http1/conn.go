package http1

import (
	"errors"
	"io"
	"runtime/debug"
	"time"

	"github.com/gyre-io/gyre/reactor"
)

// A connection serves one request at a time: its input is in one of the
// states below, and the next head is only parsed once the current
// response has ended (so responses leave in request order).
const (
	inHead   uint8 = iota // reading a request head (the previous response ended)
	inBody                // a streamed body is arriving: to the BodyHandler, or discarded after the response ended
	inDone                // the request is read whole; its response has not ended
	inClosed              // closing or closed: input is dropped
)

// Why reading is paused (reactor.Conn.PauseReading): reading resumes when
// no reason is left.
const (
	pauseUntaken uint8 = 1 << iota // a streamed body the handler has not taken
	pauseWait                      // the request is read; its response has not ended
	pauseUser                      // Request.PauseBody
)

// conn is the per-connection state. Everything is loop-only. conns are
// pooled per reactor (see loopState), so a connection's setup costs no
// allocation in steady state either.
type conn struct {
	c  *reactor.Conn
	ls *loopState

	req  Request
	resp Response
	seq  uint32 // requests served; Handles compare it

	in    uint8
	pause uint8
	scan  headScan
	// The pending request head: headLen and waitLen are set while a
	// buffered body is awaited (the head stays unconsumed in the input
	// so head and body are one view).
	headLen, waitLen int
	partial          bool  // bytes of the next request are pending
	headAt           int64 // first byte of the pending head (or the connection's start); loopState.now
	bodyAt           int64 // the head of a buffered body was complete; loopState.now
	rdl              int64 // the read deadline set on c; loopState.now

	// The streamed body.
	bh          BodyHandler
	bodyLeft    int64 // Content-Length bytes not yet read
	bodyRead    int64
	dec         chunkDecoder
	discardLeft int64

	taken        bool // the handler called ReadBody
	bodyDone     bool // the body has been read whole (or failed)
	sentContinue bool
	closeAfter   bool // close once the response has ended
	draining     bool // the server is shutting down
	pressured    bool // the reactor stopped reading for output backpressure
	resumeAsked  bool

	resumeFn func() // conn.resume, made once

	// Response.WhenWritable's function, for the response numbered
	// writableSeq; writableRun (conn.runWritable) is made once.
	writable      func(*Response, *Request)
	writableSeq   uint32
	writableAsked bool
	writableRun   func()

	// obs hears about the current request's connection (the net/http
	// face's worker waiting on it); cleared when a request starts.
	obs observer

	// upgradeTo takes the connection over once the handler call that
	// called Response.Upgrade returns (switchProtocol).
	upgradeTo reactor.Handler
}

// observer is told when output that went over the high-water mark has
// drained, and when the connection closes. Loop-only.
type observer interface {
	drained()
	closed(cause error)
	peerGone() // the client shut down its sending side; the connection stays writable
}

// loopState is a reactor's share of the server: scratch that handler
// calls on that reactor use one at a time. Loop-only.
type loopState struct {
	s      *Server
	lim    *limits
	r      *reactor.Reactor
	epoch  time.Time // the origin of now's clock
	fields []field   // the head fields of the request being served
	bufs   []*respBuf
	conns  []*conn // closed conns for reuse
	closed []*conn // closed in this iteration; pooled at its end
	date   dateCache

	freeAsked bool
	freeFn    func()
}

const maxPooledBuf = 256 << 10

// now is the reactor's clock in nanoseconds since epoch, at least 1 (0
// means "not set" in the fields that hold it): 8 bytes per timestamp
// instead of a time.Time's 24.
func (ls *loopState) now() int64 {
	if ls.epoch.IsZero() {
		ls.epoch = ls.r.Now()
	}
	return max(1, int64(ls.r.Now().Sub(ls.epoch)))
}

// at turns a now value back into a time.
func (ls *loopState) at(ns int64) time.Time { return ls.epoch.Add(time.Duration(ns)) }

func (ls *loopState) getBuf() *respBuf {
	if n := len(ls.bufs); n > 0 {
		b := ls.bufs[n-1]
		ls.bufs = ls.bufs[:n-1]
		return b
	}
	return &respBuf{}
}

func (ls *loopState) putBuf(b *respBuf) {
	if cap(b.body) > maxPooledBuf || cap(b.out) > maxPooledBuf || cap(b.hdr) > maxPooledBuf {
		return // a rare large response: let it go
	}
	b.hdr, b.body, b.out = b.hdr[:0], b.body[:0], b.out[:0]
	ls.bufs = append(ls.bufs, b)
}

func (ls *loopState) getConn() *conn {
	if n := len(ls.conns); n > 0 {
		cn := ls.conns[n-1]
		ls.conns = ls.conns[:n-1]
		return cn
	}
	cn := &conn{ls: ls}
	cn.req.cn = cn
	cn.resp.cn = cn
	cn.resumeFn = cn.resume
	cn.writableRun = cn.runWritable
	return cn
}

// release pools cn once the loop iteration in which it closed is over:
// callbacks further up the stack may still look at it.
func (ls *loopState) release(cn *conn) {
	ls.closed = append(ls.closed, cn)
	if !ls.freeAsked {
		ls.freeAsked = true
		ls.r.Later(ls.freeFn)
	}
}

func (ls *loopState) freeClosed() {
	ls.freeAsked = false
	for i, cn := range ls.closed {
		ls.closed[i] = nil
		cn.c, cn.bh, cn.obs, cn.writable = nil, nil, nil, nil
		cn.req.clearHead()
		cn.req.value = nil
		ls.conns = append(ls.conns, cn)
	}
	ls.closed = ls.closed[:0]
}

// open starts serving a new connection.
func (cn *conn) open(c *reactor.Conn) {
	seq := cn.seq
	*cn = conn{ls: cn.ls, c: c, seq: seq, resumeFn: cn.resumeFn, writableRun: cn.writableRun,
		req: Request{cn: cn}, resp: Response{cn: cn, seq: seq}}
	cn.resp.ended = true
	// The first request must arrive within ReadHeaderTimeout of the
	// connection (net/http starts its clock there too).
	cn.headAt = cn.ls.now()
	cn.updateDeadline()
}

// onData consumes what it can of b: requests, body pieces.
func (cn *conn) onData(b []byte) int {
	n := 0
	for cn.in != inClosed && cn.pause == 0 {
		var k int
		var more bool
		switch cn.in {
		case inHead:
			if cn.c.Buffered() > cn.ls.lim.highWater {
				// Pipelined requests while the client is not reading
				// responses: stop here; the reactor pauses reading and
				// presents the rest again once output drains.
				cn.updateDeadline()
				return n
			}
			k, more = cn.readHead(b[n:])
		case inBody:
			k, more = cn.readBody(b[n:])
		case inDone:
			cn.setPause(pauseWait)
		}
		n += k
		if !more {
			break
		}
	}
	if cn.upgradeTo != nil {
		return cn.switchProtocol(n)
	}
	if cn.in == inClosed {
		return len(b)
	}
	cn.updateDeadline()
	return n
}

// switchProtocol hands the connection to the handler Response.Upgrade
// named: the HTTP state goes back to the pool, the new handler's OnOpen
// runs, and the bytes the client sent after the request (b[n:], which the
// reactor keeps) are presented to it right after this callback. Loop-only.
func (cn *conn) switchProtocol(n int) int {
	h, rc := cn.upgradeTo, cn.c
	cn.upgradeTo = nil
	cn.obs, cn.bh, cn.writable = nil, nil, nil
	cn.pause = 0
	rc.SetReadTimeoutAt(time.Time{})
	rc.SetWriteTimeoutAt(time.Time{})
	rc.SetContext(&upgraded{h: h})
	cn.ls.release(cn)
	h.OnOpen(rc)
	rc.Reactor().Later(func() {
		if !rc.Closed() {
			rc.PauseReading() // a pause and resume present the kept input again
			rc.ResumeReading()
		}
	})
	return n
}

// upgraded is the context of a connection that switched protocols: its
// events go to the handler Response.Upgrade named.
type upgraded struct{ h reactor.Handler }

// readHead parses the request at the start of b and serves it. It
// returns the bytes consumed and whether to go on with the rest of b.
func (cn *conn) readHead(b []byte) (int, bool) {
	i := 0
	if cn.scan.from == 0 && !cn.scan.lineDone && cn.waitLen == 0 {
		// Empty lines before a request line are skipped (RFC 9112
		// section 2.2).
		for i < len(b) {
			if b[i] == '\n' {
				i++
			} else if b[i] == '\r' && i+1 == len(b) {
				return i, false // its LF may be next
			} else if b[i] == '\r' && b[i+1] == '\n' {
				i += 2
			} else {
				break
			}
		}
	}
	rest := b[i:]
	if len(rest) == 0 {
		return i, false
	}
	if !cn.partial {
		cn.partial = true
		if cn.headAt == 0 { // a new connection's clock started at open
			cn.headAt = cn.ls.now()
		}
	}
	end := cn.headLen
	if cn.waitLen > 0 {
		if len(rest) < cn.waitLen {
			return i, false
		}
	} else {
		var st int
		end, st = scanHead(rest, &cn.scan, cn.ls.lim.maxLine, cn.ls.lim.maxHead)
		if st == needMore {
			return i, false
		}
		if st != parsedOK {
			cn.refuse(st)
			return len(b), false
		}
	}
	req := &cn.req
	if st := req.parse(rest[:end], cn.ls.lim, cn.ls.fields); st != parsedOK {
		cn.refuse(st)
		return len(b), false
	}
	cn.scan = headScan{}
	if req.contentLength > 0 && cn.ls.lim.maxBody > 0 && req.contentLength > cn.ls.lim.maxBody {
		cn.refuse(413)
		return len(b), false
	}
	if !req.chunked && req.contentLength > 0 && req.contentLength <= int64(cn.ls.lim.bufferBody) {
		total := end + int(req.contentLength)
		if len(rest) < total {
			// Wait for the whole body, the head left in the input.
			if cn.waitLen == 0 {
				cn.headLen, cn.waitLen = end, total
				cn.bodyAt = cn.ls.now()
				if req.expectContinue && !cn.sentContinue {
					cn.sentContinue = true
					_, _ = cn.c.Write(continueResponse)
				}
			}
			req.clearHead()
			return i, false
		}
		cn.startRequest()
		req.body = rest[end:total]
		cn.in, cn.bodyDone = inDone, true
		cn.serve()
		return i + total, true
	}
	cn.startRequest()
	if req.chunked || req.contentLength > 0 {
		req.buffered = false
		cn.in, cn.bodyDone = inBody, false
		cn.bodyLeft = req.contentLength
		cn.dec = chunkDecoder{}
	} else {
		cn.in, cn.bodyDone = inDone, true
	}
	cn.serve()
	return i + end, true
}

// startRequest resets the per-request state once a head is accepted.
func (cn *conn) startRequest() {
	cn.seq++
	cn.partial = false
	cn.headLen, cn.waitLen = 0, 0
	cn.headAt, cn.bodyAt = 0, 0
	cn.bh, cn.taken = nil, false
	cn.bodyRead = 0
	cn.req.buffered = true
	cn.req.value = nil
	cn.obs = nil
	cn.resp.reset(cn.seq, cn.req.method == "HEAD")
}

// serve runs the handler for the request just parsed, then delivers a
// buffered body it took, then ends the response if nothing keeps it open.
func (cn *conn) serve() {
	req, w := &cn.req, &cn.resp
	cn.callServe()
	if cn.in == inClosed {
		req.clearHead()
		return
	}
	if cn.taken && cn.bh != nil && req.buffered {
		// The buffered body goes to the handler that took it while it is
		// still valid.
		cn.callBody(req.body, io.EOF)
	}
	req.clearHead()
	if cn.in == inClosed {
		return
	}
	if !w.ended && !w.detached && !(cn.taken && !cn.bodyDone) {
		_ = w.End()
	} else if err := w.afterCallback(); err != nil {
		cn.abort()
		return
	}
	cn.advance()
}

// readBody takes body bytes from b: to the BodyHandler, or dropped after
// the response ended.
func (cn *conn) readBody(b []byte) (int, bool) {
	w := &cn.resp
	discard := w.ended
	if !cn.taken && !discard {
		cn.setPause(pauseUntaken)
		return 0, false
	}
	if cn.req.chunked {
		res := cn.dec.step(b, cn.ls.lim)
		if res.err != nil {
			cn.bodyFailed(res.err)
			return len(b), false
		}
		if len(res.data) > 0 {
			cn.bodyRead += int64(len(res.data))
			if cn.ls.lim.maxBody > 0 && cn.bodyRead > cn.ls.lim.maxBody {
				cn.bodyFailed(ErrBodyTooLarge)
				return len(b), false
			}
			if discard {
				cn.discardLeft -= int64(len(res.data))
				if cn.discardLeft < 0 {
					cn.closeConn()
					return len(b), false
				}
			} else {
				cn.callBody(res.data, nil)
				if !cn.afterBodyCall(false) {
					return len(b), false
				}
			}
		}
		if res.done {
			cn.in, cn.bodyDone = inDone, true
			if discard {
				cn.advance()
			} else {
				cn.callBody(nil, io.EOF)
				cn.afterBodyCall(true)
			}
		}
		return res.n, res.n > 0 || res.done
	}
	if len(b) == 0 {
		return 0, false
	}
	take := int(min(int64(len(b)), cn.bodyLeft))
	cn.bodyLeft -= int64(take)
	cn.bodyRead += int64(take)
	last := cn.bodyLeft == 0
	if last {
		cn.in, cn.bodyDone = inDone, true
	}
	if discard {
		cn.discardLeft -= int64(take)
		if last {
			cn.advance()
		}
		return take, true
	}
	var err error
	if last {
		err = io.EOF
	}
	cn.callBody(b[:take], err)
	cn.afterBodyCall(last)
	return take, true
}

// afterBodyCall finishes an OnBody call: it sends what the callback
// wrote, and after the last piece ends the response unless the handler
// detached it. It reports whether the connection is still reading.
func (cn *conn) afterBodyCall(last bool) bool {
	if cn.in == inClosed {
		return false
	}
	w := &cn.resp
	if last && !w.ended && !w.detached {
		_ = w.End()
	} else if err := w.afterCallback(); err != nil {
		cn.abort()
		return false
	}
	cn.advance()
	return cn.in != inClosed
}

// bodyFailed ends a streamed body with err: the handler hears it, the
// server answers for a handler that had not started, and the connection
// closes after the response.
func (cn *conn) bodyFailed(err error) {
	cn.closeAfter = true
	cn.in, cn.bodyDone = inDone, true
	w := &cn.resp
	if w.ended {
		cn.closeConn()
		return
	}
	if cn.taken && cn.bh != nil {
		cn.callBody(nil, err)
		if cn.in == inClosed {
			return
		}
	}
	if !w.ended && !w.detached {
		if !w.committed && !w.touched {
			code := 400
			if errors.Is(err, ErrBodyTooLarge) {
				code = 413
			}
			w.writeErrorBody(code)
		}
		_ = w.End()
	}
	cn.advance()
}

// advance moves the connection on after its response or body changed
// state: to the next request, to discarding the rest of a body, or to
// closing.
func (cn *conn) advance() {
	if cn.in == inClosed {
		return
	}
	w := &cn.resp
	if !w.ended {
		return
	}
	if cn.closeAfter || cn.draining {
		cn.closeConn()
		return
	}
	switch cn.in {
	case inDone:
		cn.in = inHead
		cn.sentContinue = false
		cn.clearPause(pauseWait | pauseUntaken | pauseUser)
	case inBody:
		// The response ended before the body did: read the rest and drop
		// it, within MaxDiscard.
		if cn.ls.lim.maxDiscard < 0 || (!cn.req.chunked && cn.bodyLeft > cn.ls.lim.maxDiscard) ||
			(cn.req.expectContinue && !cn.sentContinue) {
			cn.closeConn()
			return
		}
		cn.discardLeft = cn.ls.lim.maxDiscard
		cn.clearPause(pauseUntaken | pauseUser)
	}
}

// keepAliveAfter decides, when the head is sent, whether the connection
// serves another request after this response.
func (cn *conn) keepAliveAfter(forceClose bool) bool {
	if forceClose || cn.closeAfter || cn.draining || !cn.req.keepAlive {
		return false
	}
	if cn.in == inBody && !cn.taken {
		// The handler answers without the body: only keep the
		// connection if the rest can be read and dropped.
		switch {
		case cn.req.expectContinue && !cn.sentContinue:
			return false // the client may be waiting to send it
		case cn.ls.lim.maxDiscard < 0:
			return false
		case !cn.req.chunked && cn.bodyLeft > cn.ls.lim.maxDiscard:
			return false
		}
	}
	return true
}

// takeBody is Request.ReadBody.
func (cn *conn) takeBody(h BodyHandler) {
	if cn.in == inClosed || cn.resp.ended {
		return
	}
	cn.bh = h
	if cn.taken {
		return
	}
	cn.taken = true
	req := &cn.req
	switch {
	case req.buffered && req.body == nil && req.HasBody():
		// ReadBody after ServeHTTP1 returned: the buffered body is gone.
		cn.callBody(nil, ErrBodyGone)
	case req.buffered:
		if !cn.inServe() {
			cn.callBody(nil, io.EOF) // no body; called after ServeHTTP1
		}
	default:
		if req.expectContinue && !cn.sentContinue && !cn.resp.committed {
			cn.sentContinue = true
			_, _ = cn.c.Write(continueResponse)
		}
		cn.clearPause(pauseUntaken)
	}
}

// inServe reports whether ServeHTTP1 is running for the current request
// (the head is still in view).
func (cn *conn) inServe() bool { return cn.req.methodB != nil }

// refuse answers a request the server will not serve and closes.
func (cn *conn) refuse(code int) {
	resp := errorResponses[code]
	if resp == nil {
		resp = errorResponses[400]
	}
	_, _ = cn.c.Write(resp)
	cn.closeConn()
}

func (cn *conn) closeConn() {
	if cn.in == inClosed {
		return
	}
	cn.in = inClosed
	_ = cn.c.Close()
}

func (cn *conn) abort() {
	if cn.in == inClosed {
		return
	}
	cn.in = inClosed
	cn.c.Abort()
}

func (cn *conn) setPause(bit uint8) {
	if cn.in == inClosed {
		return
	}
	if cn.pause == 0 {
		cn.c.PauseReading()
	}
	cn.pause |= bit
}

// clearPause drops reasons to pause; reading resumes at the end of the
// loop iteration (not here: resuming presents kept input, which would run
// handler code inside whichever callback called this).
func (cn *conn) clearPause(bits uint8) {
	if cn.pause&bits == 0 || cn.in == inClosed {
		return
	}
	cn.pause &^= bits
	if cn.pause == 0 && !cn.resumeAsked {
		cn.resumeAsked = true
		cn.ls.r.Later(cn.resumeFn)
	}
}

func (cn *conn) resume() {
	cn.resumeAsked = false
	if cn.pause != 0 || cn.in == inClosed || cn.c == nil || cn.c.Closed() {
		return
	}
	cn.c.ResumeReading() // runs onData for input kept meanwhile
	cn.updateDeadline()
}

// updateDeadline sets the connection's read deadline for its state: the
// head timeout while a head is pending, the body timeout while a body is
// awaited, the idle timeout between requests, none while reading is
// paused (the handler or the client's reading decides then).
func (cn *conn) updateDeadline() {
	if cn.in == inClosed || cn.c == nil {
		return
	}
	var t int64 // loopState.now; 0: no deadline
	ls := cn.ls
	l := ls.lim
	switch {
	case cn.pause != 0 || cn.pressured:
	case cn.in == inHead && cn.waitLen > 0:
		if l.bodyTimeout > 0 {
			t = cn.bodyAt + int64(l.bodyTimeout)
		}
	case cn.in == inHead && cn.headAt != 0:
		if l.headerTimeout > 0 {
			t = cn.headAt + int64(l.headerTimeout)
		}
	case cn.in == inHead:
		if l.idleTimeout > 0 {
			t = ls.now() + int64(l.idleTimeout)
		}
	case cn.in == inBody:
		if l.bodyTimeout > 0 {
			t = ls.now() + int64(l.bodyTimeout)
		}
	}
	if t != cn.rdl {
		cn.rdl = t
		if t == 0 {
			cn.c.SetReadTimeoutAt(time.Time{})
		} else {
			cn.c.SetReadTimeoutAt(ls.at(t))
		}
	}
}

// onPressure: the reactor stopped (or resumed) reading because unsent
// output crossed the watermarks.
func (cn *conn) onPressure(paused bool) {
	if cn.in == inClosed {
		return
	}
	cn.pressured = paused
	if !paused && cn.obs != nil {
		cn.obs.drained()
	}
	if !paused && cn.writable != nil && !cn.writableAsked {
		cn.writableAsked = true
		cn.ls.r.Later(cn.writableRun)
	}
	if l := cn.ls.lim.slowReader; l > 0 {
		if paused {
			cn.c.SetWriteTimeoutAt(cn.ls.r.Now().Add(l))
		} else {
			cn.c.SetWriteTimeoutAt(time.Time{})
		}
	}
	cn.updateDeadline()
}

// onShutdown: the server is draining. An idle connection closes now; one
// with a request in progress closes after its response.
func (cn *conn) onShutdown() {
	cn.draining = true
	if cn.in == inHead && !cn.partial && cn.waitLen == 0 && cn.resp.ended {
		cn.closeConn()
	}
}

// onPeerFIN: the client shut down its sending side (TCP half-close). A
// request whose head and body were read whole still gets its response, as
// with net/http (whose handler's context is cancelled as well): the
// connection stays open for writing and closes once the response has
// ended. Anything else (between requests, or inside one) ends the
// connection as before.
func (cn *conn) onPeerFIN() bool {
	if cn.in == inClosed || cn.resp.ended || cn.partial || cn.waitLen > 0 || !cn.bodyDone {
		return false
	}
	cn.closeAfter = true
	if cn.obs != nil {
		cn.obs.peerGone()
	}
	return true
}

// onClose: the connection is gone. A BodyHandler still reading hears why.
func (cn *conn) onClose(cause error) {
	cn.in = inClosed
	w := &cn.resp
	if cn.taken && cn.bh != nil && !cn.bodyDone && !w.ended {
		cn.bodyDone = true
		if cause == io.EOF {
			cause = io.ErrUnexpectedEOF
		} else if cause == nil {
			cause = reactor.ErrConnClosed
		}
		cn.callBody(nil, cause)
	}
	if cn.obs != nil {
		if cause == nil {
			cause = reactor.ErrConnClosed
		}
		cn.obs.closed(cause)
		cn.obs = nil
	}
	w.active = false
	w.releaseBuf()
	cn.ls.release(cn)
}

// whenWritable is Response.WhenWritable.
func (cn *conn) whenWritable(fn func(*Response, *Request)) {
	if cn.in == inClosed || cn.resp.ended || !cn.resp.active {
		return
	}
	cn.writable, cn.writableSeq = fn, cn.resp.seq
	if !cn.pressured && cn.c.Buffered() <= cn.ls.lim.highWater && !cn.writableAsked {
		cn.writableAsked = true
		cn.ls.r.Later(cn.writableRun)
	}
	// Otherwise onPressure runs it once the output has drained.
}

// runWritable runs the WhenWritable function, at the end of a loop
// iteration (not inside the callback that asked, nor inside the
// reactor's send completion).
func (cn *conn) runWritable() {
	cn.writableAsked = false
	fn := cn.writable
	if fn == nil {
		return
	}
	w := &cn.resp
	if cn.in == inClosed || w.ended || w.seq != cn.writableSeq {
		cn.writable = nil
		return
	}
	if cn.pressured {
		return // the output went over the mark again meanwhile: wait
	}
	cn.writable = nil
	cn.callPosted(fn)
	if cn.in == inClosed {
		return
	}
	if err := w.afterCallback(); err != nil {
		cn.abort()
		return
	}
	cn.updateDeadline()
}

// runPosted runs a Handle.Post function.
func (cn *conn) runPosted(c *reactor.Conn, seq uint32, fn func(*Response, *Request)) {
	w := &cn.resp
	if cn.c != c || w.seq != seq || w.ended || cn.in == inClosed {
		return
	}
	cn.callPosted(fn)
	if cn.in == inClosed {
		return
	}
	if err := w.afterCallback(); err != nil {
		cn.abort()
		return
	}
	cn.updateDeadline()
}

// The calls into handler code. A panic is logged and aborts the
// connection, as net/http does; the reactor goes on.

func (cn *conn) callServe() {
	defer cn.recoverPanic()
	cn.ls.s.Handler.ServeHTTP1(&cn.resp, &cn.req)
}

func (cn *conn) callBody(chunk []byte, err error) {
	defer cn.recoverPanic()
	cn.bh.OnBody(&cn.resp, &cn.req, chunk, err)
}

func (cn *conn) callPosted(fn func(*Response, *Request)) {
	defer cn.recoverPanic()
	fn(&cn.resp, &cn.req)
}

func (cn *conn) recoverPanic() {
	if p := recover(); p != nil {
		cn.ls.s.log.Error("http1: handler panic; connection aborted", "conn", cn.c.ID(), "panic", p, "stack", string(debug.Stack()))
		cn.abort()
	}
}
