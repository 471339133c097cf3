//go:build !linux

package ingest

// workerWake is how producers wake a sleeping shard worker (see
// wake_linux.go for why Linux uses an eventfd); elsewhere a channel with
// room for one pending wake-up.
type workerWake struct{ c chan struct{} }

func newWorkerWake() (workerWake, error) { return workerWake{c: make(chan struct{}, 1)}, nil }

func (w workerWake) signal() {
	select {
	case w.c <- struct{}{}:
	default:
	}
}

func (w workerWake) wait() { <-w.c }

func (w workerWake) close() {}
