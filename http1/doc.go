// Package http1 serves HTTP/1.1 on gyre's reactors, with two faces:
//
//   - the native API (Handler, Request, Response): the handler runs
//     inline on the reactor, the request is a zero-copy view of the
//     receive buffer, the response is written straight into the
//     connection's output, and the steady state allocates nothing;
//   - NetHTTP: any net/http Handler (ServeMux, chi, gorilla/mux, gin's
//     Engine), each request on a goroutine from a bounded pool, with
//     Request.Body streamed from the reactor with a bound.
//
// Both run on a Server, whose Config (zero value valid) holds the limits,
// timeouts and the reactor.Config for the engine and reactors. See
// docs/http.md for when to use which, every limit and its default, the
// deliberate differences from net/http and what is not done yet.
//
// # The native API
//
// ServeHTTP1 runs when a request's head has arrived, and for a body with
// a Content-Length up to Config.BufferBody, once the body has too
// (Request.Body). It must not block. The head, and a buffered body, are
// valid only during the call. Larger and chunked bodies stream: the
// handler takes them with Request.ReadBody, and until it does the server
// does not read them (TCP holds the client back), which also decides
// whether "100 Continue" is sent. The response ends when ServeHTTP1
// returns, when the last body piece's OnBody returns if the handler took
// the body, or at Response.End if the handler detached it (to answer from
// another goroutine through Handle.Post). The next request on a
// connection is read once the response has ended, so pipelined responses
// leave in order. When a connection's unsent output goes over the
// reactor's WriteHighWater, the reactor stops reading from it until it
// drains to WriteLowWater.
//
// Responses get a Content-Length when the handler ends them within
// Config.ResponseBuffer bytes of body (or declares one), else a chunked
// body (HTTP/1.1) or one delimited by closing (HTTP/1.0). The server adds
// Date, and Connection when needed. HEAD responses carry the head a GET
// would and no body.
//
// # Framing
//
// Request framing follows RFC 9112 and refuses what could be smuggled:
// Content-Length together with Transfer-Encoding, differing or malformed
// Content-Length, a transfer coding other than chunked, malformed chunk
// sizes, lines or extensions, obs-fold, whitespace before a colon, bare
// CR, an oversized request line (414), head (431) or field count (431).
// Each refusal is answered and the connection closed. Where net/http's
// server answers differently on purpose it is listed in docs/http.md; a
// differential test holds the rest to net/http's answers.
package http1
