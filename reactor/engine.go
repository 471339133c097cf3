package reactor

import (
	"fmt"
	"os"
	"strings"
	"sync"
)

// Engine names how a reactor does its I/O. Every engine runs the same
// Handler contract: zero-copy OnData views, unconsumed bytes kept, Write
// with watermarks and OnPressure, AsyncWrite and Post through the bounded
// inbox, Hold and Lease, deadlines, Shutdown with drain, and Stats (a few
// counters are specific to one engine; see Stats).
type Engine uint8

const (
	// EngineAuto picks io_uring where this process may use it and epoll
	// where it may not (a container's seccomp profile, the
	// kernel.io_uring_disabled sysctl, an old kernel, too little locked
	// memory), with one warning that names the cause. Off Linux it picks
	// EngineNet. The decision is made once per process. The GYRE_ENGINE
	// environment variable (io_uring, epoll or net) overrides it, for
	// operators who want to force an engine without a rebuild.
	EngineAuto Engine = iota
	// EngineIOUring: multishot receives into a provided-buffer ring, one
	// send per connection per loop iteration, MSG_RING hand-off from the
	// acceptor. Linux 6.1 or newer. Asked for explicitly, a refusal is an
	// error (wrapping errors.ErrUnsupported), not a fallback.
	EngineIOUring
	// EngineEpoll: edge-triggered epoll, one read buffer per reactor (an
	// idle connection holds none), one write per connection per loop
	// iteration. Linux only; works wherever io_uring is refused.
	EngineEpoll
	// EngineNet runs on package net, on every system Go supports: a reader
	// and a writer goroutine per connection feed the same event loop. For
	// development off Linux; it is the slowest engine.
	EngineNet
)

// String returns the name used by flags, logs and metrics: "auto",
// "io_uring", "epoll" or "net".
func (e Engine) String() string {
	switch e {
	case EngineAuto:
		return "auto"
	case EngineIOUring:
		return "io_uring"
	case EngineEpoll:
		return "epoll"
	case EngineNet:
		return "net"
	}
	return fmt.Sprintf("engine(%d)", uint8(e))
}

// ParseEngine turns a name printed by Engine.String back into an Engine.
// "uring" and "iouring" are accepted for io_uring.
func ParseEngine(s string) (Engine, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return EngineAuto, nil
	case "io_uring", "iouring", "uring":
		return EngineIOUring, nil
	case "epoll":
		return EngineEpoll, nil
	case "net":
		return EngineNet, nil
	}
	return EngineAuto, fmt.Errorf("reactor: unknown engine %q (want auto, io_uring, epoll or net)", s)
}

// envEngine is the environment variable that overrides EngineAuto's choice.
const envEngine = "GYRE_ENGINE"

// engine is one way of doing a reactor's I/O. The reactor's loop (reactor.go)
// owns connections, timers, the inbox and handler calls; an engine only
// moves bytes and reports events back through the reactor's received,
// readEnded, sendDone and sendFailed methods. Every method runs on the
// reactor goroutine except wake.
type engine interface {
	kind() Engine
	// setup runs once on the reactor goroutine before the loop.
	setup() error
	// attach registers a connection that has just opened, before OnOpen.
	attach(c *Conn) error
	// teardown releases what setup acquired. Every connection is closed
	// when it runs; it also closes sockets handed over but never opened.
	teardown()
	// wait hands queued requests to the kernel and, if block, waits until
	// an event arrives or the reactor clock reaches until (0: no timer).
	wait(block bool, until int64) error
	// dispatch delivers ready events to the reactor and reports whether
	// more may be ready without waiting.
	dispatch() (more bool)
	// startRead begins or resumes receiving on c. It returns false when no
	// receive buffer is free: the reactor retries when one comes back.
	startRead(c *Conn) bool
	// stopRead stops receiving on c. Bytes already received are still
	// delivered (the reactor keeps them for the resume).
	stopRead(c *Conn)
	// send writes c.inflight[c.sent:] and reports through sendDone or
	// sendFailed, now or from a later dispatch.
	send(c *Conn)
	// shutdownWrite sends FIN (lingering close).
	shutdownWrite(c *Conn)
	// abort makes every request in flight on c finish soon (a peer that
	// does not read must not hold a closing connection).
	abort(c *Conn)
	// busy reports whether the kernel still owns a request on c: its
	// socket may not be closed yet.
	busy(c *Conn) bool
	// closeConn closes c's socket.
	closeConn(c *Conn)
	// releaseBuffer gives a receive buffer back (Lease.Release, or the
	// reactor after OnData). Loop-only.
	releaseBuffer(id int32)
	// bufStats reports the receive buffers out of the engine's reach and
	// how often a receive found none.
	bufStats() (owned int, exhausted uint64)
	// overflows counts completion-queue overflows (io_uring only).
	overflows() uint64
	// wake breaks a wait. Safe for concurrent use; called under the inbox
	// lock, so it never runs after teardown closed what it writes to.
	wake()
}

// engineChoice is the process-wide outcome of EngineAuto: decided once,
// because probing costs a ring setup and the answer cannot change while
// the process runs.
type engineChoice struct {
	engine Engine
	cause  error // why io_uring was not picked; nil if it was
}

var autoChoice = sync.OnceValue(func() engineChoice { return chooseAuto(nil) })

// chooseAuto probes this system. inject (tests) makes the io_uring probe
// fail as the kernel would.
func chooseAuto(inject *probeFault) engineChoice {
	if v := os.Getenv(envEngine); v != "" && inject == nil {
		e, err := ParseEngine(v)
		if err == nil && e != EngineAuto {
			return engineChoice{engine: e}
		}
		if err != nil {
			return engineChoice{engine: EngineAuto, cause: fmt.Errorf("%s=%q: %w", envEngine, v, err)}
		}
	}
	if !linuxEngines {
		return engineChoice{engine: EngineNet}
	}
	if err := probeIOUring(inject); err != nil {
		return engineChoice{engine: EngineEpoll, cause: err}
	}
	return engineChoice{engine: EngineIOUring}
}

// autoWarned makes the fallback warning once per process, like the
// decision itself.
var autoWarned sync.Once

// resolveEngine turns cfg.Engine into the engine every reactor of a group
// uses, logging once why io_uring was passed over.
func resolveEngine(cfg *Config) (Engine, error) {
	if cfg.Engine != EngineAuto {
		if cfg.Engine > EngineNet {
			return 0, fmt.Errorf("reactor: unknown Engine %d", cfg.Engine)
		}
		return cfg.Engine, nil
	}
	var ch engineChoice
	if cfg.hooks.probe != nil {
		ch = chooseAuto(cfg.hooks.probe)
	} else {
		ch = autoChoice()
	}
	if ch.engine == EngineAuto {
		return 0, fmt.Errorf("reactor: no engine available: %w", ch.cause)
	}
	warn := func() {
		cfg.Logger.Warn("io_uring refused; serving on "+ch.engine.String()+" instead",
			"engine", ch.engine.String(), "cause", ch.cause.Error(),
			"fix", "allow io_uring (see the cause), or set "+envEngine+"="+ch.engine.String()+" to silence this")
	}
	switch {
	case ch.cause == nil:
	case cfg.hooks.probe != nil:
		warn()
	default:
		autoWarned.Do(warn)
	}
	return ch.engine, nil
}
