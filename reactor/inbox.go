package reactor

import (
	"net"
	"sync"
	"sync/atomic"
)

type taskKind uint8

const (
	taskWrite taskKind = iota + 1
	taskClose
	taskConnFunc
	taskFunc
	taskDrain   // Shutdown: begin graceful close of every connection
	taskForce   // Shutdown deadline: close everything now
	taskHandoff // the acceptor hands over a socket (epoll and net engines)
	taskSync    // Group.sync: a function every reactor runs, never refused
)

// control reports whether a task is exempt from the inbox bound: the
// runtime's own requests, whose refusal would lose a socket or stall a
// shutdown. They are bounded by their senders (one per reactor per
// Shutdown, one per accepted socket).
func (k taskKind) control() bool {
	return k == taskDrain || k == taskForce || k == taskHandoff || k == taskSync
}

// task is one cross-goroutine request. gen pins it to the connection it
// was made for: a task for a connection that has since closed is dropped.
type task struct {
	kind taskKind
	c    *Conn
	gen  uint32
	data []byte
	cfn  func(*Conn)
	fn   func()
	fd   int      // taskHandoff: the socket (epoll), or -1
	nc   net.Conn // taskHandoff: the connection (net engine)
}

// closeHandoff closes a socket handed over but never opened.
func closeHandoff(t task) {
	if t.nc != nil {
		_ = t.nc.Close()
	} else if t.fd >= 0 {
		closeFd(t.fd)
	}
}

// inbox is the bounded queue through which other goroutines reach a
// reactor. Producers append under a mutex; the reactor swaps the whole
// queue out in one step, so it holds the lock only for the swap. The first
// push into an empty inbox wakes the reactor (one eventfd write per batch).
type inbox struct {
	mu     sync.Mutex
	q      []task
	spare  []task
	limit  int
	closed bool
	wake   func()
	depth  atomic.Int64
	full   atomic.Uint64
}

// push queues t. Control tasks are never refused for space.
func (in *inbox) push(t task) error {
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		if t.c != nil {
			return ErrConnClosed
		}
		return ErrServerClosed
	}
	if len(in.q) >= in.limit && !t.kind.control() {
		in.mu.Unlock()
		in.full.Add(1)
		return ErrInboxFull
	}
	first := len(in.q) == 0
	in.q = append(in.q, t)
	in.depth.Store(int64(len(in.q)))
	if first {
		// Under the lock, so the reactor cannot close the eventfd between
		// the check above and the write (a reused descriptor number would
		// receive the write).
		in.wake()
	}
	in.mu.Unlock()
	return nil
}

// kick wakes the reactor unless it has stopped.
func (in *inbox) kick() {
	in.mu.Lock()
	if !in.closed {
		in.wake()
	}
	in.mu.Unlock()
}

// take swaps out the queued tasks. The caller must hand the slice back
// with recycle once it has run them.
func (in *inbox) take() []task {
	in.mu.Lock()
	q := in.q
	in.q = in.spare[:0]
	in.spare = nil
	in.depth.Store(0)
	in.mu.Unlock()
	return q
}

func (in *inbox) recycle(q []task) {
	clear(q)
	in.mu.Lock()
	if in.spare == nil {
		in.spare = q[:0]
	}
	in.mu.Unlock()
}

// close refuses further tasks and returns what is still queued.
func (in *inbox) close() []task {
	in.mu.Lock()
	in.closed = true
	q := in.q
	in.q = nil
	in.mu.Unlock()
	return q
}
