package acceptor

import (
	"fmt"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/gyre-io/gyre/internal/sys"
	"github.com/gyre-io/gyre/internal/uring"
)

// Operations encoded in the acceptor ring's user data.
const (
	opAccept  uint8 = iota + 1 // index: listener
	opHandoff                  // index: the socket being handed over
	opBackoff
	opWake
)

// uringLoop accepts with a multishot accept per listener and hands sockets
// over with MSG_RING.
type uringLoop struct {
	a          *Acceptor
	lns        []listener
	extraFlags uint32

	ring    *uring.Ring
	armed   []bool // multishot accept in flight, per listener
	waiting []bool // re-arm after the back-off, per listener
	timerOn bool
	pending int // hand-offs whose MSG_RING has not completed
	closing bool
	yield   sys.Yielder
	epoch   time.Time

	efdMu     sync.Mutex // guards efd and stopAsked against stop racing setup and teardown
	efd       int
	stopAsked bool
}

func (l *uringLoop) addrs() []net.Addr { return listenerAddrs(l.lns) }

func (l *uringLoop) closeListeners() { closeListeners(l.lns) }

func (l *uringLoop) stop() {
	l.efdMu.Lock()
	l.stopAsked = true
	if l.efd >= 0 {
		sys.WakeEventfd(l.efd)
	}
	l.efdMu.Unlock()
}

func (l *uringLoop) run(ready chan<- error) {
	runtime.LockOSThread() // never unlocked: the ring is single-issuer
	defer l.teardown()
	ring, err := uring.New(uring.Config{Entries: 256, ExtraFlags: l.extraFlags})
	if err != nil {
		ready <- fmt.Errorf("acceptor: %w", err)
		return
	}
	l.ring = ring
	efd, err := sys.NewEventfd()
	if err != nil {
		ready <- fmt.Errorf("acceptor: %w", err)
		return
	}
	l.efdMu.Lock()
	l.efd = efd
	if l.stopAsked {
		sys.WakeEventfd(efd) // stop came first: stop as soon as the loop runs
	}
	l.efdMu.Unlock()
	ring.PrepPollMultishot(efd, pollIn, uring.Pack(opWake, 0, 0))
	l.armed = make([]bool, len(l.lns))
	l.waiting = make([]bool, len(l.lns))
	for i := range l.lns {
		l.arm(i)
	}
	if err := ring.Submit(); err != nil {
		ready <- fmt.Errorf("acceptor: arming accepts: %w", err)
		return
	}
	ready <- nil
	l.loop()
}

func (l *uringLoop) arm(i int) {
	l.armed[i] = true
	l.ring.PrepMultishotAccept(l.lns[i].fd, uring.Pack(opAccept, 0, uint32(i)))
}

func (l *uringLoop) loop() {
	cqes := make([]uring.CQE, 128)
	l.epoch = time.Now()
	for {
		n := l.ring.Reap(cqes)
		l.yield.Maybe(int64(time.Since(l.epoch)))
		for i := 0; i < n; i++ {
			l.complete(&cqes[i])
		}
		if l.closing && l.pending == 0 && !anyTrue(l.armed) {
			return
		}
		if n == len(cqes) {
			if err := l.ring.Submit(); err != nil {
				l.a.err = fmt.Errorf("acceptor: %w", err)
				return
			}
			continue
		}
		if err := l.ring.SubmitAndWait(0); err != nil {
			l.a.err = fmt.Errorf("acceptor: %w", err)
			l.a.cfg.Logger.Error("acceptor stopped", "err", err)
			return
		}
	}
}

func (l *uringLoop) complete(e *uring.CQE) {
	op, _, idx := uring.Unpack(e.UserData)
	switch op {
	case opAccept:
		i := int(idx)
		if !e.More() {
			l.armed[i] = false
		}
		if e.Res >= 0 {
			l.handoff(int(e.Res), i)
			l.a.backoff = 0
		} else if err := e.Errno(); !(l.closing && err == syscall.ECANCELED) {
			if l.a.acceptFailed(l.lns[i].addr, err) && !l.armed[i] {
				l.waiting[i] = true
				if !l.timerOn {
					l.timerOn = true
					l.ring.PrepTimeout(l.a.backoff, uring.Pack(opBackoff, 0, 0))
				}
			}
		}
		if !l.armed[i] && !l.closing && !l.waiting[i] {
			l.arm(i)
		}
	case opHandoff:
		l.pending--
		if e.Res < 0 {
			// The reactor's ring is gone: nobody owns the socket but us.
			sys.CloseFd(int(idx))
		}
		l.a.handedOff(e.Res >= 0)
	case opBackoff:
		l.timerOn = false
		for i, w := range l.waiting {
			if w {
				l.waiting[i] = false
				if !l.armed[i] && !l.closing {
					l.arm(i)
				}
			}
		}
	case opWake:
		if !l.closing {
			l.closing = true
			for i, armed := range l.armed {
				if armed {
					l.ring.PrepCancel(uring.Pack(opAccept, 0, uint32(i)), 0)
				}
			}
		}
	}
}

// handoff posts fd to a reactor's ring. The MSG_RING's own completion
// tells whether it arrived; until then the socket counts as pending.
func (l *uringLoop) handoff(fd, ln int) {
	t := l.a.pick()
	l.pending++
	l.ring.PrepMsgRingData(l.a.targets[t].RingFD, int32(fd), uring.Pack(uring.OpHandoff, 0, uint32(ln)), uring.Pack(opHandoff, 0, uint32(fd)))
}

func (l *uringLoop) teardown() {
	closeListeners(l.lns)
	if l.ring != nil {
		l.ring.Close()
	}
	l.efdMu.Lock()
	if l.efd >= 0 {
		sys.CloseFd(l.efd)
		l.efd = -1
	}
	l.efdMu.Unlock()
}

func anyTrue(b []bool) bool {
	for _, v := range b {
		if v {
			return true
		}
	}
	return false
}
