package reactor

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/gyre-io/gyre/bufring"
	"github.com/gyre-io/gyre/internal/uring"
)

// Operations encoded in user data (see internal/uring's layout).
const (
	opRecv uint8 = iota + 1
	opSend
	opCancel
	opShutdown
	opTimer
	opWake
)

// bufGroup is the buffer group ID of every reactor's buffer ring (each
// reactor has its own ring, so the IDs do not collide).
const bufGroup = 1

// reapBatch is how many completions one pass copies out of the kernel.
const reapBatch = 256

// yieldEvery is how often a busy reactor yields to the Go scheduler. The
// runtime's sysmon treats a goroutine that has not passed through the
// scheduler for 10 ms as running too long; when it finds that goroutine in
// a system call (a reactor waiting in io_uring_enter), it takes its P away,
// wakes another thread to run it, and goes back to polling every 20 µs. A
// reactor never passes through the scheduler on its own, so without this
// that happened every 10 ms, costing several percent of a core in thread
// wake-ups. A yield of a locked goroutine costs two thread switches; every
// 5 ms that is a few hundred a second.
const yieldEvery = int64(5 * time.Millisecond)

// runState is the reactor's life cycle.
type runState uint8

const (
	running runState = iota
	draining
	forcing
)

// Reactor is one event loop: a goroutine locked to its OS thread (and
// optionally pinned to a CPU) with its own io_uring, buffer ring and
// connection table. Its methods are safe for concurrent use unless marked
// loop-only.
type Reactor struct {
	id    int
	cfg   Config
	h     Handler
	ph    PressureHandler
	sh    ShutdownHandler
	tk    Ticker
	log   *slog.Logger
	epoch time.Time

	// Fixed after start.
	ring   *uring.Ring
	bufs   *bufring.Ring
	ringFd int
	tid    int
	efd    int

	// Loop-only state.
	conns   []*Conn
	gens    []uint32
	free    []uint32
	dirty   []*Conn
	starved []*Conn
	cqes    []uring.CQE
	timers  timerHeap
	now     int64
	armedAt int64 // when the armed TIMEOUT fires; 0: none
	state   runState
	nconns  int
	woken   bool
	later   []func() // see Later
	yielded int64    // r.now at the last yield to the Go scheduler

	inbox inbox

	// Notifier state (see notify.go).
	notifyMu  sync.Mutex
	notifiers atomic.Pointer[[]*Notifier]
	notified  atomic.Bool // some Notifier is pending
	sleeping  atomic.Bool // the loop is about to wait or waits in io_uring_enter

	retMu    sync.Mutex
	returned []uint16
	retFlag  atomic.Bool

	stats counters
	done  chan struct{}
	err   error // why the loop ended abnormally; read after done
}

// counters are written by the loop and read by Stats at any time.
type counters struct {
	conns, accepted, closed      atomic.Int64
	bytesIn, bytesOut            atomic.Uint64
	recvs, sends                 atomic.Uint64
	paused, outputFull, inputMax atomic.Uint64
	rearms                       atomic.Uint64
	handoffs                     atomic.Uint64
}

// Stats is a snapshot of a reactor's (or a group's) counters.
type Stats struct {
	Conns         int64  // open now
	Accepted      int64  // since start
	Closed        int64  // since start
	BytesIn       uint64 // received
	BytesOut      uint64 // confirmed sent
	Recvs         uint64 // receive completions with data
	Sends         uint64 // send completions
	BufExhausted  uint64 // receives that found the buffer ring empty
	BufOwned      int    // receive buffers out of the kernel's reach now
	Rearms        uint64 // multishot receives re-armed (ENOBUFS, end of multishot, resume)
	Paused        uint64 // times reading stopped for backpressure
	OutputFull    uint64 // writes refused with ErrOutputFull
	InputLimit    uint64 // connections closed with ErrInputLimit
	CQOverflow    uint64 // waits that found completions overflowed
	InboxDepth    int64  // tasks waiting in the inbox now
	InboxRejected uint64 // pushes refused with ErrInboxFull
}

