package http1

import (
	"errors"
	"fmt"

	"github.com/gyre-io/gyre/reactor"
)

// Errors a handler or caller may branch on. Errors about a closed
// connection or server satisfy errors.Is(err, net.ErrClosed).
var (
	// ErrServerClosed is what Wait and ListenAndServe return after
	// Shutdown or Close (it is reactor.ErrServerClosed).
	ErrServerClosed = reactor.ErrServerClosed
	// ErrBodyTooLarge ends a request body that grows over
	// Config.MaxBodyBytes.
	ErrBodyTooLarge = errors.New("http1: request body over MaxBodyBytes")
	// ErrMalformedBody ends a chunked request body whose framing is
	// invalid; the error wraps it with the reason.
	ErrMalformedBody = errors.New("http1: malformed chunked request body")
	// ErrBodyGone: ReadBody was called after the handler call that had a
	// buffered body returned (the body was only valid during it).
	ErrBodyGone = errors.New("http1: request body no longer available (ReadBody after the handler call)")
	// ErrResponseEnded: a write to a response after End.
	ErrResponseEnded = errors.New("http1: response already ended")
	// ErrBodyNotAllowed: a body write to a response whose status (1xx,
	// 204, 304) has no body.
	ErrBodyNotAllowed = errors.New("http1: response status does not allow a body")
	// ErrContentLength: a write past the Content-Length the handler set,
	// or End before reaching it (the connection is then closed, so the
	// client sees a truncated body rather than a wrong one).
	ErrContentLength = errors.New("http1: body length differs from the Content-Length set")
	// ErrOutputFull is reactor.ErrOutputFull: the write would take the
	// connection's unsent output over reactor.Config.MaxOutput. Nothing
	// of it was queued.
	ErrOutputFull = reactor.ErrOutputFull
	// ErrHeadSent: an informational response after the final head went
	// out (Response.Informational).
	ErrHeadSent = errors.New("http1: the response head was sent")
	// ErrUpgrade: Response.Upgrade was called too late (the head was sent
	// or the response ended), before the request's body was read whole,
	// or while the server shuts down.
	ErrUpgrade = errors.New("http1: cannot switch protocols now")
)

var (
	errChunkLine   = fmt.Errorf("%w: chunk line over 4 KiB", ErrMalformedBody)
	errChunkLF     = fmt.Errorf("%w: chunk line not ended by CRLF", ErrMalformedBody)
	errChunkSize   = fmt.Errorf("%w: invalid chunk size or extension", ErrMalformedBody)
	errChunkExcess = fmt.Errorf("%w: too much chunk framing for the data", ErrMalformedBody)
	errChunkEnd    = fmt.Errorf("%w: chunk data not followed by CRLF", ErrMalformedBody)
	errTrailer     = fmt.Errorf("%w: invalid trailer field", ErrMalformedBody)
	errTrailerSize = fmt.Errorf("%w: trailer section over MaxHeaderBytes or MaxHeaders", ErrMalformedBody)
)
