package main

import "bytes"

// Copied from cmd/gyre-echo/proto.go (a main package cannot be imported):
// the same request counting and the same fixed response, so every server
// in the comparison does the same work per request.

// httpResponse is the fixed answer of -mode http.
var httpResponse = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!")

var headerEnd = []byte("\r\n\r\n")

// completeRequests counts the complete HTTP/1.1 requests at the start of b
// (requests without bodies, as wrk sends) and returns how many bytes they
// span. Both backends use it, so they do the same work per request.
func completeRequests(b []byte) (n, consumed int) {
	for {
		i := bytes.Index(b[consumed:], headerEnd)
		if i < 0 {
			return n, consumed
		}
		consumed += i + len(headerEnd)
		n++
	}
}
