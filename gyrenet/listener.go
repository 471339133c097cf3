package gyrenet

import (
	"context"
	"net"
	"sync"
	"sync/atomic"

	"github.com/gyre-io/gyre/acceptor"
	"github.com/gyre-io/gyre/internal/ratelog"
	"github.com/gyre-io/gyre/reactor"
)

// Listener is a net.Listener whose connections are served by a group of
// reactors of its own. Its methods are safe for concurrent use.
//
// Life cycle: Listen starts the reactors and the acceptor. Close stops
// accepting; the connections already accepted stay open, as with package
// net, and the reactors stop by themselves once the last of them has
// closed (Done is then closed). Shutdown also closes the connections, and
// waits for the reactors.
type Listener struct {
	cfg       Config
	g         *reactor.Group
	a         *acceptor.Acceptor
	addr      net.Addr        // set once Listen returns; the loops use bind
	bind      string          // the address asked for: fixed before the reactors start
	rs        []*reactorState // by reactor ID; fixed before accepting
	acceptq   chan *Conn
	accepting atomic.Int32  // Accepts waiting (tests synchronise on it)
	closedC   chan struct{} // closed by Close
	done      chan struct{} // closed once the reactors have stopped

	mu       sync.Mutex
	closed   bool
	live     int  // connections open on the reactors (OnOpen to OnClose)
	stopping bool // the group's stop has begun (Close, or the last OnClose after it)
	doneOnce sync.Once

	refused atomic.Uint64
	refusal ratelog.OncePerSecond
}

var _ net.Listener = (*Listener)(nil)

// Listen announces on the local TCP address ("tcp", "tcp4" or "tcp6";
// address as for net.Listen, port 0 picks one, see Addr) and returns a
// Listener whose connections are served by new reactors configured by cfg.
// If the reactors' engine cannot be used the error says why and wraps
// errors.ErrUnsupported (see reactor.NewGroup).
//
// Listen returns the concrete type, which satisfies net.Listener: its
// Shutdown and Done are the life cycle net.Listener has no words for.
func Listen(network, address string, cfg Config) (*Listener, error) {
	address, err := bindAddress(network, address)
	if err != nil {
		return nil, err
	}
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Listener{
		cfg:     cfg,
		bind:    address,
		acceptq: make(chan *Conn, cfg.Backlog),
		closedC: make(chan struct{}),
		done:    make(chan struct{}),
	}
	g, err := reactor.NewGroup(cfg.reactorConfig(), &handler{l: l})
	if err != nil {
		return nil, err
	}
	l.g = g
	for _, r := range g.Reactors() {
		rs := &reactorState{}
		rs.n = r.NewNotifier(rs.run)
		l.rs = append(l.rs, rs)
	}
	// acceptor.Listen orders everything above before the first OnOpen.
	a, err := acceptor.Listen(acceptor.Config{
		Addrs:     []string{address},
		Backlog:   cfg.Backlog,
		KeepAlive: cfg.KeepAlive,
		Delay:     cfg.Delay,
		ReusePort: cfg.ReusePort,
		Logger:    cfg.Logger,
	}, g)
	if err != nil {
		_ = g.Close()
		return nil, err
	}
	l.a, l.addr = a, a.Addrs()[0]
	return l, nil
}

// bindAddress turns network and address into an address for package
// acceptor, which listens on "tcp" (dual-stack for an empty host).
func bindAddress(network, address string) (string, error) {
	switch network {
	case "tcp":
		return address, nil
	case "tcp4", "tcp6":
	default:
		return "", &net.OpError{Op: "listen", Net: network, Err: net.UnknownNetworkError(network)}
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return "", &net.OpError{Op: "listen", Net: network, Err: err}
	}
	if host == "" {
		if network == "tcp4" {
			return net.JoinHostPort("0.0.0.0", port), nil
		}
		return net.JoinHostPort("::", port), nil
	}
	ta, err := net.ResolveTCPAddr(network, address)
	if err != nil {
		return "", &net.OpError{Op: "listen", Net: network, Err: err}
	}
	return ta.String(), nil
}

