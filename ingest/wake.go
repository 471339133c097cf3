package ingest

// workerWake is how producers wake a sleeping shard worker: a channel with
// room for one pending wake-up, so a signal is never lost and never blocks.
//
// An eventfd the worker blocks on in read(2) was tried: it keeps the wake-up
// out of the Go scheduler, but a goroutine blocked in a system call holds
// its P, and with GOMAXPROCS 1 (a process pinned to one CPU) every other
// goroutine then waits for sysmon to take the P back: the goroutine-per-
// connection baseline fell to half its speed, and to a few thousand
// messages a second at 1,000 connections. Reactors avoid most wake-ups
// instead (Reactor.Later: once per loop iteration; NonBlockingSink: none).
type workerWake struct{ c chan struct{} }

func newWorkerWake() (workerWake, error) { return workerWake{c: make(chan struct{}, 1)}, nil }

// signal wakes the worker, or makes its next wait return at once.
func (w workerWake) signal() {
	select {
	case w.c <- struct{}{}:
	default:
	}
}

// wait blocks until signal was called since the last wait.
func (w workerWake) wait() { <-w.c }

func (w workerWake) close() {}
