// Package acceptor accepts TCP connections on its own io_uring and hands
// each socket to a reactor.
//
// One goroutine, locked to its OS thread, runs a multishot accept per
// listener: one submission accepts every connection until it is cancelled.
// Each accepted socket is posted into the chosen reactor's ring with
// IORING_OP_MSG_RING, which also wakes that reactor if it sleeps in
// io_uring_enter: no lock, no channel, no eventfd on the hot path.
package acceptor

import (
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gyre-io/gyre/internal/uring"
	"github.com/gyre-io/gyre/reactor"
)

// Operations encoded in the acceptor ring's user data.
const (
	opAccept  uint8 = iota + 1 // index: listener
	opHandoff                  // index: the socket being handed over
	opBackoff
	opWake
)

// Stats is a snapshot of an acceptor's counters.
type Stats struct {
	Accepted       uint64 // sockets accepted and handed to a reactor
	AcceptErrors   uint64 // accept completions with an error (EMFILE, ...)
	HandoffsFailed uint64 // sockets closed because their reactor was gone
}

// Acceptor owns the listeners and the accept ring. Its methods are safe for
// concurrent use.
type Acceptor struct {
	cfg     Config
	group   *reactor.Group
	targets []*reactor.Reactor
	lns     []listener
	loads   []int
	sent    []uint64 // sockets posted to each reactor

	ring     *uring.Ring
	efd      int
	armed    []bool // multishot accept in flight, per listener
	waiting  []bool // re-arm after the back-off, per listener
	backoff  time.Duration
	timerOn  bool
	pending  int // hand-offs whose MSG_RING has not completed
	closing  bool
	lastWarn time.Time

	accepted, acceptErrs, handoffFails atomic.Uint64

	closeOnce  sync.Once
	efdMu      sync.Mutex // guards efd, started and closeAsked against Close racing Listen and teardown
	started    bool       // run was started: it closes done
	closeAsked bool       // Close ran before the eventfd existed
	done       chan struct{}
	err        error
}

// Listen binds every address in cfg.Addrs, starts the accept goroutine and
// registers the acceptor with g, so g.Shutdown stops accepting first.
// Listen returns once the listeners are bound and the ring is up.
func Listen(cfg Config, g *reactor.Group) (*Acceptor, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if g == nil || len(g.Reactors()) == 0 {
		return nil, fmt.Errorf("%w: no reactors to hand connections to", ErrConfig)
	}
	a := &Acceptor{
		cfg:     cfg,
		group:   g,
		targets: g.Reactors(),
		loads:   make([]int, len(g.Reactors())),
		sent:    make([]uint64, len(g.Reactors())),
		efd:     -1,
		done:    make(chan struct{}),
	}
	// Handlers may read state the caller set up after NewGroup: order it
	// before the first connection.
	if err := g.Sync(); err != nil {
		return nil, err
	}
	// Register before binding: a group that is stopping refuses here, so
	// no socket is ever accepted for reactors that are about to exit.
	if err := g.AddSource(a); err != nil {
		return nil, err
	}
	for _, addr := range cfg.Addrs {
		ln, err := listen(addr, cfg)
		if err != nil {
			a.closeListeners()
			_ = a.Close() // registered above: mark it done
			return nil, err
		}
		a.lns = append(a.lns, ln)
	}
	a.armed = make([]bool, len(a.lns))
	a.waiting = make([]bool, len(a.lns))
	ready := make(chan error, 1)
	a.efdMu.Lock()
	a.started = true
	a.efdMu.Unlock()
	go a.run(ready)
	if err := <-ready; err != nil {
		<-a.done
		return nil, err
	}
	return a, nil
}

// Addrs returns the bound addresses, in the order of Config.Addrs.
func (a *Acceptor) Addrs() []net.Addr {
	out := make([]net.Addr, len(a.lns))
	for i := range a.lns {
		out[i] = a.lns[i].addr // fixed at Listen; fd is the loop's
	}
	return out
}

