package reactor

import (
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gyre-io/gyre/internal/sys"
)

// runState is the reactor's life cycle.
type runState uint8

const (
	running runState = iota
	draining
	forcing
)

// Reactor is one event loop: a goroutine locked to its OS thread (and
// optionally pinned to a CPU) with its own engine (an io_uring, an epoll
// instance, or package net), receive buffers and connection table. Its
// methods are safe for concurrent use unless marked loop-only.
type Reactor struct {
	id    int
	cfg   Config
	h     Handler
	ph    PressureHandler
	sh    ShutdownHandler
	tk    Ticker
	log   *slog.Logger
	epoch time.Time
	eng   engine
	spare spares // output and accumulation buffers of idle connections go back here
	// sweeping: a sweep of quiet connections' buffers is scheduled
	// (sweepIndex), because some connection holds buffers.
	sweeping bool

	// Fixed after start.
	tid   int64
	ready atomic.Bool // setup succeeded: eng may be asked for stats

	// Loop-only state.
	conns   []*Conn
	gens    []uint32
	free    []uint32
	dirty   []*Conn
	starved []*Conn
	timers  timerHeap
	now     int64
	state   runState
	nconns  int
	woken   bool
	later   []func()    // see Later
	yield   sys.Yielder // see sys.YieldEvery

	inbox inbox

	// Notifier state (see notify.go).
	notifyMu  sync.Mutex
	notifiers atomic.Pointer[[]*Notifier]
	notified  atomic.Bool // some Notifier is pending
	sleeping  atomic.Bool // the loop is about to wait or waits in the kernel

	retMu    sync.Mutex
	returned []int32
	retFlag  atomic.Bool

	stats counters
	done  chan struct{}
	err   error // why the loop ended abnormally; read after done
}

// ID returns the reactor's index in its group.
func (r *Reactor) ID() int { return r.id }

// Engine reports the engine the reactor runs on.
func (r *Reactor) Engine() Engine { return r.eng.kind() }

// Conns returns the number of open connections.
func (r *Reactor) Conns() int { _, n := r.stats.load(); return n }

// Post runs fn on the reactor goroutine. It never blocks: it returns
// ErrInboxFull when the inbox is full and ErrServerClosed once the reactor
// has stopped.
func (r *Reactor) Post(fn func()) error {
	return r.inbox.push(task{kind: taskFunc, fn: fn})
}

// Later runs fn on the reactor once the current loop iteration has handled
// its completions, inbox tasks, notifications and timers, just before the
// iteration's writes are flushed and the reactor waits. Loop-only; fn runs
// once per call, so a handler that asks every callback keeps its own
// "already asked" flag, and passes a function value made once to stay
// allocation-free.
//
// Why: work handed to another goroutine per callback wakes that goroutine
// per callback, and a goroutine woken on the reactor's CPU preempts the
// reactor. Handing it over once per iteration takes every callback's worth
// in one wake-up (the ingest server wakes its sink worker this way).
func (r *Reactor) Later(fn func()) { r.later = append(r.later, fn) }

func (r *Reactor) runLater() {
	for i := 0; i < len(r.later); i++ { // fn may call Later again
		r.later[i]()
		r.later[i] = nil
	}
	r.later = r.later[:0]
}

// Now returns the reactor's clock, read once per loop iteration: cheap,
// and monotonic. Loop-only.
func (r *Reactor) Now() time.Time { return r.epoch.Add(time.Duration(r.now)) }

func (r *Reactor) clockAt(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(1, int64(t.Sub(r.epoch)))
}

func (r *Reactor) tick() { r.now = int64(time.Since(r.epoch)) }

// onLoop reports whether the caller runs on the reactor goroutine. The
// reactor's goroutine is locked to its thread and no other goroutine runs
// there, so comparing thread identities is exact.
func (r *Reactor) onLoop() bool { return threadID() == r.tid }

// start runs the loop on a new goroutine and returns once the engine is up.
func (r *Reactor) start(cpu int) error {
	ready := make(chan error, 1)
	go r.run(cpu, ready)
	return <-ready
}

func (r *Reactor) run(cpu int, ready chan<- error) {
	// Never unlocked: the thread exits with the goroutine, so a
	// single-issuer ring never sees another thread, and onLoop stays exact.
	runtime.LockOSThread()
	defer close(r.done)
	r.tid = threadID()
	if err := r.setup(cpu); err != nil {
		r.teardown()
		ready <- err
		return
	}
	r.ready.Store(true)
	ready <- nil
	if tk := r.tk; tk != nil {
		r.timers.add(timerEntry{when: r.now, index: tickIndex})
	}
	r.loop()
	r.teardown()
}

func (r *Reactor) setup(cpu int) error {
	if cpu >= 0 {
		if err := pinCPU(cpu); err != nil {
			return fmt.Errorf("reactor %d: pinning to CPU %d: %w", r.id, cpu, err)
		}
	}
	if err := r.eng.setup(); err != nil {
		return fmt.Errorf("reactor %d: %w", r.id, err)
	}
	r.tick()
	r.log.Debug("reactor started", "reactor", r.id, "engine", r.eng.kind().String(), "cpu", cpu)
	return nil
}

// teardown releases everything setup acquired. Every connection is closed
// and no request referencing a buffer is in flight when it runs.
func (r *Reactor) teardown() {
	for _, t := range r.inbox.close() {
		r.dropTask(t)
	}
	// Held leases may release later: returns after this are ignored.
	r.retMu.Lock()
	r.returned = nil
	r.retMu.Unlock()
	r.eng.teardown()
}

