// Package reactor runs event loops on io_uring: each Reactor is a goroutine
// locked to one OS thread (optionally pinned to a CPU) with its own ring,
// its own provided-buffer ring and its own connection table. Handlers run
// on the reactor; other goroutines reach a connection only through the
// reactor's inbox (Conn.AsyncWrite, Conn.Post, Conn.Close).
//
// A Group is a set of reactors sharing one Handler; package acceptor feeds
// it connections. See the package example for a complete server.
//
// # Receiving
//
// Each connection has one multishot receive in flight: the kernel picks a
// buffer from the reactor's buffer ring for every chunk it receives and
// posts a completion. OnData gets a view of that buffer (zero copy); the
// buffer returns to the kernel when OnData returns, unless the handler
// calls Conn.Hold. What OnData leaves unconsumed is copied aside (bounded
// by Config.MaxInput) and presented again, followed by newer bytes. When
// the buffer ring runs dry, the kernel ends the receive with ENOBUFS; the
// reactor re-arms it as soon as buffers come back. No byte is lost or
// reordered: the unread bytes wait in the socket.
//
// # Sending
//
// Conn.Write copies into the connection's output buffer. At the end of the
// loop iteration, everything written to a connection leaves in one send.
// Partial sends resume where they stopped. Above Config.WriteHighWater
// unsent bytes the reactor stops receiving from that connection until the
// output falls to Config.WriteLowWater (PressureHandler hears about both);
// Write refuses data past Config.MaxOutput with ErrOutputFull.
//
// # Timers
//
// Idle timeouts, read and write deadlines and the Ticker run on a timer
// heap per reactor, woken by an io_uring TIMEOUT: no goroutine or runtime
// timer per connection.
//
// # Shutdown
//
// Group.Shutdown stops the acceptors, closes every connection after its
// output is flushed (or lets a ShutdownHandler say goodbye first), and at
// the context's deadline closes what is left. It returns after every ring,
// buffer mapping, descriptor and goroutine the group created is gone.
//
// # Requirements
//
// Linux 6.1 or newer with io_uring enabled. Where io_uring cannot be used
// (kernel.io_uring_disabled, a seccomp profile, an old kernel), NewGroup
// returns an error that says which and wraps errors.ErrUnsupported.
// Programs that import gyre must be built with -ldflags=-checklinkname=0
// (see the README).
package reactor
