package acceptor

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults for Config's zero fields.
const (
	DefaultBacklog   = 4096
	DefaultKeepAlive = 15 * time.Second
	// maxBackoff caps the pause after accept errors such as EMFILE.
	maxBackoff = time.Second
	minBackoff = 5 * time.Millisecond
)

// Config configures an Acceptor. Only Addrs is required. Socket options are
// set on each listener and inherited by the sockets it accepts, so accepting
// costs no extra system call.
type Config struct {
	// Addrs are the TCP addresses to listen on ("host:port"; IPv4 or IPv6;
	// port 0 picks a free port, see Acceptor.Addrs).
	Addrs []string
	// Backlog is the listen backlog (capped by net.core.somaxconn). The net
	// engine's listeners use package net's, the system maximum.
	Backlog int
	// Delay turns Nagle's algorithm back on. By default TCP_NODELAY is set:
	// request/response servers want small writes to leave at once.
	Delay bool
	// KeepAlive is the TCP keep-alive idle time; 0 means DefaultKeepAlive,
	// negative disables keep-alive probes.
	KeepAlive time.Duration
	// ReusePort sets SO_REUSEPORT so several processes can listen on the
	// same address and the kernel spreads connections among them.
	ReusePort bool
	// RecvBuffer and SendBuffer set SO_RCVBUF and SO_SNDBUF; 0 keeps the
	// kernel's auto-tuning.
	RecvBuffer, SendBuffer int
	// Balancer picks a reactor per connection; nil means RoundRobin().
	Balancer Balancer
	// Logger receives accept errors; nil means slog.Default().
	Logger *slog.Logger

	// ringExtraFlags is a test hook: extra setup flags for the io_uring
	// accept ring, to simulate a kernel that refuses it.
	ringExtraFlags uint32
}

// ErrConfig is wrapped by every error about an invalid Config.
var ErrConfig = errors.New("acceptor: invalid config")

func (c Config) withDefaults() (Config, error) {
	if len(c.Addrs) == 0 {
		return c, fmt.Errorf("%w: no Addrs to listen on", ErrConfig)
	}
	if len(c.Addrs) > 64 {
		return c, fmt.Errorf("%w: %d Addrs, at most 64", ErrConfig, len(c.Addrs))
	}
	if c.Backlog == 0 {
		c.Backlog = DefaultBacklog
	}
	if c.Backlog < 0 {
		return c, fmt.Errorf("%w: negative Backlog %d", ErrConfig, c.Backlog)
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.RecvBuffer < 0 || c.SendBuffer < 0 {
		return c, fmt.Errorf("%w: negative socket buffer size", ErrConfig)
	}
	if c.Balancer == nil {
		c.Balancer = RoundRobin()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