// dropTask disposes of a task the reactor will never run. A socket handed
// over but never opened is closed: nobody else owns it.
func (r *Reactor) dropTask(t task) {
	switch t.kind {
	case taskHandoff:
		closeHandoff(t)
	case taskSync:
		t.fn() // its waiter only needs to know the reactor got this far
	case taskFunc, taskConnFunc, taskWrite:
		r.log.Debug("reactor stopped with a task queued", "reactor", r.id, "kind", int(t.kind))
	}
}

// loop is the event loop, the same for every engine: wait for events,
// deliver them, run the inbox, notifications, timers and Later work, then
// flush every connection written to in this iteration in one go.
func (r *Reactor) loop() {
	block := false
	for {
		err := r.eng.wait(block, r.nextTimer())
		if block {
			r.awake()
		}
		if err != nil {
			r.fatal(err)
			return
		}
		r.tick()
		r.yield.Maybe(r.now)
		more := r.eng.dispatch()
		if r.woken {
			r.woken = false
			r.runInbox()
		}
		if r.notified.Load() {
			r.runNotifiers()
		}
		if r.retFlag.Load() {
			r.takeReturns()
		}
		r.runTimers()
		r.runLater()
		if r.notified.Load() {
			// Later work often notifies (the ingest server's inline sink
			// writes report completions): serve it before this flush, not
			// one loop iteration later.
			r.runNotifiers()
		}
		r.flush()
		if r.state != running && r.nconns == 0 {
			return
		}
		// Work left for the next iteration (Later asked for by a handler
		// that a flushed send resumed, or by the second notifier pass), or
		// a Notifier that fired since the checks above (mayWait refuses):
		// submit, do not sleep.
		block = !more && len(r.later) == 0 && r.mayWait()
	}
}

func (r *Reactor) nextTimer() int64 {
	when, _ := r.timers.next()
	return when
}

// fatal ends the loop after an engine failure that retrying cannot fix
// (io_uring_enter or epoll_wait failing). Connections are aborted; their
// sockets closed.
func (r *Reactor) fatal(err error) {
	r.err = err
	r.log.Error("reactor stopped: its engine failed", "reactor", r.id, "engine", r.eng.kind().String(), "err", err)
	for _, c := range r.conns {
		if c != nil {
			r.eng.closeConn(c)
			r.finish(c, err)
		}
	}
}

// conn returns the live connection at idx with generation gen, or nil if
// the event belongs to an earlier occupant of the slot.
func (r *Reactor) conn(gen, idx uint32) *Conn {
	if int(idx) >= len(r.conns) {
		return nil
	}
	c := r.conns[idx]
	if c == nil || c.gen != gen {
		return nil
	}
	return c
}

// genMask bounds a slot's generation: engines that encode (gen, index) in
// 64 bits of user data keep 24 bits for it.
const genMask = 1<<24 - 1

// open adopts a socket handed over by the acceptor: fd for the Linux
// engines, nc for the net engine. A reactor that no longer takes
// connections closes the socket.
func (r *Reactor) open(fd int, nc net.Conn) {
	if r.state != running {
		r.stats.flow.Add(flowHandoff)
		closeHandoff(task{fd: fd, nc: nc})
		return
	}
	var idx uint32
	if n := len(r.free); n > 0 {
		idx = r.free[n-1]
		r.free = r.free[:n-1]
	} else {
		idx = uint32(len(r.conns))
		r.conns = append(r.conns, nil)
		r.gens = append(r.gens, 0)
	}
	r.gens[idx] = (r.gens[idx] + 1) & genMask
	c := &Conn{r: r, fd: fd, nc: newNetConn(nc), index: idx, gen: r.gens[idx], curBuf: -1, lastActive: r.now}
	if err := r.eng.attach(c); err != nil {
		r.log.Warn("could not register an accepted connection; closing it", "reactor", r.id, "err", err)
		r.stats.flow.Add(flowHandoff)
		r.eng.closeConn(c)
		r.free = append(r.free, idx)
		return
	}
	r.conns[idx] = c
	r.nconns++
	r.stats.flow.Add(flowHandoff + flowOpen)
	r.stats.accepted.Add(1)
	c.handled = true
	r.h.OnOpen(c)
	if c.state != stateOpen {
		r.maybeFinish(c)
		return
	}
	r.armRecv(c)
	r.schedule(c)
}

func (r *Reactor) runInbox() {
	q := r.inbox.take()
	for i := range q {
		t := &q[i]
		switch t.kind {
		case taskFunc, taskSync:
			t.fn()
		case taskDrain:
			r.drain()
		case taskForce:
			r.force()
		case taskHandoff:
			r.open(t.fd, t.nc)
		default:
			c := r.conn(t.gen, t.c.index)
			if c == nil || c != t.c {
				continue
			}
			switch t.kind {
			case taskWrite:
				if c.state != stateOpen {
					continue
				}
				if _, err := c.Write(t.data); err != nil {
					r.closeNow(c, err)
				}
			case taskClose:
				if c.state == stateOpen {
					r.closeGraceful(c, nil)
				}
			case taskConnFunc:
				if c.state == stateOpen {
					t.cfn(c)
				}
			}
		}
	}
	r.inbox.recycle(q)
}

func (r *Reactor) takeReturns() {
	r.retMu.Lock()
	ids := r.returned
	r.returned = nil
	r.retFlag.Store(false)
	r.retMu.Unlock()
	for _, id := range ids {
		r.eng.releaseBuffer(id)
	}
}

// releaseBuffer returns a held buffer, directly on the loop or through the
// return list from other goroutines.
func (r *Reactor) releaseBuffer(id int32) {
	if r.onLoop() {
		r.eng.releaseBuffer(id)
		return
	}
	r.retMu.Lock()
	r.returned = append(r.returned, id)
	r.retFlag.Store(true)
	r.retMu.Unlock()
	r.inbox.kick()
}
