package acceptor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// netLoop accepts with package net, on every system Go supports: a
// goroutine per listener, each connection queued on a reactor's inbox.
// Config.Backlog is not applied (package net uses the system's maximum).
type netLoop struct {
	a        *Acceptor
	lns      []net.Listener
	mu       sync.Mutex // serializes pick across listener goroutines
	stopC    chan struct{}
	stopOnce sync.Once
}

func newNetLoop(a *Acceptor) (*netLoop, error) {
	l := &netLoop{a: a, stopC: make(chan struct{})}
	lc := net.ListenConfig{Control: socketControl(a.cfg)}
	if ka := a.cfg.KeepAlive; ka > 0 {
		// As on the other engines: probes after ka idle, then every ka.
		lc.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: ka, Interval: ka}
	} else {
		lc.KeepAlive = -1
	}
	for _, addr := range a.cfg.Addrs {
		ln, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			l.closeListeners()
			return nil, fmt.Errorf("acceptor: listening on %q: %w", addr, err)
		}
		l.lns = append(l.lns, ln)
	}
	return l, nil
}

func (l *netLoop) addrs() []net.Addr {
	out := make([]net.Addr, len(l.lns))
	for i, ln := range l.lns {
		out[i] = ln.Addr()
	}
	return out
}

func (l *netLoop) closeListeners() {
	for _, ln := range l.lns {
		_ = ln.Close()
	}
}

func (l *netLoop) stop() {
	l.stopOnce.Do(func() {
		close(l.stopC)
		l.closeListeners()
	})
}

func (l *netLoop) run(ready chan<- error) {
	var wg sync.WaitGroup
	for _, ln := range l.lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.serve(ln)
		}()
	}
	ready <- nil
	wg.Wait()
	l.closeListeners()
}

func (l *netLoop) serve(ln net.Listener) {
	var backoff *time.Timer
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-l.stopC:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			l.mu.Lock()
			pause := l.a.acceptFailed(ln.Addr(), err)
			wait := l.a.backoff
			l.mu.Unlock()
			if pause {
				if backoff == nil {
					backoff = time.NewTimer(wait)
				} else {
					backoff.Reset(wait)
				}
				select {
				case <-l.stopC:
					backoff.Stop()
					return
				case <-backoff.C:
				}
			}
			continue
		}
		l.configure(c)
		l.mu.Lock()
		l.a.backoff = 0
		t := l.a.pick()
		l.mu.Unlock()
		if err := l.a.targets[t].HandoffConn(c); err != nil {
			_ = c.Close() // the reactor has stopped
			l.a.handedOff(false)
			continue
		}
		l.a.handedOff(true)
	}
}

// configure applies the per-connection options package net does not take
// from the listener.
func (l *netLoop) configure(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	cfg := l.a.cfg
	_ = tc.SetNoDelay(!cfg.Delay)
	if cfg.RecvBuffer > 0 {
		_ = tc.SetReadBuffer(cfg.RecvBuffer)
	}
	if cfg.SendBuffer > 0 {
		_ = tc.SetWriteBuffer(cfg.SendBuffer)
	}
}
