package ingest

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// workerWake is how producers wake a sleeping shard worker: an eventfd the
// worker blocks on in read(2), so the kernel wakes that thread directly.
//
// Why not a sync.Cond: Signal makes the worker runnable on the signalling
// goroutine's P. When that is a reactor, whose locked thread keeps its P
// while it waits in io_uring_enter, another thread has to spin up and
// steal the worker from it (with a 3 µs sleep before stealing a runnext
// goroutine), and park again after. In ack-per-message runs that wake,
// steal and park path took about a third of ingestd's CPU; the eventfd is
// one write and one read.
type workerWake struct{ fd int }

func newWorkerWake() (workerWake, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return workerWake{fd: -1}, fmt.Errorf("ingest: shard worker wake-up: %w", os.NewSyscallError("eventfd", err))
	}
	return workerWake{fd: fd}, nil
}

// signal wakes the worker, or makes its next wait return at once.
func (w workerWake) signal() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	for {
		if _, err := unix.Write(w.fd, one[:]); err != unix.EINTR {
			return // the counter cannot overflow: the worker reads it to 0
		}
	}
}

// wait blocks until signal was called since the last wait.
func (w workerWake) wait() {
	var buf [8]byte
	for {
		if _, err := unix.Read(w.fd, buf[:]); err != unix.EINTR {
			return
		}
	}
}

func (w workerWake) close() {
	if w.fd >= 0 {
		_ = unix.Close(w.fd)
	}
}
