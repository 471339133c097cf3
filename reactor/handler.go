package reactor

import "time"

// Handler receives a connection's events. Every method runs on the
// connection's reactor goroutine and must not block: a blocked handler
// stalls every connection of that reactor. Hand slow work to another
// goroutine and come back with Conn.AsyncWrite or Conn.Post.
type Handler interface {
	// OnOpen runs once, before any OnData.
	OnOpen(c *Conn)
	// OnData runs when bytes arrive. b is a view of the receive buffer:
	// valid only until OnData returns, unless the handler calls c.Hold.
	// OnData returns how many bytes of b it consumed; the rest is kept and
	// presented again, followed by newer bytes, at the next call (up to
	// Config.MaxInput bytes). Consume every complete message each call.
	OnData(c *Conn, b []byte) (consumed int)
	// OnClose runs once, after the socket is closed. cause is nil when the
	// handler closed the connection, io.EOF when the peer did, ErrServerClosed
	// at shutdown, one of the timeout or limit errors of this package, or a
	// *net.OpError from the socket.
	OnClose(c *Conn, cause error)
}

// PressureHandler is an optional interface: a handler that implements it
// hears when a connection's unsent output crosses Config.WriteHighWater
// (paused: the runtime stops reading from the connection) and falls back
// under Config.WriteLowWater (resumed: reading starts again).
type PressureHandler interface {
	OnPressure(c *Conn, paused bool)
}

// ShutdownHandler is an optional interface: at Shutdown the runtime calls
// OnShutdown for every open connection instead of closing it, so the
// handler can say goodbye (e.g. a GOAWAY frame) and call c.Close when it is
// done. Connections still open at the shutdown deadline are closed.
type ShutdownHandler interface {
	OnShutdown(c *Conn)
}

// HalfCloseHandler is an optional interface: when the peer shuts down its
// sending side (FIN) and every byte before it has been presented to
// OnData, the runtime calls OnPeerFIN instead of closing the connection.
// Returning true keeps the connection open for writing (half-closed: no
// more OnData; Write, Close, timers and timeouts work as usual) until the
// handler calls Close, which then closes at once once the output is sent;
// false closes it as without this interface (OnClose's cause is io.EOF).
// HTTP/1.1 servers use it to answer a client that sent its request and
// shut down its side; a net.Conn's Read returns io.EOF while Write goes on.
type HalfCloseHandler interface {
	OnPeerFIN(c *Conn) (keepWriting bool)
}

// Ticker is an optional interface: OnTick runs on every reactor once at
// start and then after the delay it returns; a delay <= 0 stops ticking.
type Ticker interface {
	OnTick(r *Reactor) (next time.Duration)
}

// BaseHandler does nothing and consumes every byte. Embed it to implement
// only the methods you need.
type BaseHandler struct{}

// OnOpen does nothing.
func (BaseHandler) OnOpen(*Conn) {}

// OnData consumes and drops b.
func (BaseHandler) OnData(_ *Conn, b []byte) int { return len(b) }

// OnClose does nothing.
func (BaseHandler) OnClose(*Conn, error) {}

// HandlerFunc adapts a function to a Handler that only handles data.
type HandlerFunc func(c *Conn, b []byte) int

// OnOpen does nothing.
func (HandlerFunc) OnOpen(*Conn) {}

// OnData calls f.
func (f HandlerFunc) OnData(c *Conn, b []byte) int { return f(c, b) }

// OnClose does nothing.
func (HandlerFunc) OnClose(*Conn, error) {}

var (
	_ Handler = BaseHandler{}
	_ Handler = HandlerFunc(nil)
)
