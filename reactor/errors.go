package reactor

import (
	"errors"
	"fmt"
	"net"
)

// Errors a handler or caller may branch on. Every error about a closed
// connection or reactor satisfies errors.Is(err, net.ErrClosed).
var (
	// ErrServerClosed is the close cause of connections ended by Shutdown or
	// Close, and what Wait returns after a clean stop.
	ErrServerClosed = fmt.Errorf("reactor: server closed: %w", net.ErrClosed)
	// ErrConnClosed is returned by operations on a closed connection.
	ErrConnClosed = fmt.Errorf("reactor: connection closed: %w", net.ErrClosed)
	// ErrIdleTimeout: no byte was received or sent for Config.IdleTimeout.
	ErrIdleTimeout = errors.New("reactor: idle timeout")
	// ErrReadTimeout: the connection was closed at the time set with
	// Conn.SetReadTimeoutAt.
	ErrReadTimeout = errors.New("reactor: read timeout: connection closed")
	// ErrWriteTimeout: the connection was closed because output was still
	// unsent at the time set with Conn.SetWriteTimeoutAt.
	ErrWriteTimeout = errors.New("reactor: write timeout: connection closed with output unsent")
	// ErrFlushTimeout: a closing connection could not flush its output
	// within Config.FlushTimeout.
	ErrFlushTimeout = errors.New("reactor: flush on close timed out")
	// ErrInputLimit: the handler left more than Config.MaxInput bytes
	// unconsumed.
	ErrInputLimit = errors.New("reactor: unconsumed input over MaxInput")
	// ErrOutputFull: a write would take the connection's unsent output over
	// Config.MaxOutput. Nothing of that write was queued.
	ErrOutputFull = errors.New("reactor: output over MaxOutput")
	// ErrInboxFull: the reactor's inbox is at Config.InboxSize; the call
	// had no effect and may be retried.
	ErrInboxFull = errors.New("reactor: inbox full")
)

// opError wraps a socket error the way package net does.
func opError(op string, c *Conn, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
