package reactor

import "sync/atomic"

// Notifier runs one function on its reactor after Notify, from any
// goroutine, at the lowest cost the runtime allows. It is for producers
// that signal the reactor over and over, such as a sink worker reporting
// completions: Notify calls made before the function starts coalesce into
// one run, and while the reactor is awake Notify only sets two flags (the
// reactor looks at them before it waits). Only a reactor asleep in
// io_uring_enter costs a wake-up: one eventfd write, no lock the reactor
// holds. Post, by comparison, queues a task under the inbox lock and
// writes the eventfd for every batch.
type Notifier struct {
	r       *Reactor
	fn      func()
	pending atomic.Bool
}

// NewNotifier returns a Notifier that runs fn on r. Safe from any
// goroutine; a Notifier lives as long as its reactor.
func (r *Reactor) NewNotifier(fn func()) *Notifier {
	n := &Notifier{r: r, fn: fn}
	r.notifyMu.Lock()
	list := append(append([]*Notifier(nil), r.loadNotifiers()...), n)
	r.notifiers.Store(&list)
	r.notifyMu.Unlock()
	return n
}

// Notify makes the reactor run the Notifier's function once, soon, after
// any state the caller wrote before calling it is visible. Safe from any
// goroutine; after the reactor has stopped it does nothing.
func (n *Notifier) Notify() {
	if n.pending.Swap(true) {
		return // an earlier Notify has not been served yet and covers this one
	}
	r := n.r
	r.notified.Store(true)
	// The reactor sets sleeping before it checks notified and waits; with
	// both flags sequentially consistent, either it sees notified or this
	// sees sleeping. Only one notifier wins the wake-up.
	if r.sleeping.Load() && r.sleeping.CompareAndSwap(true, false) {
		r.inbox.kick()
	}
}

func (r *Reactor) loadNotifiers() []*Notifier {
	if p := r.notifiers.Load(); p != nil {
		return *p
	}
	return nil
}

// runNotifiers runs the function of every pending Notifier. Loop-only.
func (r *Reactor) runNotifiers() {
	r.notified.Store(false) // first: a Notify during the scan is seen next time
	for _, n := range r.loadNotifiers() {
		if n.pending.Load() && n.pending.Swap(false) {
			n.fn()
		}
	}
}

// mayWait reports whether the loop may block in io_uring_enter: it
// announces the sleep to Notify and then checks for a notification that
// arrived before the announcement. Loop-only; call awake after the wait.
func (r *Reactor) mayWait() bool {
	r.sleeping.Store(true)
	if r.notified.Load() {
		r.sleeping.Store(false)
		return false
	}
	return true
}

func (r *Reactor) awake() { r.sleeping.Store(false) }
