package reactor

import (
	"cmp"
	"github.com/gyre-io/gyre/internal/sys"
	"io"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readsPerTurn bounds the reads one connection gets per loop iteration, so
// a fast sender cannot starve the others; what is left waits on the ready
// list for the next iteration.
const readsPerTurn = 4

// epollBatch is how many events one epoll_wait returns at most.
const epollBatch = 256

// wakeMark tags the inbox eventfd's epoll events (connections carry their
// slot index, which is never negative).
const wakeMark = -1

// epollEngine runs a reactor on edge-triggered epoll, for systems where
// io_uring is refused. Each connection is registered once, for input and
// output, when it opens; reads go into buffers from a per-reactor pool
// that an idle connection holds none of; everything a handler wrote in one
// iteration leaves in one write.
type epollEngine struct {
	r      *Reactor
	epfd   int
	efd    int
	events []unix.EpollEvent
	n      int
	pool   bufPool
	ready  []*Conn // input may be waiting: read next iteration
	spare  []*Conn
}

func newEpollEngine(r *Reactor) *epollEngine {
	return &epollEngine{r: r, epfd: -1, efd: -1, events: make([]unix.EpollEvent, epollBatch),
		pool: bufPool{size: cmp.Or(r.cfg.Buffers.Size, DefaultEpollReadSize), limit: r.cfg.Buffers.Count}}
}

func (e *epollEngine) kind() Engine { return EngineEpoll }

func (e *epollEngine) setup() error {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	e.epfd = fd
	efd, err := sys.NewEventfd()
	if err != nil {
		return err
	}
	e.efd = efd
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeMark}
	if err := unix.EpollCtl(e.epfd, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

func (e *epollEngine) teardown() {
	if e.epfd >= 0 {
		sys.CloseFd(e.epfd)
		e.epfd = -1
	}
	if e.efd >= 0 {
		sys.CloseFd(e.efd)
		e.efd = -1
	}
}

func (e *epollEngine) attach(c *Conn) error {
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET,
		Fd:     int32(c.index),
		Pad:    int32(c.gen),
	}
	if err := unix.EpollCtl(e.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

func (e *epollEngine) wait(block bool, until int64) error {
	timeout := 0
	if block && len(e.ready) == 0 { // a resumed connection may have input waiting
		timeout = -1
		if until != 0 {
			d := until - int64(time.Since(e.r.epoch))
			timeout = int(max(0, (d+int64(time.Millisecond)-1)/int64(time.Millisecond)))
		}
	}
	n, err := unix.EpollWait(e.epfd, e.events, timeout)
	if err == unix.EINTR {
		n, err = 0, nil
	}
	if err != nil {
		return os.NewSyscallError("epoll_wait", err)
	}
	e.n = n
	return nil
}

func (e *epollEngine) dispatch() bool {
	n := e.n
	e.n = 0
	for i := 0; i < n; i++ {
		ev := &e.events[i]
		if ev.Fd == wakeMark {
			sys.DrainEventfd(e.efd)
			e.r.woken = true
			continue
		}
		c := e.r.conn(uint32(ev.Pad), uint32(ev.Fd))
		if c == nil {
			continue
		}
		if ev.Events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 && c.sending {
			e.send(c)
		}
		if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			c.readable = true
			if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				// The peer's FIN (or an error) is already here: its edge is
				// spent, so read to the end rather than stop at a short read.
				c.hup = true
			}
			if c.reading && !c.inReady {
				e.read(c)
			}
		}
	}
	if len(e.ready) > 0 {
		q := e.ready
		e.ready = e.spare[:0]
		for i, c := range q {
			q[i] = nil
			c.inReady = false
			if c.reading && c.readable {
				e.read(c)
			}
		}
		e.spare = q[:0]
	}
	return len(e.ready) > 0 || n == len(e.events)
}

// read reads c until the socket is drained, reading stops, or c has had
// its turn (then it waits on the ready list).
func (e *epollEngine) read(c *Conn) {
	for turn := 0; c.reading && c.readable; turn++ {
		if turn == readsPerTurn {
			if !c.inReady {
				c.inReady = true
				e.ready = append(e.ready, c)
			}
			return
		}
		id, buf, ok := e.pool.get()
		if !ok {
			c.reading = false // the reactor restarts it when buffers return
			break
		}
		n, err := unix.Read(c.fd, buf)
		if n > 0 {
			if n < len(buf) && !c.hup {
				c.readable = false // drained: the next byte raises a new edge
			}
			e.r.received(c, buf[:n], id)
			continue
		}
		e.pool.put(id)
		if err == unix.EINTR {
			continue
		}
		c.readable = false
		if err == unix.EAGAIN {
			break
		}
		c.reading = false
		if n == 0 && err == nil {
			e.r.readEnded(c, io.EOF)
		} else {
			e.r.readEnded(c, os.NewSyscallError("read", err))
		}
	}
	e.r.afterRead(c)
}

func (e *epollEngine) startRead(c *Conn) bool {
	if !e.pool.available() {
		return false
	}
	c.reading = true
	if c.readable && !c.inReady {
		// Input arrived while reading was stopped: its edge is spent.
		c.inReady = true
		e.ready = append(e.ready, c)
	}
	return true
}

func (e *epollEngine) stopRead(c *Conn) { c.reading = false }

func (e *epollEngine) send(c *Conn) {
	for {
		n, err := sendNoSignal(c.fd, c.inflight[c.sent:])
		switch {
		case n > 0:
			e.r.sendDone(c, n) // sends the rest, if any
			return
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return // EPOLLOUT's edge sends the rest
		case err == nil:
			err = unix.EPIPE // a zero-byte write of a non-empty buffer
		}
		e.r.sendFailed(c, os.NewSyscallError("write", err))
		return
	}
}

// sendNoSignal writes p to a socket without raising SIGPIPE when the peer
// has gone (send(2) with MSG_NOSIGNAL).
func sendNoSignal(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), unix.MSG_NOSIGNAL, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func (e *epollEngine) shutdownWrite(c *Conn) { _ = unix.Shutdown(c.fd, unix.SHUT_WR) }

// abort has nothing to do: no request outlives a system call here.
func (e *epollEngine) abort(*Conn) {}

func (e *epollEngine) busy(*Conn) bool { return false }

// closeConn closes the socket, which also removes it from the epoll set.
func (e *epollEngine) closeConn(c *Conn) { sys.CloseFd(c.fd) }

func (e *epollEngine) releaseBuffer(id int32) { e.pool.put(id) }

func (e *epollEngine) bufStats() (int, uint64) { return e.pool.stats() }

func (e *epollEngine) overflows() uint64 { return 0 }

func (e *epollEngine) wake() { sys.WakeEventfd(e.efd) }