func (s *Stats) add(o Stats) {
	s.Conns += o.Conns
	s.Accepted += o.Accepted
	s.Closed += o.Closed
	s.BytesIn += o.BytesIn
	s.BytesOut += o.BytesOut
	s.Recvs += o.Recvs
	s.Sends += o.Sends
	s.BufExhausted += o.BufExhausted
	s.BufOwned += o.BufOwned
	s.Rearms += o.Rearms
	s.Paused += o.Paused
	s.OutputFull += o.OutputFull
	s.InputLimit += o.InputLimit
	s.CQOverflow += o.CQOverflow
	s.InboxDepth += o.InboxDepth
	s.InboxRejected += o.InboxRejected
}

// Stats returns a snapshot of the reactor's counters without stopping it.
func (r *Reactor) Stats() Stats {
	s := Stats{
		Conns:         r.stats.conns.Load(),
		Accepted:      r.stats.accepted.Load(),
		Closed:        r.stats.closed.Load(),
		BytesIn:       r.stats.bytesIn.Load(),
		BytesOut:      r.stats.bytesOut.Load(),
		Recvs:         r.stats.recvs.Load(),
		Sends:         r.stats.sends.Load(),
		Rearms:        r.stats.rearms.Load(),
		Paused:        r.stats.paused.Load(),
		OutputFull:    r.stats.outputFull.Load(),
		InputLimit:    r.stats.inputMax.Load(),
		InboxDepth:    r.inbox.depth.Load(),
		InboxRejected: r.inbox.full.Load(),
	}
	if b := r.bufs; b != nil {
		bs := b.Stats()
		s.BufExhausted, s.BufOwned = bs.Exhausted, bs.Owned
	}
	s.CQOverflow = overflowCount(r)
	return s
}

// ID returns the reactor's index in its group.
func (r *Reactor) ID() int { return r.id }

// RingFD returns the descriptor of the reactor's io_uring. The acceptor
// posts accepted sockets to it with IORING_OP_MSG_RING; nothing else
// should use it.
func (r *Reactor) RingFD() int { return r.ringFd }

// HandedOff returns how many sockets were handed to this reactor so far.
// The acceptor compares it with what it sent to count hand-offs in flight.
func (r *Reactor) HandedOff() uint64 { return r.stats.handoffs.Load() }

// Conns returns the number of open connections.
func (r *Reactor) Conns() int { return int(r.stats.conns.Load()) }

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
// there, so comparing thread IDs is exact.
func (r *Reactor) onLoop() bool { return gettid() == r.tid }

// start runs the loop on a new goroutine and returns once the ring is up.
func (r *Reactor) start(cpu int) error {
	ready := make(chan error, 1)
	go r.run(cpu, ready)
	return <-ready
}

func (r *Reactor) run(cpu int, ready chan<- error) {
	// Never unlocked: the thread exits with the goroutine, so the ring's
	// single issuer can never run another goroutine.
	runtime.LockOSThread()
	defer close(r.done)
	if err := r.setup(cpu); err != nil {
		r.teardown()
		ready <- err
		return
	}
	ready <- nil
	if tk := r.tk; tk != nil {
		r.timers.add(timerEntry{when: r.now, index: tickIndex})
	}
	r.loop()
	r.teardown()
}

