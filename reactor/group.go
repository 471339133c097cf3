package reactor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/gyre-io/gyre/internal/link"
)

// linkage is the acceptor's wiring, embedded under an unexported name (see
// package internal/link).
type linkage = link.Embed

// Group is a set of reactors sharing one Handler: the unit a server runs.
// Its methods are safe for concurrent use.
type Group struct {
	linkage

	cfg      Config
	engine   Engine
	reactors []*Reactor

	mu       sync.Mutex
	sources  []io.Closer
	stopping bool
	stopOnce sync.Once
	done     chan struct{}
}

// NewGroup starts cfg.Reactors reactors running h on cfg.Engine and
// returns once every reactor is up. If the engine cannot be used (io_uring
// asked for explicitly where it is refused, a Linux engine elsewhere), the
// error says why and wraps errors.ErrUnsupported; nothing is left running.
func NewGroup(cfg Config, h Handler) (*Group, error) {
	if h == nil {
		return nil, errors.New("reactor: nil Handler")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	eng, err := resolveEngine(&cfg)
	if err != nil {
		return nil, err
	}
	// The net engine's reactors block in the scheduler, not in a system
	// call: they keep no P while waiting.
	if !cfg.KeepGOMAXPROCS && os.Getenv("GOMAXPROCS") == "" && eng != EngineNet {
		if prev := EnsureGOMAXPROCS(cfg.Reactors); prev != 0 {
			cfg.Logger.Info("raised GOMAXPROCS so waiting reactors keep their Ps", "from", prev, "to", runtime.GOMAXPROCS(0))
		}
	}
	g := &Group{cfg: cfg, engine: eng, done: make(chan struct{})}
	for i := 0; i < cfg.Reactors; i++ {
		r, err := newReactor(i, cfg, eng, h)
		if err != nil {
			g.closeAll()
			return nil, err
		}
		cpu := -1
		if len(cfg.CPUs) > 0 {
			cpu = cfg.CPUs[i%len(cfg.CPUs)]
		}
		if err := r.start(cpu); err != nil {
			<-r.done
			g.closeAll()
			return nil, err
		}
		g.reactors = append(g.reactors, r)
	}
	g.linkage = link.New(g.wiring())
	return g, nil
}

func newReactor(id int, cfg Config, e Engine, h Handler) (*Reactor, error) {
	r := &Reactor{
		id:   id,
		cfg:  cfg,
		h:    h,
		log:  cfg.Logger,
		done: make(chan struct{}),
	}
	switch e {
	case EngineNet:
		r.eng = newNetEngine(r)
	default:
		eng, err := newLinuxEngine(r, e)
		if err != nil {
			return nil, err
		}
		r.eng = eng
	}
	r.ph, _ = h.(PressureHandler)
	r.sh, _ = h.(ShutdownHandler)
	r.tk, _ = h.(Ticker)
	r.epoch = time.Now()
	r.inbox.limit = cfg.InboxSize
	r.inbox.wake = r.eng.wake
	return r, nil
}

// wiring is what package acceptor needs from the group (see
// internal/link).
func (g *Group) wiring() *link.Group {
	w := &link.Group{Engine: g.engine.String(), AddSource: g.addSource, Sync: g.sync}
	for _, r := range g.reactors {
		t := link.Target{
			RingFD: -1,
			Load:   r.stats.load,
			HandoffFD: func(fd int) error {
				return r.inbox.push(task{kind: taskHandoff, fd: fd})
			},
			HandoffConn: func(c net.Conn) error {
				return r.inbox.push(task{kind: taskHandoff, fd: -1, nc: c})
			},
		}
		if u, ok := r.eng.(interface{ handoffFD() int }); ok {
			t.RingFD = u.handoffFD()
		}
		w.Targets = append(w.Targets, t)
	}
	return w
}

// Engine reports the engine the group's reactors run on (never
// EngineAuto: the one Auto picked).
func (g *Group) Engine() Engine { return g.engine }

// EnsureGOMAXPROCS raises GOMAXPROCS to at least reactors+2 and returns
// the previous value, or 0 if it was already high enough. NewGroup calls it
// unless Config.KeepGOMAXPROCS is set or the GOMAXPROCS environment
// variable is (an explicit choice is left alone).
//
// Why: a reactor waiting for completions, like the acceptor, sits in
// io_uring_enter, a system call, holding its P. When no P is idle, the
// runtime's sysmon takes a waiting thread's P after 20 µs and wakes another
// thread to run it: a pair of thread switches per wait, and sysmon itself
// polling every 20 µs. A process pinned to few CPUs, where Go sets
// GOMAXPROCS to the CPU count, hits this on almost every wait. One P per
// reactor, one for the acceptor and one for everything else avoid it. A P
// is a permission to run Go code, not a thread or a CPU: idle ones cost
// nothing, and the OS still schedules threads on the allowed CPUs only.
// Setting GOMAXPROCS turns off the runtime's automatic updates from CPU
// limit changes (see runtime.SetDefaultGOMAXPROCS).
func EnsureGOMAXPROCS(reactors int) (previous int) {
	want := reactors + 2
	cur := runtime.GOMAXPROCS(0)
	if cur >= want {
		return 0
	}
	runtime.GOMAXPROCS(want)
	return cur
}

// Reactors returns the group's reactors, in ID order.
func (g *Group) Reactors() []*Reactor { return g.reactors }

// addSource registers something that feeds the group new connections (an
// acceptor). Shutdown and Close close every source first, so no
// connection arrives while the reactors drain. If the group is already
// stopping, s is closed at once and an error is returned.
func (g *Group) addSource(s io.Closer) error {
	g.mu.Lock()
	if g.stopping {
		g.mu.Unlock()
		_ = s.Close()
		return ErrServerClosed
	}
	g.sources = append(g.sources, s)
	g.mu.Unlock()
	return nil
}

// sync returns once every reactor has run a task queued now. Whatever the
// caller wrote before is then visible to every handler callback that runs
// afterwards, with an ordering the race detector can see: socket traffic
// passes through the kernel, which Go's memory model does not cover. The
// acceptor calls it before it starts accepting. Its task is never refused
// for space, and a stopped reactor runs it as it drops it.
func (g *Group) sync() error {
	done := make(chan struct{}, len(g.reactors))
	signal := func() { done <- struct{}{} }
	for _, r := range g.reactors {
		if err := r.inbox.push(task{kind: taskSync, fn: signal}); err != nil {
			return err
		}
	}
	for range g.reactors {
		<-done
	}
	return nil
}

// Stats sums the counters of every reactor.
func (g *Group) Stats() Stats {
	var s Stats
	for _, r := range g.reactors {
		s.add(r.Stats())
	}
	return s
}

// Shutdown stops accepting, asks every connection to close after sending
// its pending output (or, for a ShutdownHandler, calls OnShutdown), and
// waits until every reactor has released its ring, buffers and sockets.
// If ctx ends first, the remaining connections are closed at once, and
// Shutdown returns ctx's error after the reactors have stopped.
func (g *Group) Shutdown(ctx context.Context) error {
	g.stopSources()
	for _, r := range g.reactors {
		_ = r.inbox.push(task{kind: taskDrain})
	}
	select {
	case <-g.waitAll():
		return nil
	case <-ctx.Done():
	}
	for _, r := range g.reactors {
		_ = r.inbox.push(task{kind: taskForce})
	}
	<-g.waitAll()
	return ctx.Err()
}

// Close stops accepting and closes every connection at once, dropping
// unsent output, and waits until the reactors have stopped.
func (g *Group) Close() error {
	g.stopSources()
	g.closeAll()
	return nil
}

func (g *Group) closeAll() {
	for _, r := range g.reactors {
		_ = r.inbox.push(task{kind: taskDrain})
		_ = r.inbox.push(task{kind: taskForce})
	}
	<-g.waitAll()
}

func (g *Group) stopSources() {
	g.mu.Lock()
	g.stopping = true
	srcs := g.sources
	g.sources = nil
	g.mu.Unlock()
	for _, s := range srcs {
		_ = s.Close()
	}
}

// Wait blocks until every reactor has stopped and returns ErrServerClosed
// after a Shutdown or Close, or the first error that stopped a reactor.
func (g *Group) Wait() error {
	<-g.waitAll()
	for _, r := range g.reactors {
		if r.err != nil {
			return fmt.Errorf("reactor %d: %w", r.id, r.err)
		}
	}
	return ErrServerClosed
}

// Done is closed when every reactor has stopped.
func (g *Group) Done() <-chan struct{} { return g.waitAll() }

func (g *Group) waitAll() <-chan struct{} {
	g.stopOnce.Do(func() {
		go func() {
			for _, r := range g.reactors {
				<-r.done
			}
			close(g.done)
		}()
	})
	return g.done
}
