package gyrenet

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/gyre-io/gyre/reactor"
)

// Defaults for Config's zero fields.
const (
	// DefaultReadBuffer bytes received and not yet Read per connection:
	// past it the reactor stops receiving from the connection until Read
	// has taken half of them, and TCP flow control slows the peer.
	DefaultReadBuffer = 64 << 10
	// DefaultWriteBuffer bytes written and not yet handed to the reactor
	// per connection: Write returns once its bytes fit here, and blocks
	// while the buffer is full and the reactor's unsent output is over
	// WriteHighWater.
	DefaultWriteBuffer = 64 << 10
	// DefaultBacklog connections accepted and waiting for Accept (also the
	// listen backlog). A connection arriving while it is full is reset.
	DefaultBacklog = 4096
)

// Config configures Listen. The zero value is valid: one reactor per CPU
// on the engine reactor.EngineAuto picks, and the defaults above and in
// package reactor. Fields are read once, at Listen.
type Config struct {
	// Engine, Reactors, CPUs, Buffers, KeepGOMAXPROCS and Logger are
	// passed to reactor.NewGroup (see reactor.Config). Note that NewGroup
	// raises GOMAXPROCS to Reactors+2 unless KeepGOMAXPROCS is set or the
	// GOMAXPROCS environment variable is.
	Engine         reactor.Engine
	Reactors       int
	CPUs           []int
	Buffers        reactor.BufferConfig
	KeepGOMAXPROCS bool
	Logger         *slog.Logger

	// ReadBuffer bounds the bytes received and not yet Read, per
	// connection (DefaultReadBuffer if 0). It may be exceeded by one
	// receive (Buffers.Size; 64 KiB on epoll).
	ReadBuffer int
	// WriteBuffer bounds the bytes written and not yet handed to the
	// reactor, per connection (DefaultWriteBuffer if 0).
	WriteBuffer int
	// WriteHighWater and WriteLowWater are the reactor's output
	// watermarks (reactor.Config): while a connection's unsent output is
	// over WriteHighWater, its reactor neither takes more of what Write
	// buffered nor receives from it, until the output falls to
	// WriteLowWater. Unsent output per connection stays under
	// WriteHighWater + 2*WriteBuffer.
	WriteHighWater, WriteLowWater int
	// FlushTimeout bounds how long a closed connection may take to send
	// what was written before Close (reactor.DefaultFlushTimeout if 0).
	FlushTimeout time.Duration
	// LingerTimeout: see reactor.Config.LingerTimeout.
	LingerTimeout time.Duration

	// Backlog bounds the connections accepted and not yet returned by
	// Accept (DefaultBacklog if 0), and is the listen backlog.
	Backlog int
	// KeepAlive is the TCP keep-alive idle time; 0 means
	// acceptor.DefaultKeepAlive, negative disables keep-alive probes.
	KeepAlive time.Duration
	// Delay turns Nagle's algorithm back on (TCP_NODELAY is set by
	// default, as package net does).
	Delay bool
	// ReusePort sets SO_REUSEPORT on the listening socket.
	ReusePort bool
}

func (c Config) withDefaults() (Config, error) {
	if c.ReadBuffer == 0 {
		c.ReadBuffer = DefaultReadBuffer
	}
	if c.WriteBuffer == 0 {
		c.WriteBuffer = DefaultWriteBuffer
	}
	if c.Backlog == 0 {
		c.Backlog = DefaultBacklog
	}
	if c.WriteHighWater == 0 {
		c.WriteHighWater = reactor.DefaultWriteHighWater
	}
	if c.WriteLowWater == 0 {
		c.WriteLowWater = min(reactor.DefaultWriteLowWater, c.WriteHighWater/2)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.ReadBuffer < 0, c.WriteBuffer < 0, c.Backlog < 0, c.WriteHighWater < 0, c.WriteLowWater < 0:
		return c, fmt.Errorf("gyrenet: negative size in Config")
	case c.ReadBuffer > 1<<30, c.WriteBuffer > 1<<30:
		return c, fmt.Errorf("gyrenet: ReadBuffer and WriteBuffer must be at most 1 GiB")
	}
	return c, nil
}

// reactorConfig is the reactors' configuration for c (after withDefaults).
func (c Config) reactorConfig() reactor.Config {
	return reactor.Config{
		Engine:         c.Engine,
		Reactors:       c.Reactors,
		CPUs:           c.CPUs,
		Buffers:        c.Buffers,
		KeepGOMAXPROCS: c.KeepGOMAXPROCS,
		Logger:         c.Logger,
		WriteHighWater: c.WriteHighWater,
		WriteLowWater:  c.WriteLowWater,
		// What gyrenet hands the reactor stays under WriteHighWater plus
		// two write buffers (see Conn.moveOut): never refused.
		MaxOutput:     max(reactor.DefaultMaxOutput, c.WriteHighWater+2*c.WriteBuffer),
		FlushTimeout:  c.FlushTimeout,
		LingerTimeout: c.LingerTimeout,
		// Received bytes never wait in the reactor beyond what arrived
		// between a pause and its taking effect (see handler.OnData).
		MaxInput: max(reactor.DefaultMaxInput, 2*c.ReadBuffer),
		// IdleTimeout stays 0: a net.Conn's time limits are its deadlines,
		// set by the program.
	}
}