func (r *Reactor) setup(cpu int) error {
	r.tid = gettid()
	if cpu >= 0 {
		if err := pinCPU(cpu); err != nil {
			return fmt.Errorf("reactor %d: pinning to CPU %d: %w", r.id, cpu, err)
		}
	}
	ring, err := uring.New(uring.Config{
		Entries:    r.cfg.RingEntries,
		ExtraFlags: r.cfg.ringExtraFlags,
		Fault:      r.cfg.ringFault,
	})
	if err != nil {
		return fmt.Errorf("reactor %d: %w", r.id, err)
	}
	r.ring, r.ringFd = ring, ring.Fd()
	bufs, err := bufring.New(r.cfg.Buffers)
	if err != nil {
		return fmt.Errorf("reactor %d: %w", r.id, err)
	}
	r.bufs = bufs
	if err := bufs.Register(ring, bufGroup); err != nil {
		return fmt.Errorf("reactor %d: %w", r.id, err)
	}
	efd, err := newEventfd()
	if err != nil {
		return fmt.Errorf("reactor %d: %w", r.id, err)
	}
	r.efd = efd
	r.ring.PrepPollMultishot(efd, pollIn, uring.Pack(opWake, 0, 0))
	if err := r.ring.Submit(); err != nil {
		return fmt.Errorf("reactor %d: arming the inbox wakeup: %w", r.id, err)
	}
	r.tick()
	r.log.Debug("reactor started", "reactor", r.id, "mode", ring.Mode().String(), "cpu", cpu)
	return nil
}

// teardown releases everything setup acquired. Every connection is closed
// and no request referencing a buffer is in flight when it runs.
func (r *Reactor) teardown() {
	for _, t := range r.inbox.close() {
		r.dropTask(t)
	}
	if r.bufs != nil {
		// Held leases may release later: returns after this are ignored.
		r.retMu.Lock()
		r.returned = nil
		r.retMu.Unlock()
	}
	if r.ring != nil {
		// A hand-off that landed after the last loop iteration would
		// otherwise leave its socket open with no owner.
		for n := r.ring.Reap(r.cqes); n > 0; n = r.ring.Reap(r.cqes) {
			for i := 0; i < n; i++ {
				if op, _, _ := uring.Unpack(r.cqes[i].UserData); op == uring.OpHandoff && r.cqes[i].Res >= 0 {
					closeFd(int(r.cqes[i].Res))
				}
			}
		}
	}
	if r.bufs != nil {
		_ = r.bufs.Close() // unregister while the ring is alive, then unmap
	}
	if r.ring != nil {
		r.ring.Close() // cancels the eventfd poll and any stale timeout
	}
	if r.efd > 0 {
		closeFd(r.efd)
		r.efd = -1
	}
}

func (r *Reactor) dropTask(t task) {
	if t.kind == taskFunc || t.kind == taskConnFunc || t.kind == taskWrite {
		r.log.Debug("reactor stopped with a task queued", "reactor", r.id, "kind", int(t.kind))
	}
}

func (r *Reactor) loop() {
	for {
		n := r.ring.Reap(r.cqes)
		r.tick()
		if r.now-r.yielded > yieldEvery {
			r.yielded = r.now
			runtime.Gosched()
		}
		for i := 0; i < n; i++ {
			r.complete(&r.cqes[i])
		}
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
		if n == len(r.cqes) {
			// More may be ready: submit what is queued and reap again.
			if err := r.ring.Submit(); err != nil {
				r.fatal(err)
				return
			}
			continue
		}
		r.armTimer()
		if !r.mayWait() {
			// A Notifier fired since the check above: submit, do not sleep.
			if err := r.ring.Submit(); err != nil {
				r.fatal(err)
				return
			}
			continue
		}
		err := r.ring.SubmitAndWait(0)
		r.awake()
		if err != nil {
			r.fatal(err)
			return
		}
	}
}

// fatal ends the loop after an io_uring_enter failure that retrying cannot
// fix. Connections are aborted; their sockets closed.
func (r *Reactor) fatal(err error) {
	r.err = err
	r.log.Error("reactor stopped: io_uring_enter failed", "reactor", r.id, "err", err)
	for _, c := range r.conns {
		if c != nil {
			closeFd(c.fd)
			r.finish(c, err)
		}
	}
}