// Stats returns a snapshot of the acceptor's counters.
func (a *Acceptor) Stats() Stats {
	return Stats{
		Accepted:       a.accepted.Load(),
		AcceptErrors:   a.acceptErrs.Load(),
		HandoffsFailed: a.handoffFails.Load(),
	}
}

// Close stops accepting, closes the listeners and waits until every socket
// already accepted has reached its reactor. Idempotent.
func (a *Acceptor) Close() error {
	started := false
	a.closeOnce.Do(func() {
		a.efdMu.Lock()
		a.closeAsked = true
		if a.efd >= 0 {
			wakeEventfd(a.efd)
		}
		started = a.started
		if !started {
			close(a.done) // Listen failed or the group refused it: nothing runs
		}
		a.efdMu.Unlock()
	})
	<-a.done
	return nil
}

// Wait blocks until the acceptor stops and returns reactor.ErrServerClosed
// after Close, or the error that stopped it.
func (a *Acceptor) Wait() error {
	<-a.done
	if a.err != nil {
		return a.err
	}
	return reactor.ErrServerClosed
}

func (a *Acceptor) run(ready chan<- error) {
	runtime.LockOSThread() // never unlocked: the ring is single-issuer
	defer close(a.done)
	defer a.teardown()
	ring, err := uring.New(uring.Config{Entries: 256, ExtraFlags: a.cfg.ringExtraFlags})
	if err != nil {
		a.closeListeners()
		ready <- fmt.Errorf("acceptor: %w", err)
		return
	}
	a.ring = ring
	efd, err := newEventfd()
	if err != nil {
		ready <- fmt.Errorf("acceptor: %w", err)
		return
	}
	a.efdMu.Lock()
	a.efd = efd
	if a.closeAsked {
		wakeEventfd(efd) // Close came first: stop as soon as the loop runs
	}
	a.efdMu.Unlock()
	ring.PrepPollMultishot(efd, pollIn, uring.Pack(opWake, 0, 0))
	for i := range a.lns {
		a.arm(i)
	}
	if err := ring.Submit(); err != nil {
		ready <- fmt.Errorf("acceptor: arming accepts: %w", err)
		return
	}
	ready <- nil
	a.loop()
}

func (a *Acceptor) arm(i int) {
	a.armed[i] = true
	a.ring.PrepMultishotAccept(a.lns[i].fd, uring.Pack(opAccept, 0, uint32(i)))
}

// yieldEvery is how often a busy acceptor yields to the Go scheduler.
const yieldEvery = 5 * time.Millisecond

func (a *Acceptor) loop() {
	cqes := make([]uring.CQE, 128)
	yielded := time.Now()
	for {
		n := a.ring.Reap(cqes)
		if now := time.Now(); now.Sub(yielded) > yieldEvery {
			// As the reactors do (see reactor's yieldEvery): a locked
			// goroutine that never passes through the scheduler has its P
			// taken by sysmon every 10 ms while it waits in io_uring_enter.
			yielded = now
			runtime.Gosched()
		}
		for i := 0; i < n; i++ {
			a.complete(&cqes[i])
		}
		if a.closing && a.pending == 0 && !anyTrue(a.armed) {
			return
		}
		if n == len(cqes) {
			if err := a.ring.Submit(); err != nil {
				a.err = fmt.Errorf("acceptor: %w", err)
				return
			}
			continue
		}
		if err := a.ring.SubmitAndWait(0); err != nil {
			a.err = fmt.Errorf("acceptor: %w", err)
			a.cfg.Logger.Error("acceptor stopped", "err", err)
			return
		}
	}
}