// Accept waits for the next connection. After Close it fails with an
// error matching net.ErrClosed; if the reactors stopped (Shutdown, or an
// engine failure) it fails with the reason.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case <-l.closedC:
		return nil, l.opError("accept", net.ErrClosed)
	default:
	}
	l.accepting.Add(1)
	defer l.accepting.Add(-1)
	select {
	case c := <-l.acceptq:
		return c, nil
	case <-l.closedC:
		return nil, l.opError("accept", net.ErrClosed)
	case <-l.g.Done():
		return nil, l.opError("accept", l.g.Wait())
	}
}

// Close stops accepting: a waiting Accept, and every later one, fails with
// an error matching net.ErrClosed, and connections accepted but not yet
// returned by Accept are closed. Connections Accept returned stay open;
// the reactors stop once the last of them is closed (see Done). Close
// waits for the acceptor, and for the reactors if no connection is open.
// A second Close returns an error matching net.ErrClosed.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return l.opError("close", net.ErrClosed)
	}
	l.closed = true
	close(l.closedC)
	l.mu.Unlock()
	_ = l.a.Close() // every socket accepted has reached its reactor after this
	for {
		select {
		case c := <-l.acceptq:
			_ = c.Close()
			continue
		default:
		}
		break
	}
	l.mu.Lock()
	stop := l.live == 0 && !l.stopping
	l.stopping = l.stopping || stop
	l.mu.Unlock()
	if stop {
		l.stopGroup()
	}
	return nil
}

// Shutdown closes the listener (as Close), then closes every connection
// still open after sending what was written to it, and waits until the
// reactors have stopped. If ctx ends first, the connections left are
// closed at once and Shutdown returns ctx's error once the reactors have
// stopped. A Read or Write waiting on a connection it closes fails with
// an error matching net.ErrClosed. To let connections finish first, stop
// using them (http.Server.Shutdown does), then call Shutdown.
func (l *Listener) Shutdown(ctx context.Context) error {
	_ = l.Close()
	err := l.g.Shutdown(ctx) // handler.OnShutdown closes each open connection
	// No OnClose runs after the group's Shutdown: stopping is final now.
	l.mu.Lock()
	started := l.stopping
	l.stopping = true
	l.mu.Unlock()
	if started {
		<-l.done
	} else {
		l.markDone()
	}
	return err
}

// Done is closed once the reactors have stopped: after Close when the
// last connection has closed, or after Shutdown.
func (l *Listener) Done() <-chan struct{} { return l.done }

// Addr returns the listener's address (a *net.TCPAddr).
func (l *Listener) Addr() net.Addr { return l.addr }

// Engine reports the engine the reactors run on.
func (l *Listener) Engine() reactor.Engine { return l.g.Engine() }

// Refused returns how many connections were reset because Config.Backlog
// connections were already waiting for Accept.
func (l *Listener) Refused() uint64 { return l.refused.Load() }

func (l *Listener) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Addr: l.addr, Err: err}
}

// opened registers a connection the reactor has just opened and queues it
// for Accept. It reports false if the connection must be refused (the
// listener is closed or Backlog connections wait). Loop-only.
func (l *Listener) opened(c *Conn) bool {
	l.mu.Lock()
	l.live++
	if l.closed {
		l.mu.Unlock()
		return false
	}
	select {
	case l.acceptq <- c:
		l.mu.Unlock()
		return true
	default:
	}
	l.mu.Unlock()
	l.refused.Add(1)
	if l.refusal.OK() {
		l.cfg.Logger.Warn("gyrenet: accept queue full; resetting new connections", "addr", l.bind, "backlog", l.cfg.Backlog, "refused", l.refused.Load())
	}
	return false
}

// closedConn counts a connection closed on its reactor; after Close the
// last one stops the reactors. Loop-only.
func (l *Listener) closedConn() {
	l.mu.Lock()
	l.live--
	stop := l.closed && l.live == 0 && !l.stopping
	l.stopping = l.stopping || stop
	l.mu.Unlock()
	if stop {
		go l.stopGroup() // Shutdown waits for the reactors: not on one
	}
}

// stopGroup stops the reactors, which have no connection left (one
// arriving meanwhile, handed over before the acceptor stopped, is closed
// by OnOpen or by the reactor).
func (l *Listener) stopGroup() {
	_ = l.g.Shutdown(context.Background())
	l.markDone()
}

func (l *Listener) markDone() { l.doneOnce.Do(func() { close(l.done) }) }
