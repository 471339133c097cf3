package reactor

import (
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/gyre-io/gyre/internal/bufring"
)

// Defaults for Config's zero fields.
const (
	DefaultRingEntries    = 1024
	DefaultMaxInput       = 1 << 20
	DefaultWriteHighWater = 256 << 10
	DefaultWriteLowWater  = 64 << 10
	DefaultMaxOutput      = 4 << 20
	DefaultInboxSize      = 4096
	DefaultFlushTimeout   = 5 * time.Second
	DefaultLingerTimeout  = 500 * time.Millisecond
	// DefaultBufferCount receive buffers per reactor: enough for hundreds
	// of busy connections while the kernel refills; pages are only touched
	// when used.
	DefaultBufferCount = bufring.DefaultCount
	// DefaultBufferSize bytes per receive buffer on io_uring and net: one
	// page holds a typical request. Every busy connection holds one while
	// the kernel fills it (io_uring) or a read is pending (net).
	DefaultBufferSize = bufring.DefaultSize
	// DefaultEpollReadSize bytes per read on epoll when Buffers.Size is
	// zero: only the reading reactor holds the buffer, so a large one costs
	// one allocation per reactor and saves reads of large messages.
	DefaultEpollReadSize = 64 << 10
)

// BufferConfig sizes a reactor's receive buffers (see Config.Buffers).
// Zero fields take the defaults.
type BufferConfig struct {
	// Count is the number of buffers: a power of two, at most 4096.
	Count int
	// Size is the size of each buffer in bytes, at least 64, at most 1 MiB.
	Size int
	// Lazy (io_uring engine) leaves the buffers' pages to be taken from
	// the system as receives first fill them, instead of at start. The
	// kernel hands out the ring's buffers in turn, so even a lightly
	// loaded reactor soon has touched every one, and the buffers are
	// reused, never freed while the reactor runs: by default their memory
	// is taken at start, so RSS shows the reactor's real footprint from
	// the beginning (what a container's memory limit must be set
	// against) instead of creeping up with the first bursts and staying
	// there. Lazy suits a process that starts many reactors it may not
	// use.
	Lazy bool
}

// Config configures a Group of reactors. The zero value is valid: one
// reactor per CPU, no pinning, the engine EngineAuto picks, the defaults
// above.
// Fields are read once, at NewGroup.
type Config struct {
	// Engine is how the reactors do I/O; the zero value, EngineAuto, picks
	// io_uring where it may be used and epoll where it may not.
	Engine Engine
	// Reactors is the number of reactors; 0 means runtime.NumCPU().
	Reactors int
	// CPUs pins reactor i to CPU CPUs[i%len(CPUs)]; nil leaves placement
	// to the scheduler.
	CPUs []int
	// RingEntries is each reactor's io_uring submission queue size; its
	// completion queue is 8 times larger so multishot receives cannot
	// overflow it. Read by the io_uring engine only.
	RingEntries uint32
	// Buffers sizes each reactor's receive buffers: io_uring's
	// provided-buffer ring (Count buffers of Size bytes, handed to the
	// kernel); on epoll, Size bytes per read (DefaultEpollReadSize if 0)
	// and at most Count buffers held at once (by OnData and Leases); on
	// net, Size bytes per pending read.
	Buffers BufferConfig
	// MaxInput caps the unconsumed input kept per connection. A connection
	// over it is closed with ErrInputLimit.
	MaxInput int
	// WriteHighWater: when a connection's unsent output grows over it, the
	// runtime stops reading from that connection (backpressure).
	WriteHighWater int
	// WriteLowWater: reading resumes when unsent output falls to it.
	WriteLowWater int
	// MaxOutput caps a connection's unsent output: Write returns
	// ErrOutputFull past it.
	MaxOutput int
	// InboxSize bounds each reactor's inbox of cross-goroutine requests
	// (AsyncWrite, Post, Close).
	InboxSize int
	// IdleTimeout closes a connection on which nothing was received or sent
	// for this long; 0 disables it.
	IdleTimeout time.Duration
	// FlushTimeout bounds how long a closing connection may take to send
	// its pending output before it is closed anyway.
	FlushTimeout time.Duration
	// LingerTimeout: after a server-side graceful close has sent its output,
	// the reactor shuts down its write side (FIN) and keeps reading, and
	// discarding, until the peer closes or this long has passed. Closing a
	// socket with unread input makes the kernel send RST, which destroys
	// output the peer has not read yet (a goodbye frame, final acks). Not
	// applied when the peer closed first. 0 means DefaultLingerTimeout;
	// negative disables lingering (net/http waits 500 ms for the same reason).
	LingerTimeout time.Duration
	// Logger receives reactor events; nil means slog.Default().
	Logger *slog.Logger
	// KeepGOMAXPROCS stops NewGroup from raising GOMAXPROCS. By default
	// NewGroup calls EnsureGOMAXPROCS(Reactors), which is what a server
	// process wants, unless the GOMAXPROCS environment variable is set; a
	// program that manages GOMAXPROCS itself sets this.
	KeepGOMAXPROCS bool

	hooks engineHooks // tests only (export_test.go)
}

func (c Config) withDefaults() (Config, error) {
	if c.Reactors == 0 {
		c.Reactors = runtime.NumCPU()
	}
	if c.RingEntries == 0 {
		c.RingEntries = DefaultRingEntries
	}
	if c.MaxInput == 0 {
		c.MaxInput = DefaultMaxInput
	}
	if c.WriteHighWater == 0 {
		c.WriteHighWater = DefaultWriteHighWater
	}
	if c.WriteLowWater == 0 {
		c.WriteLowWater = min(DefaultWriteLowWater, c.WriteHighWater/2)
	}
	if c.MaxOutput == 0 {
		c.MaxOutput = max(DefaultMaxOutput, c.WriteHighWater*2)
	}
	if c.InboxSize == 0 {
		c.InboxSize = DefaultInboxSize
	}
	if c.FlushTimeout == 0 {
		c.FlushTimeout = DefaultFlushTimeout
	}
	if c.LingerTimeout == 0 {
		c.LingerTimeout = DefaultLingerTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Buffers.Count == 0 {
		c.Buffers.Count = DefaultBufferCount
	}
	switch {
	case c.Reactors < 0 || c.Reactors > 1024:
		return c, fmt.Errorf("reactor: Reactors %d out of range 1..1024", c.Reactors)
	case c.MaxInput < 0, c.WriteHighWater < 0, c.WriteLowWater < 0, c.MaxOutput < 0, c.InboxSize < 0, c.IdleTimeout < 0, c.FlushTimeout < 0:
		return c, fmt.Errorf("reactor: negative limit in Config")
	case c.WriteLowWater > c.WriteHighWater:
		return c, fmt.Errorf("reactor: WriteLowWater %d above WriteHighWater %d", c.WriteLowWater, c.WriteHighWater)
	case c.MaxOutput < c.WriteHighWater:
		return c, fmt.Errorf("reactor: MaxOutput %d below WriteHighWater %d", c.MaxOutput, c.WriteHighWater)
	}
	if err := bufring.Check(bufring.Config(c.Buffers)); err != nil {
		return c, fmt.Errorf("reactor: Buffers: %w", err)
	}
	for _, cpu := range c.CPUs {
		if cpu < 0 {
			return c, fmt.Errorf("reactor: negative CPU %d", cpu)
		}
	}
	return c, nil
}