func (a *Acceptor) complete(e *uring.CQE) {
	op, _, idx := uring.Unpack(e.UserData)
	switch op {
	case opAccept:
		i := int(idx)
		if !e.More() {
			a.armed[i] = false
		}
		if e.Res >= 0 {
			a.handoff(int(e.Res), i)
			a.backoff = 0
		} else if !(a.closing && e.Res == -int32(syscall.ECANCELED)) {
			a.acceptError(i, syscall.Errno(-e.Res))
		}
		if !a.armed[i] && !a.closing && !a.waiting[i] {
			a.arm(i)
		}
	case opHandoff:
		a.pending--
		if e.Res < 0 {
			// The reactor's ring is gone: nobody owns the socket but us.
			closeFd(int(idx))
			a.handoffFails.Add(1)
		} else {
			a.accepted.Add(1)
		}
	case opBackoff:
		a.timerOn = false
		for i, w := range a.waiting {
			if w {
				a.waiting[i] = false
				if !a.armed[i] && !a.closing {
					a.arm(i)
				}
			}
		}
	case opWake:
		if !a.closing {
			a.closing = true
			for i, armed := range a.armed {
				if armed {
					a.ring.PrepCancel(uring.Pack(opAccept, 0, uint32(i)), 0)
				}
			}
		}
	}
}

// handoff posts fd to a reactor's ring. The MSG_RING's own completion
// tells whether it arrived; until then the socket counts as pending.
func (a *Acceptor) handoff(fd, ln int) {
	for i, r := range a.targets {
		// Count sockets posted but not yet opened by the reactor, or a
		// burst of accepts would all see the same loads.
		inFlight := int(a.sent[i] - r.HandedOff())
		a.loads[i] = r.Conns() + max(inFlight, 0)
	}
	t := a.cfg.Balancer.Pick(a.loads)
	if t < 0 || t >= len(a.targets) {
		t = ((t % len(a.targets)) + len(a.targets)) % len(a.targets)
	}
	a.pending++
	a.sent[t]++
	a.ring.PrepMsgRingData(a.targets[t].RingFD(), int32(fd), uring.Pack(uring.OpHandoff, 0, uint32(ln)), uring.Pack(opHandoff, 0, uint32(fd)))
}

// acceptError counts and logs an accept failure. Running out of descriptors
// (EMFILE, ENFILE) or memory is not fatal: the acceptor pauses, with a
// doubling back-off, and tries again; the backlog holds new connections.
func (a *Acceptor) acceptError(ln int, errno syscall.Errno) {
	a.acceptErrs.Add(1)
	switch errno {
	case syscall.ECONNABORTED, syscall.EAGAIN, syscall.EINTR:
		return // the peer gave up, or a spurious wake-up: try again at once
	}
	if a.backoff == 0 {
		a.backoff = minBackoff
	} else {
		a.backoff = min(2*a.backoff, maxBackoff)
	}
	if now := time.Now(); now.Sub(a.lastWarn) >= time.Second {
		a.lastWarn = now
		a.cfg.Logger.Warn("accept failed; backing off", "addr", a.lns[ln].addr.String(),
			"err", errno.Error(), "backoff", a.backoff, "errors", a.acceptErrs.Load())
	}
	if a.armed[ln] {
		return // still armed (the kernel kept the multishot going)
	}
	a.waiting[ln] = true
	if !a.timerOn {
		a.timerOn = true
		a.ring.PrepTimeout(a.backoff, uring.Pack(opBackoff, 0, 0))
	}
}

func (a *Acceptor) teardown() {
	a.closeListeners()
	if a.ring != nil {
		a.ring.Close()
	}
	a.efdMu.Lock()
	if a.efd >= 0 {
		closeFd(a.efd)
		a.efd = -1
	}
	a.efdMu.Unlock()
}

func (a *Acceptor) closeListeners() {
	for i := range a.lns {
		if a.lns[i].fd >= 0 {
			closeFd(a.lns[i].fd)
			a.lns[i].fd = -1
		}
	}
}

func anyTrue(b []bool) bool {
	for _, v := range b {
		if v {
			return true
		}
	}
	return false
}
