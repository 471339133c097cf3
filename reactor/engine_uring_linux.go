package reactor

import (
	"errors"
	"fmt"
	"github.com/gyre-io/gyre/internal/sys"
	"io"
	"os"
	"time"
	"unsafe"

	"github.com/gyre-io/gyre/internal/bufring"
	"github.com/gyre-io/gyre/internal/uring"
	"golang.org/x/sys/unix"
)

// Operations encoded in io_uring user data (see internal/uring's layout).
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

// uringEngine receives with one multishot receive per connection into a
// provided-buffer ring, sends once per connection per loop iteration, and
// takes accepted sockets from the acceptor's ring through MSG_RING.
type uringEngine struct {
	r       *Reactor
	ring    *uring.Ring
	bufs    *bufring.Ring
	ringFd  int
	efd     int
	cqes    []uring.CQE
	n       int   // completions reaped by wait, delivered by dispatch
	armedAt int64 // when the armed TIMEOUT fires; 0: none

	// Test hooks (see Config).
	extraFlags uint32
	fault      uring.Fault
}

func newUringEngine(r *Reactor) *uringEngine {
	return &uringEngine{r: r, efd: -1, ringFd: -1, cqes: make([]uring.CQE, reapBatch),
		extraFlags: r.cfg.hooks.ringExtraFlags, fault: r.cfg.hooks.ringFault}
}

func (e *uringEngine) kind() Engine { return EngineIOUring }

func (e *uringEngine) setup() error {
	ring, err := uring.New(uring.Config{
		Entries:    e.r.cfg.RingEntries,
		ExtraFlags: e.extraFlags,
		Fault:      e.fault,
	})
	if err != nil {
		return err
	}
	e.ring, e.ringFd = ring, ring.Fd()
	bufs, err := bufring.New(bufring.Config(e.r.cfg.Buffers))
	if err != nil {
		return err
	}
	e.bufs = bufs
	if err := bufs.Register(ring, bufGroup); err != nil {
		return err
	}
	efd, err := sys.NewEventfd()
	if err != nil {
		return err
	}
	e.efd = efd
	e.ring.PrepPollMultishot(efd, unix.POLLIN, uring.Pack(opWake, 0, 0))
	if err := e.ring.Submit(); err != nil {
		return fmt.Errorf("arming the inbox wakeup: %w", err)
	}
	return nil
}

func (e *uringEngine) teardown() {
	if e.ring != nil {
		// A hand-off that landed after the last loop iteration would
		// otherwise leave its socket open with no owner. On a DEFER_TASKRUN
		// ring it may still wait as task work: flush before each reap.
		for e.ring.FlushCompletions(); ; e.ring.FlushCompletions() {
			n := e.ring.Reap(e.cqes)
			if n == 0 {
				break
			}
			for i := 0; i < n; i++ {
				if op, _, _ := uring.Unpack(e.cqes[i].UserData); op == uring.OpHandoff && e.cqes[i].Res >= 0 {
					sys.CloseFd(int(e.cqes[i].Res))
				}
			}
		}
	}
	if e.bufs != nil {
		_ = e.bufs.Close() // unregister while the ring is alive, then unmap
	}
	if e.ring != nil {
		e.ring.Close() // cancels the eventfd poll and any stale timeout
	}
	if e.efd >= 0 {
		sys.CloseFd(e.efd)
		e.efd = -1
	}
}

// attach has nothing to do: receives are armed by startRead.
func (e *uringEngine) attach(*Conn) error { return nil }

func (e *uringEngine) wait(block bool, until int64) error {
	if !block {
		if err := e.ring.SubmitAndGetEvents(); err != nil {
			return err
		}
	} else {
		e.armTimer(until)
		if err := e.ring.SubmitAndWait(0); err != nil {
			return err
		}
	}
	e.n = e.ring.Reap(e.cqes)
	return nil
}

// armTimer makes sure a TIMEOUT is armed for until. A TIMEOUT armed for a
// later time stays and fires harmlessly.
func (e *uringEngine) armTimer(until int64) {
	if until == 0 || (e.armedAt != 0 && e.armedAt <= until) {
		return
	}
	d := max(until-e.r.now, int64(50*time.Microsecond))
	e.armedAt = until
	e.ring.PrepTimeout(time.Duration(d), uring.Pack(opTimer, 0, uint32(until&0xffffffff)))
}

func (e *uringEngine) dispatch() bool {
	n := e.n
	for i := 0; i < n; i++ {
		e.complete(&e.cqes[i])
	}
	e.n = 0
	return n == len(e.cqes) // a full batch: more may be ready
}

