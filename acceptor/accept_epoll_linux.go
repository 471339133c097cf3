package acceptor

import (
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/gyre-io/gyre/internal/sys"
	"golang.org/x/sys/unix"
)

// acceptBatch bounds the accepts per listener per wake-up, so one busy
// listener cannot starve the others or the stop request.
const acceptBatch = 64

// stopMark tags the stop eventfd's epoll events (listeners carry their
// index).
const stopMark = -1

// epollLoop waits for connections on its own epoll set of listeners
// (level-triggered) and queues each accepted socket on a reactor's inbox.
type epollLoop struct {
	a      *Acceptor
	lns    []listener
	epfd   int
	paused []bool // removed from the set during a back-off
	resume time.Time
	yield  sys.Yielder
	epoch  time.Time

	mu     sync.Mutex // guards efd against stop racing teardown
	efd    int
	closed bool
}

func newEpollLoop(a *Acceptor, lns []listener) (*epollLoop, error) {
	l := &epollLoop{a: a, lns: lns, epfd: -1, efd: -1, paused: make([]bool, len(lns))}
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("acceptor: %w", os.NewSyscallError("epoll_create1", err))
	}
	l.epfd = fd
	if l.efd, err = sys.NewEventfd(); err != nil {
		l.teardown()
		return nil, fmt.Errorf("acceptor: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: stopMark}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, l.efd, &ev); err != nil {
		l.teardown()
		return nil, fmt.Errorf("acceptor: %w", os.NewSyscallError("epoll_ctl", err))
	}
	for i := range lns {
		if err := l.watch(i, true); err != nil {
			l.teardown()
			return nil, fmt.Errorf("acceptor: %w", err)
		}
	}
	return l, nil
}

func (l *epollLoop) addrs() []net.Addr { return listenerAddrs(l.lns) }

func (l *epollLoop) closeListeners() { l.teardown() }

// watch adds listener i to the epoll set, or removes it.
func (l *epollLoop) watch(i int, on bool) error {
	if !on {
		return os.NewSyscallError("epoll_ctl", unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, l.lns[i].fd, nil))
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, l.lns[i].fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

func (l *epollLoop) stop() {
	l.mu.Lock()
	if !l.closed {
		sys.WakeEventfd(l.efd)
	}
	l.mu.Unlock()
}

func (l *epollLoop) run(ready chan<- error) {
	defer l.teardown()
	ready <- nil
	l.epoch = time.Now()
	events := make([]unix.EpollEvent, len(l.lns)+1)
	for {
		timeout := -1
		if !l.resume.IsZero() {
			timeout = int(max(0, time.Until(l.resume).Milliseconds()+1))
		}
		n, err := unix.EpollWait(l.epfd, events, timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			l.a.err = fmt.Errorf("acceptor: %w", os.NewSyscallError("epoll_wait", err))
			l.a.cfg.Logger.Error("acceptor stopped", "err", l.a.err)
			return
		}
		l.yield.Maybe(int64(time.Since(l.epoch)))
		for _, ev := range events[:n] {
			if ev.Fd == stopMark {
				return // every socket accepted so far is on a reactor's inbox
			}
			l.accept(int(ev.Fd))
		}
		if !l.resume.IsZero() && !time.Now().Before(l.resume) {
			l.resume = time.Time{}
			for i, p := range l.paused {
				if p {
					l.paused[i] = false
					if err := l.watch(i, true); err != nil {
						l.a.cfg.Logger.Error("acceptor could not resume a listener", "addr", l.lns[i].addr.String(), "err", err)
					}
				}
			}
		}
	}
}

// accept takes up to acceptBatch connections from listener i.
func (l *epollLoop) accept(i int) {
	for range acceptBatch {
		fd, err := accept4(l.lns[i].fd)
		if err == nil {
			l.a.backoff = 0
			l.handoff(fd)
			continue
		}
		if err == unix.EAGAIN {
			return
		}
		if l.a.acceptFailed(l.lns[i].addr, err) {
			// Out of descriptors or memory: stop watching this listener
			// (level-triggered, it would wake us at once) until the
			// back-off ends.
			_ = l.watch(i, false)
			l.paused[i] = true
			l.resume = time.Now().Add(l.a.backoff)
			return
		}
	}
}

// accept4 accepts without decoding the peer's address (no allocation).
func accept4(fd int) (int, error) {
	nfd, _, errno := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(fd), 0, 0, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(nfd), nil
}

func (l *epollLoop) handoff(fd int) {
	t := l.a.pick()
	if err := l.a.targets[t].HandoffFD(fd); err != nil {
		sys.CloseFd(fd) // the reactor has stopped: nobody owns it but us
		l.a.handedOff(false)
		return
	}
	l.a.handedOff(true)
}

func (l *epollLoop) teardown() {
	closeListeners(l.lns)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	if l.epfd >= 0 {
		sys.CloseFd(l.epfd)
	}
	if l.efd >= 0 {
		sys.CloseFd(l.efd)
	}
}
