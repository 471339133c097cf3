package http1

// Handler serves requests inline on the connection's reactor. ServeHTTP1
// runs when a request's head has arrived (and, for a buffered body, the
// body too). It must not block: every connection of the reactor waits
// while it runs. Hand slow work to another goroutine with Response.Detach
// and come back with Handle.Post.
//
// The response ends when ServeHTTP1 returns, unless the handler took the
// body with Request.ReadBody (it then ends when the body's last OnBody
// returns) or called Response.Detach (it then ends at Response.End).
// Responses leave in request order: the next request on the connection is
// not read until this one's response has ended.
type Handler interface {
	ServeHTTP1(w *Response, r *Request)
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(w *Response, r *Request)

// ServeHTTP1 calls f.
func (f HandlerFunc) ServeHTTP1(w *Response, r *Request) { f(w, r) }

// BodyHandler receives a request body taken with Request.ReadBody. OnBody
// runs on the reactor, must not block, and gets the body in pieces: chunk
// is valid only during the call. The last call has err == io.EOF (chunk
// may hold the last bytes) or, when the body ends badly, another error:
// ErrMalformedBody (bad chunked framing), ErrBodyTooLarge, ErrBodyGone,
// or the reason the connection closed (io.ErrUnexpectedEOF when the
// client hung up mid-body, reactor.ErrReadTimeout after BodyTimeout,
// reactor.ErrServerClosed). After an error other than io.EOF the
// connection closes once the response is sent; if the handler has not
// started a response by then, the server answers 400 (or 413) itself.
type BodyHandler interface {
	OnBody(w *Response, r *Request, chunk []byte, err error)
}

// BodyFunc adapts a function to a BodyHandler. A function value that
// captures nothing (or is made once) costs no allocation per request.
type BodyFunc func(w *Response, r *Request, chunk []byte, err error)

// OnBody calls f.
func (f BodyFunc) OnBody(w *Response, r *Request, chunk []byte, err error) { f(w, r, chunk, err) }
