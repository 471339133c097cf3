// Package reactor runs event loops: each Reactor is a goroutine locked to
// one OS thread (optionally pinned to a CPU) with its own engine, receive
// buffers and connection table. Handlers run on the reactor; other
// goroutines reach a connection only through the reactor's inbox
// (Conn.AsyncWrite, Conn.Post, Conn.Close).
//
// # Engines
//
// The engine is how a reactor does I/O (Config.Engine): io_uring (Linux
// 6.1+), edge-triggered epoll (Linux), or package net (every system). The
// Handler contract below holds on all three. EngineAuto, the default,
// probes once per process and uses io_uring where it may, epoll where
// io_uring is refused (a container's seccomp profile, the
// kernel.io_uring_disabled sysctl, an old kernel, too little locked
// memory) with one warning naming the cause, and net off Linux. The
// sections below describe the io_uring engine; the others follow the same
// rules with read(2)/write(2) or net.Conn in place of the rings.
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
// Idle timeouts, read and write timeouts (Conn.SetReadTimeoutAt and
// SetWriteTimeoutAt, which close the connection) and the Ticker run on a
// timer heap per reactor, woken by an io_uring TIMEOUT (the epoll wait's
// timeout, a runtime timer per reactor on net): no goroutine or runtime
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
// None beyond Go for EngineAuto and EngineNet. EngineIOUring asked for by
// name needs Linux 6.1 or newer with io_uring enabled; where it cannot be
// used, NewGroup returns an error that says why and wraps
// errors.ErrUnsupported. EngineEpoll needs Linux. Programs that import
// gyre build with a plain go build.
package reactor
