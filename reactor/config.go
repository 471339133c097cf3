package reactor

import (
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/gyre-io/gyre/bufring"
	"github.com/gyre-io/gyre/internal/uring"
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
)

// Config configures a Group of reactors. The zero value is valid: one
// reactor per CPU, no pinning, the defaults above.
// Fields are read once, at NewGroup.
type Config struct {
	// Reactors is the number of reactors; 0 means runtime.NumCPU().
	Reactors int
	// CPUs pins reactor i to CPU CPUs[i%len(CPUs)]; nil leaves placement
	// to the scheduler.
	CPUs []int
	// RingEntries is each reactor's submission queue size; its completion
	// queue is 8 times larger so multishot receives cannot overflow it.
	RingEntries uint32
	// Buffers sizes each reactor's provided-buffer ring.
	Buffers bufring.Config
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

	// ringExtraFlags and ringFault are test hooks (see internal/uring).
	ringExtraFlags uint32
	ringFault      uring.Fault
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
	for _, cpu := range c.CPUs {
		if cpu < 0 {
			return c, fmt.Errorf("reactor: negative CPU %d", cpu)
		}
	}
	return c, nil
}
