// Package gyrenet serves net.Listener and net.Conn over gyre's reactors, so
// code written for package net runs unchanged on them: http.Server.Serve,
// tls.NewListener, gRPC-style servers, anything that takes a net.Listener.
//
//	l, err := gyrenet.Listen("tcp", ":8080", gyrenet.Config{})
//	if err != nil { ... }
//	srv := &http.Server{Handler: mux}
//	go srv.Serve(l) // or srv.Serve(tls.NewListener(l, tlsConfig))
//	...
//	_ = srv.Shutdown(ctx) // closes l and, when idle, the connections
//	_ = l.Shutdown(ctx)   // stops the reactors
//
// # How it works
//
// Listen starts a reactor.Group and an acceptor of its own. Each accepted
// connection is opened on a reactor, which receives into its buffers and
// copies the bytes into the Conn's read buffer; Read takes them from
// there. Write copies into the Conn's write buffer, from which the
// reactor takes them into its output. Read, Write and Close reach the
// reactor through a reactor.Notifier and a work list per reactor (never
// refused, unlike the inbox); the reactor's buffers are only touched on
// its goroutine. No goroutine runs per connection beyond the caller's own
// (on reactor.EngineNet the engine itself has two per connection).
//
// # Semantics
//
// As package net's TCP connections, with the differences listed under
// Limits:
//
//   - Read returns what has been received, waiting for at least a byte;
//     io.EOF once the peer's FIN has been read past.
//   - Write returns once all of p is in the write buffer; bytes it took
//     are sent even if the connection is then closed (within
//     Config.FlushTimeout).
//   - SetDeadline, SetReadDeadline and SetWriteDeadline: a passed
//     deadline fails the waiting call and every later one with a
//     *net.OpError matching os.ErrDeadlineExceeded whose Timeout method
//     reports true; the connection stays open and a new deadline (or the
//     zero time) makes the calls work again.
//   - Close wakes a waiting Read or Write with net.ErrClosed and sends
//     what was written before it; the reactor closes the socket after
//     its lingering close (reactor.Config.LingerTimeout).
//   - Listener.Close wakes Accept with net.ErrClosed. See Listener for
//     when the reactors stop.
//   - Errors are *net.OpError values; a connection or listener that is
//     closed reports errors matching net.ErrClosed.
//
// # Backpressure and bounds
//
// Per connection, at most Config.ReadBuffer bytes (plus one receive) wait
// to be Read: past that the reactor stops receiving from the connection
// until Read has taken half of them, and TCP flow control slows the peer.
// At most Config.WriteBuffer bytes wait to be handed to the reactor, and
// the reactor's unsent output stays under Config.WriteHighWater plus two
// write buffers: Write waits while both are full. A connection nobody
// reads from therefore costs at most ReadBuffer + WriteBuffer +
// WriteHighWater + one receive buffer of memory, plus the kernel's socket
// buffers. At most Config.Backlog connections wait for Accept; more are
// reset.
//
// # Limits
//
//   - While a connection's unsent output is over WriteHighWater, its
//     reactor also stops receiving from it (the reactor's backpressure),
//     until the output falls to WriteLowWater. Read still returns what is
//     buffered. A program that waits for input before it lets a write
//     complete, against a peer that stops reading until its own writes
//     complete, can stall where package net would not. Request/response
//     protocols such as HTTP/1.1 (with or without TLS), and HTTP/2, whose
//     flow control keeps the peer reading, are not affected.
//   - The peer's FIN makes Read return io.EOF (after the bytes before
//     it); the connection stays open for Write until Close, as with
//     package net, so a peer that half-closes gets its answer. Conn has
//     no CloseWrite: the reactors cannot yet shut down only their own
//     sending side.
//   - Conn has no File, SyscallConn, SetLinger, SetKeepAlive or
//     SetNoDelay: the socket belongs to the reactor (Config.KeepAlive and
//     Config.Delay set them for every connection).
//   - Listen starts a group of reactors per listener, and reactor.NewGroup
//     raises GOMAXPROCS to reactors + 2 unless Config.KeepGOMAXPROCS is
//     set.
package gyrenet