// complete dispatches one completion.
func (r *Reactor) complete(e *uring.CQE) {
	op, gen, idx := uring.Unpack(e.UserData)
	switch op {
	case opRecv:
		r.onRecv(e, gen, idx)
	case opSend:
		r.onSend(e, gen, idx)
	case opWake:
		r.woken = true
		drainEventfd(r.efd)
		if !e.More() && r.state == running {
			r.ring.PrepPollMultishot(r.efd, pollIn, uring.Pack(opWake, 0, 0))
		}
	case opTimer:
		if int64(idx) == r.armedAt&0xffffffff {
			r.armedAt = 0
		}
	case uring.OpHandoff:
		r.onHandoff(int(e.Res))
	case opCancel, opShutdown:
		// Results do not matter: the target's own completion decides.
	}
}

// conn returns the live connection at idx with generation gen, or nil if
// the completion belongs to an earlier occupant of the slot.
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

func (r *Reactor) onHandoff(fd int) {
	r.stats.handoffs.Add(1)
	if fd < 0 {
		return
	}
	if r.state != running {
		closeFd(fd)
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
	r.gens[idx] = (r.gens[idx] + 1) & uring.GenMask
	c := &Conn{r: r, fd: fd, index: idx, gen: r.gens[idx], curBuf: -1, lastActive: r.now}
	r.conns[idx] = c
	r.nconns++
	r.stats.conns.Add(1)
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

func (r *Reactor) armRecv(c *Conn) {
	if c.recvArmed || c.state != stateOpen || c.readStopped() {
		return
	}
	if r.bufs.Free() == 0 {
		if !c.starved {
			c.starved = true
			r.starved = append(r.starved, c)
		}
		return
	}
	c.recvArmed, c.cancelled = true, false
	r.ring.PrepRecvMultishot(c.fd, bufGroup, uring.Pack(opRecv, c.gen, c.index))
}

func (r *Reactor) onRecv(e *uring.CQE, gen, idx uint32) {
	c := r.conn(gen, idx)
	more := e.More()
	if c == nil {
		if id, ok := e.Buffer(); ok {
			r.bufs.Take(id, 0)
			r.bufs.Release(id)
		}
		return
	}
	if !more {
		c.recvArmed = false
	}
	switch {
	case e.Res > 0:
		id, ok := e.Buffer()
		if !ok {
			r.closeNow(c, opError("read", c, errors.New("receive completion without a buffer")))
			return
		}
		view := r.bufs.Take(id, int(e.Res))
		r.stats.recvs.Add(1)
		r.stats.bytesIn.Add(uint64(e.Res))
		c.lastActive = r.now
		r.deliver(c, view, id)
	case e.Res == 0:
		if id, ok := e.Buffer(); ok {
			r.bufs.Take(id, 0)
			r.bufs.Release(id)
		}
		c.eof = true
		if c.state == stateOpen {
			r.closeGraceful(c, io.EOF)
		}
	case e.Res == -int32(syscall.ENOBUFS):
		r.bufs.NoteExhausted()
	case e.Res == -int32(syscall.ECANCELED):
		// We cancelled it: paused or closing.
	case e.Res == -int32(syscall.EAGAIN), e.Res == -int32(syscall.EINTR):
		// Nothing was received: arm again.
	default:
		c.eof = true // the socket failed: nothing more will come
		if c.state == stateOpen || c.state == stateClosing {
			r.closeNow(c, opError("read", c, syscall.Errno(-e.Res)))
		}
	}
	if !c.recvArmed && c.state == stateOpen && !c.readStopped() {
		// The multishot ended (ENOBUFS, a cancel that raced a resume, or
		// the kernel's own choice): re-arm now, or when buffers return.
		r.stats.rearms.Add(1)
		r.armRecv(c)
	}
	if !c.recvArmed && c.state == stateLinger && !c.eof && r.now < c.lingerUntil {
		r.armLinger(c)
	}
	r.maybeFinish(c)
}

// armLinger keeps a receive armed while lingering, so the peer's EOF is
// seen and its late bytes are discarded. Without a free buffer it gives up:
// lingering is a courtesy, not worth starving open connections.
func (r *Reactor) armLinger(c *Conn) {
	if r.bufs.Free() == 0 {
		c.lingerUntil = r.now
		return
	}
	c.recvArmed, c.cancelled = true, false
	r.ring.PrepRecvMultishot(c.fd, bufGroup, uring.Pack(opRecv, c.gen, c.index))
}

// deliver hands received bytes to the handler, accumulating what it
// leaves unconsumed.
func (r *Reactor) deliver(c *Conn, view []byte, id uint16) {
	if c.state != stateOpen {
		r.bufs.Release(id) // reading has stopped: late bytes are dropped
		return
	}
	if c.readStopped() {
		// Received before the pause took effect: keep it for the resume,
		// without calling the handler. Bounded by the completions already
		// in flight when the cancel landed (at most the buffer ring), so
		// MaxInput is not applied here.
		c.acc = append(c.acc, view...)
		r.bufs.Release(id)
		return
	}
	if len(c.acc) == c.accOff {
		// Fast path: the handler reads straight from the receive buffer.
		c.acc, c.accOff = c.acc[:0], 0
		c.curBuf, c.held, c.inAcc = int32(id), false, false
		n := r.callData(c, view)
		c.curBuf = -1
		if n < len(view) && c.state == stateOpen {
			r.keep(c, view[n:])
		}
		if !c.held {
			r.bufs.Release(id)
		}
		return
	}
	if !r.keep(c, view) {
		r.bufs.Release(id)
		return
	}
	r.bufs.Release(id)
	r.redeliver(c)
}

func (r *Reactor) callData(c *Conn, b []byte) int {
	n := r.h.OnData(c, b)
	if n < 0 || n > len(b) {
		r.log.Error("handler returned an out-of-range consumed count; closing", "reactor", r.id, "conn", c.ID(), "consumed", n, "len", len(b))
		r.closeNow(c, fmt.Errorf("reactor: OnData consumed %d of %d bytes", n, len(b)))
		return len(b)
	}
	return n
}

// keep appends unconsumed input to the accumulation buffer, compacting
// first, and closes the connection if it would exceed MaxInput.
func (r *Reactor) keep(c *Conn, b []byte) bool {
	pending := len(c.acc) - c.accOff
	if pending+len(b) > r.cfg.MaxInput {
		r.stats.inputMax.Add(1)
		r.closeNow(c, ErrInputLimit)
		return false
	}
	if c.accOff > 0 && len(c.acc)+len(b) > cap(c.acc) {
		n := copy(c.acc, c.acc[c.accOff:])
		c.acc, c.accOff = c.acc[:n], 0
	}
	c.acc = append(c.acc, b...)
	return true
}

func (r *Reactor) markDirty(c *Conn) {
	if !c.inDirty {
		c.inDirty = true
		r.dirty = append(r.dirty, c)
	}
}

// flush starts sends for connections written to in this iteration,
// applies backpressure, and re-arms receives starved of buffers.
func (r *Reactor) flush() {
	for i, c := range r.dirty {
		r.dirty[i] = nil
		c.inDirty = false
		if c.state == stateClosed || c.state == stateAborted {
			continue
		}
		if !c.sending && len(c.out) > 0 {
			r.startSend(c)
		}
		if !c.paused && c.state == stateOpen && c.Buffered() > r.cfg.WriteHighWater {
			r.pause(c)
		}
		if c.writeDeadline != 0 {
			r.schedule(c)
		}
	}
	r.dirty = r.dirty[:0]
	if len(r.starved) > 0 && r.bufs.Free() > 0 {
		s := r.starved
		r.starved = r.starved[len(s):]
		for i, c := range s {
			s[i] = nil
			c.starved = false
			if c.state == stateOpen {
				r.armRecv(c)
			}
		}
		// armRecv may have re-queued some: keep the slice's backing array.
		r.starved = append(s[:0], r.starved...)
	}
}

func (r *Reactor) startSend(c *Conn) {
	c.inflight, c.out = c.out, c.inflight[:0]
	c.sent = 0
	c.sending = true
	r.ring.PrepSend(c.fd, unsafe.Pointer(&c.inflight[0]), len(c.inflight), uring.Pack(opSend, c.gen, c.index))
}

func (r *Reactor) onSend(e *uring.CQE, gen, idx uint32) {
	c := r.conn(gen, idx)
	if c == nil {
		return
	}
	c.sending = false
	if (e.Res == -int32(syscall.EAGAIN) || e.Res == -int32(syscall.EINTR)) && c.state != stateAborted {
		// Nothing was sent: try the same bytes again.
		c.sending = true
		r.ring.PrepSend(c.fd, unsafe.Pointer(&c.inflight[c.sent]), len(c.inflight)-c.sent, uring.Pack(opSend, c.gen, c.index))
		return
	}
	if e.Res < 0 {
		c.inflight, c.sent = c.inflight[:0], 0
		if c.state == stateOpen || c.state == stateClosing {
			r.closeNow(c, opError("write", c, syscall.Errno(-e.Res)))
		}
		r.maybeFinish(c)
		return
	}
	r.stats.sends.Add(1)
	r.stats.bytesOut.Add(uint64(e.Res))
	c.lastActive = r.now
	c.sent += int(e.Res)
	if c.state == stateAborted {
		r.maybeFinish(c)
		return
	}
	switch {
	case c.sent < len(c.inflight):
		// Partial send: the rest goes next, before anything newer.
		c.sending = true
		r.ring.PrepSend(c.fd, unsafe.Pointer(&c.inflight[c.sent]), len(c.inflight)-c.sent, uring.Pack(opSend, c.gen, c.index))
	case len(c.out) > 0:
		c.inflight = c.inflight[:0]
		r.startSend(c)
	default:
		c.inflight, c.sent = c.inflight[:0], 0
	}
	if c.paused && c.Buffered() <= r.cfg.WriteLowWater {
		r.resume(c)
	}
	r.maybeFinish(c)
}

// pause stops reading from c until its output drains (backpressure).
func (r *Reactor) pause(c *Conn) {
	c.paused = true
	r.stats.paused.Add(1)
	r.cancelRecv(c)
	if r.ph != nil {
		r.ph.OnPressure(c, true)
	}
}

func (r *Reactor) resume(c *Conn) {
	c.paused = false
	if r.ph != nil {
		r.ph.OnPressure(c, false)
	}
	r.restart(c)
}

// restart presents kept input again and re-arms the receive, after
// backpressure or a handler pause ends.
func (r *Reactor) restart(c *Conn) {
	if c.readStopped() || c.state != stateOpen {
		return
	}
	if len(c.acc) > c.accOff {
		// Input the handler left while it could not take it gets another
		// look now; nothing else would present it if the peer sends no more.
		r.redeliver(c)
	}
	if c.state == stateOpen && !c.readStopped() {
		r.stats.rearms.Add(1)
		r.armRecv(c)
	}
}

// redeliver presents the kept input (with whatever keep just appended).
// If the handler holds it, the bytes move to the lease and accumulation
// starts afresh.
func (r *Reactor) redeliver(c *Conn) {
	in := c.acc[c.accOff:]
	c.held, c.inAcc = false, true
	n := r.callData(c, in)
	c.inAcc = false
	if c.held {
		rest := in[n:]
		c.acc, c.accOff = nil, 0
		if len(rest) > 0 && c.state == stateOpen {
			r.keep(c, rest)
		}
		return
	}
	c.accOff += n
	if c.accOff == len(c.acc) {
		c.acc, c.accOff = c.acc[:0], 0
	}
}

func (r *Reactor) cancelRecv(c *Conn) {
	if c.recvArmed && !c.cancelled {
		c.cancelled = true
		r.ring.PrepCancel(uring.Pack(opRecv, c.gen, c.index), uring.Pack(opCancel, c.gen, c.index))
	}
}

// closeGraceful stops reading and closes c once its output is sent.
func (r *Reactor) closeGraceful(c *Conn, cause error) {
	if c.state != stateOpen {
		return
	}
	c.state = stateClosing
	c.cause = cause
	c.closedFlag.Store(true)
	r.cancelRecv(c)
	c.flushDeadline = r.now + int64(r.cfg.FlushTimeout)
	r.schedule(c)
	if len(c.out) > 0 {
		r.markDirty(c)
	}
	r.maybeFinish(c)
}

// closeNow drops unsent output and closes c as soon as the kernel has
// finished with its in-flight requests.
func (r *Reactor) closeNow(c *Conn, cause error) {
	switch c.state {
	case stateOpen:
		c.cause = cause
	case stateClosing, stateLinger:
		if c.cause == nil {
			c.cause = cause
		}
	default:
		return
	}
	c.state = stateAborted
	c.closedFlag.Store(true)
	c.out = c.out[:0]
	r.cancelRecv(c)
	if c.sending {
		// Unblock a send stuck on a peer that does not read.
		r.ring.PrepShutdown(c.fd, shutRDWR, uring.Pack(opShutdown, c.gen, c.index))
	}
	r.maybeFinish(c)
}

// maybeFinish closes the socket once nothing is in flight and nothing is
// left to send.
func (r *Reactor) maybeFinish(c *Conn) {
	switch c.state {
	case stateOpen, stateClosed:
		return
	case stateClosing:
		if c.sending || len(c.out) > 0 {
			return
		}
		if r.cfg.LingerTimeout > 0 && !c.eof {
			// Everything is sent: queue FIN and read until the peer closes,
			// so unread input does not turn our close into an RST.
			c.state = stateLinger
			c.lingerUntil = r.now + int64(r.cfg.LingerTimeout)
			r.ring.PrepShutdown(c.fd, shutWR, uring.Pack(opShutdown, c.gen, c.index))
			r.schedule(c)
			if !c.recvArmed {
				r.armLinger(c)
			}
			if c.lingerUntil > r.now {
				return
			}
		}
	case stateLinger:
		if !c.eof && r.now < c.lingerUntil {
			return
		}
	}
	if c.recvArmed || c.sending {
		if c.recvArmed {
			r.cancelRecv(c)
		}
		return
	}
	closeFd(c.fd)
	r.finish(c, c.cause)
}

func (r *Reactor) finish(c *Conn, cause error) {
	c.state = stateClosed
	c.closedFlag.Store(true)
	if c.handled {
		r.h.OnClose(c, cause)
	}
	c.fd = -1
	c.acc, c.out, c.inflight = nil, nil, nil
	r.conns[c.index] = nil
	r.free = append(r.free, c.index)
	r.nconns--
	r.stats.conns.Add(-1)
	r.stats.closed.Add(1)
}

// schedule makes sure the connection's earliest deadline has a timer entry.
func (r *Reactor) schedule(c *Conn) {
	when := r.nextDeadline(c)
	if when == 0 {
		return
	}
	if when <= r.now {
		// Due already but not acted on (e.g. waiting for a cancel): look
		// again shortly rather than spin in runTimers.
		when = r.now + int64(time.Millisecond)
	}
	if c.timerAt == 0 || when < c.timerAt {
		c.timerAt = when
		r.timers.add(timerEntry{when: when, index: c.index, gen: c.gen})
	}
}

func (r *Reactor) nextDeadline(c *Conn) int64 {
	var when int64
	consider := func(t int64) {
		if t != 0 && (when == 0 || t < when) {
			when = t
		}
	}
	if c.state == stateOpen {
		consider(c.readDeadline)
		if r.cfg.IdleTimeout > 0 {
			consider(c.lastActive + int64(r.cfg.IdleTimeout))
		}
	}
	consider(c.writeDeadline)
	switch c.state {
	case stateClosing:
		consider(c.flushDeadline)
	case stateLinger:
		if !c.eof {
			consider(c.lingerUntil)
		}
	}
	return when
}

func (r *Reactor) runTimers() {
	for {
		e, ok := r.timers.popDue(r.now)
		if !ok {
			return
		}
		if e.index == tickIndex {
			if d := r.tk.OnTick(r); d > 0 {
				r.timers.add(timerEntry{when: r.now + int64(d), index: tickIndex})
			}
			continue
		}
		c := r.conn(e.gen, e.index)
		if c == nil || c.timerAt != e.when {
			continue // stale entry
		}
		c.timerAt = 0
		r.expire(c)
		if c.state != stateClosed {
			r.schedule(c)
		}
	}
}

// expire acts on whichever of c's deadlines have passed.
func (r *Reactor) expire(c *Conn) {
	now := r.now
	if c.writeDeadline != 0 && now >= c.writeDeadline {
		c.writeDeadline = 0
		if c.Buffered() > 0 {
			r.closeNow(c, ErrWriteTimeout)
			return
		}
	}
	switch c.state {
	case stateOpen:
		if c.readDeadline != 0 && now >= c.readDeadline {
			r.closeGraceful(c, ErrReadTimeout)
		} else if r.cfg.IdleTimeout > 0 && now-c.lastActive >= int64(r.cfg.IdleTimeout) {
			r.closeGraceful(c, ErrIdleTimeout)
		}
	case stateClosing:
		if now >= c.flushDeadline {
			r.closeNow(c, ErrFlushTimeout)
		}
	case stateLinger:
		c.eof = true // the linger time is over: stop reading, cancel, close
		r.maybeFinish(c)
	}
}

// armTimer makes sure a TIMEOUT is armed for the earliest timer entry. A
// TIMEOUT armed for a later time stays and fires harmlessly.
func (r *Reactor) armTimer() {
	when, ok := r.timers.next()
	if !ok || (r.armedAt != 0 && r.armedAt <= when) {
		return
	}
	d := max(when-r.now, int64(50*time.Microsecond))
	r.armedAt = when
	r.ring.PrepTimeout(time.Duration(d), uring.Pack(opTimer, 0, uint32(when&0xffffffff)))
}

func (r *Reactor) runInbox() {
	q := r.inbox.take()
	for i := range q {
		t := &q[i]
		switch t.kind {
		case taskFunc:
			t.fn()
		case taskDrain:
			r.drain()
		case taskForce:
			r.force()
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
		r.bufs.Release(id)
	}
}

// releaseBuffer returns a held buffer, directly on the loop or through the
// return list from other goroutines.
func (r *Reactor) releaseBuffer(id uint16) {
	if r.onLoop() {
		r.bufs.Release(id)
		return
	}
	r.retMu.Lock()
	r.returned = append(r.returned, id)
	r.retFlag.Store(true)
	r.retMu.Unlock()
	r.inbox.kick()
}

// drain begins a graceful shutdown of every connection.
func (r *Reactor) drain() {
	if r.state != running {
		return
	}
	r.state = draining
	for _, c := range r.conns {
		if c == nil || c.state != stateOpen {
			continue
		}
		if r.sh != nil {
			r.sh.OnShutdown(c)
			if c.state == stateOpen {
				// The handler closes it; the flush deadline bounds nothing
				// yet, Shutdown's context does.
				continue
			}
		} else {
			r.closeGraceful(c, ErrServerClosed)
		}
	}
}

// force closes every connection now: the shutdown deadline passed.
func (r *Reactor) force() {
	r.state = forcing
	for _, c := range r.conns {
		if c == nil || c.state == stateClosed {
			continue
		}
		r.closeNow(c, ErrServerClosed)
		if c.state != stateClosed && c.recvArmed {
			// Make a recv that ignores the cancel complete.
			r.ring.PrepShutdown(c.fd, shutRDWR, uring.Pack(opShutdown, c.gen, c.index))
		}
	}
}