// complete dispatches one completion.
func (e *uringEngine) complete(cqe *uring.CQE) {
	op, gen, idx := uring.Unpack(cqe.UserData)
	switch op {
	case opRecv:
		e.onRecv(cqe, gen, idx)
	case opSend:
		e.onSend(cqe, gen, idx)
	case opWake:
		e.r.woken = true
		sys.DrainEventfd(e.efd)
		if !cqe.More() && e.r.state == running {
			e.ring.PrepPollMultishot(e.efd, unix.POLLIN, uring.Pack(opWake, 0, 0))
		}
	case opTimer:
		if int64(idx) == e.armedAt&0xffffffff {
			e.armedAt = 0
		}
	case uring.OpHandoff:
		if cqe.Res < 0 {
			e.r.stats.flow.Add(flowHandoff)
			return
		}
		e.r.open(int(cqe.Res), nil)
	case opCancel, opShutdown:
		// Results do not matter: the target's own completion decides.
	}
}

func (e *uringEngine) startRead(c *Conn) bool {
	if e.bufs.Free() == 0 {
		return false
	}
	c.reading, c.cancelled = true, false
	e.ring.PrepRecvMultishot(c.fd, bufGroup, uring.Pack(opRecv, c.gen, c.index))
	return true
}

func (e *uringEngine) stopRead(c *Conn) {
	if c.reading && !c.cancelled {
		c.cancelled = true
		e.ring.PrepCancel(uring.Pack(opRecv, c.gen, c.index), uring.Pack(opCancel, c.gen, c.index))
	}
}

func (e *uringEngine) onRecv(cqe *uring.CQE, gen, idx uint32) {
	c := e.r.conn(gen, idx)
	if c == nil {
		if id, ok := cqe.Buffer(); ok {
			e.bufs.Take(id, 0)
			e.bufs.Release(id)
		}
		return
	}
	if !cqe.More() {
		c.reading = false
	}
	switch res, errno := cqe.Res, cqe.Errno(); {
	case res > 0:
		id, ok := cqe.Buffer()
		if !ok {
			e.r.closeNow(c, opError("read", c, errors.New("receive completion without a buffer")))
			break
		}
		e.r.received(c, e.bufs.Take(id, int(res)), int32(id))
	case res == 0:
		if id, ok := cqe.Buffer(); ok {
			e.bufs.Take(id, 0)
			e.bufs.Release(id)
		}
		e.r.readEnded(c, io.EOF)
	case errno == unix.ENOBUFS:
		e.bufs.NoteExhausted()
	case errno == unix.ECANCELED:
		// We cancelled it: paused or closing.
	case errno == unix.EAGAIN, errno == unix.EINTR:
		// Nothing was received: arm again.
	default:
		e.r.readEnded(c, os.NewSyscallError("recv", errno))
	}
	e.r.afterRead(c)
}

func (e *uringEngine) send(c *Conn) {
	e.ring.PrepSend(c.fd, unsafe.Pointer(&c.inflight[c.sent]), len(c.inflight)-c.sent, uring.Pack(opSend, c.gen, c.index))
}

func (e *uringEngine) onSend(cqe *uring.CQE, gen, idx uint32) {
	c := e.r.conn(gen, idx)
	if c == nil {
		return
	}
	switch errno := cqe.Errno(); {
	case (errno == unix.EAGAIN || errno == unix.EINTR) && c.state != stateAborted:
		// Nothing was sent: try the same bytes again.
		e.send(c)
	case errno != 0:
		e.r.sendFailed(c, os.NewSyscallError("send", errno))
	default:
		e.r.sendDone(c, int(cqe.Res))
	}
}

func (e *uringEngine) shutdownWrite(c *Conn) {
	e.ring.PrepShutdown(c.fd, unix.SHUT_WR, uring.Pack(opShutdown, c.gen, c.index))
}

func (e *uringEngine) abort(c *Conn) {
	e.ring.PrepShutdown(c.fd, unix.SHUT_RDWR, uring.Pack(opShutdown, c.gen, c.index))
}

func (e *uringEngine) busy(c *Conn) bool { return c.reading || c.sending }

func (e *uringEngine) closeConn(c *Conn) { sys.CloseFd(c.fd) }

func (e *uringEngine) releaseBuffer(id int32) { e.bufs.Release(uint16(id)) }

func (e *uringEngine) bufStats() (int, uint64) {
	if e.bufs == nil {
		return 0, 0
	}
	s := e.bufs.Stats()
	return s.Owned, s.Exhausted
}

func (e *uringEngine) overflows() uint64 {
	if e.ring == nil {
		return 0
	}
	return e.ring.Overflows()
}

func (e *uringEngine) wake() { sys.WakeEventfd(e.efd) }

// handoffFD is the descriptor the acceptor's ring posts accepted sockets
// to with MSG_RING. Fixed after setup.
func (e *uringEngine) handoffFD() int { return e.ringFd }
