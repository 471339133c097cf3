package http1

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/gyre-io/gyre/acceptor"
	"github.com/gyre-io/gyre/reactor"
)

// Server serves HTTP/1.1 on a group of reactors. Set Handler (and
// Config, whose zero value is valid), then Start or ListenAndServe. The
// fields must not change after that. Its methods are safe for concurrent
// use.
type Server struct {
	// Handler serves every request.
	Handler Handler
	// Config holds limits, timeouts and the reactor and listener
	// settings.
	Config Config

	mu    sync.Mutex
	lim   limits
	log   *slog.Logger
	group *reactor.Group
	acc   *acceptor.Acceptor
	loops []*loopState
	// drained counts connections told of a Shutdown (OnShutdown ran), so
	// a test can act once a Shutdown has reached a connection.
	drained atomic.Int32
}

// ListenAndServe starts the server on addr (see Start) and blocks until it
// stops: it returns ErrServerClosed after Shutdown or Close, or the error
// that kept it from starting or stopped it.
func (s *Server) ListenAndServe(addr string) error {
	if err := s.Start(addr); err != nil {
		return err
	}
	return s.Wait()
}

// Start starts the reactors and listens on addr ("host:port"; port 0
// picks a free port, see Addr), or on Config.Listener.Addrs when addr is
// empty. It returns once the server is accepting connections.
func (s *Server) Start(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.group != nil {
		return errors.New("http1: server already started")
	}
	if s.Handler == nil {
		return fmt.Errorf("%w: Server.Handler is nil", ErrConfig)
	}
	lim, err := s.Config.limits()
	if err != nil {
		return err
	}
	acfg := s.Config.Listener
	if addr != "" {
		acfg.Addrs = []string{addr}
	}
	if len(acfg.Addrs) == 0 {
		return fmt.Errorf("%w: no address to listen on", ErrConfig)
	}
	rcfg := s.Config.Reactor
	if rcfg.Reactors <= 0 {
		rcfg.Reactors = runtime.NumCPU()
	}
	// A pending head and a buffered body wait in the connection's input.
	need := lim.maxHead + max(lim.bufferBody, 0) + 64<<10
	if rcfg.MaxInput == 0 {
		rcfg.MaxInput = reactor.DefaultMaxInput
	}
	rcfg.MaxInput = max(rcfg.MaxInput, need)
	rcfg.IdleTimeout = 0 // the HTTP timeouts replace it
	log := s.Config.Logger
	if log == nil {
		log = rcfg.Logger
	}
	if log == nil {
		log = slog.Default()
	}
	if acfg.Logger == nil {
		acfg.Logger = log
	}
	s.lim, s.log = lim, log
	// Each reactor's share is made before the reactors start, so a
	// reactor only ever reads it.
	s.loops = make([]*loopState, rcfg.Reactors)
	for i := range s.loops {
		ls := &loopState{s: s, lim: &s.lim, fields: make([]field, lim.maxHeaders)}
		ls.freeFn = ls.freeClosed
		s.loops[i] = ls
	}
	g, err := reactor.NewGroup(rcfg, &reactorHandler{s: s})
	if err != nil {
		s.loops = nil
		return err
	}
	a, err := acceptor.Listen(acfg, g)
	if err != nil {
		_ = g.Close()
		s.loops = nil
		return err
	}
	s.group, s.acc = g, a
	return nil
}

// Addr returns the first address the server listens on, or nil before
// Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.acc == nil {
		return nil
	}
	return s.acc.Addrs()[0]
}

// Group returns the reactor group (for its Stats and Engine), or nil
// before Start.
func (s *Server) Group() *reactor.Group {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.group
}

// Wait blocks until the server stops and returns ErrServerClosed after
// Shutdown or Close, or the error that stopped a reactor. Before Start it
// returns ErrServerClosed at once.
func (s *Server) Wait() error {
	g := s.Group()
	if g == nil {
		return ErrServerClosed
	}
	return g.Wait()
}

// Shutdown drains the server: it stops accepting, closes idle
// connections, lets each request in progress finish (its response says
// Connection: close, and the connection closes after it), and returns
// once every connection is closed and the reactors have stopped. If ctx
// ends first, the remaining connections are closed at once and Shutdown
// returns ctx's error (after the reactors have stopped).
func (s *Server) Shutdown(ctx context.Context) error {
	g := s.Group()
	if g == nil {
		return nil
	}
	return g.Shutdown(ctx)
}

// Close stops the server at once: connections are closed, unsent output
// dropped.
func (s *Server) Close() error {
	g := s.Group()
	if g == nil {
		return nil
	}
	return g.Close()
}

// reactorHandler is the server as the reactors see it.
type reactorHandler struct{ s *Server }

var (
	_ reactor.Handler          = (*reactorHandler)(nil)
	_ reactor.PressureHandler  = (*reactorHandler)(nil)
	_ reactor.ShutdownHandler  = (*reactorHandler)(nil)
	_ reactor.HalfCloseHandler = (*reactorHandler)(nil)
)

func (h *reactorHandler) OnOpen(c *reactor.Conn) {
	r := c.Reactor()
	ls := h.s.loops[r.ID()]
	ls.r = r
	cn := ls.getConn()
	c.SetContext(cn)
	cn.open(c)
}

// A connection's context is its *conn, or a *hijackConn once a net/http
// handler has hijacked it.

func (h *reactorHandler) OnData(c *reactor.Conn, b []byte) int {
	switch cn := c.Context().(type) {
	case *conn:
		return cn.onData(b)
	case *hijackConn:
		return cn.onData(b)
	case *upgraded:
		return cn.h.OnData(c, b)
	}
	return len(b)
}

func (h *reactorHandler) OnClose(c *reactor.Conn, cause error) {
	switch cn := c.Context().(type) {
	case *conn:
		c.SetContext(nil)
		cn.onClose(cause)
	case *hijackConn:
		c.SetContext(nil)
		cn.onClose(cause)
	case *upgraded:
		c.SetContext(nil)
		cn.h.OnClose(c, cause)
	}
}

func (h *reactorHandler) OnPeerFIN(c *reactor.Conn) bool {
	switch cn := c.Context().(type) {
	case *conn:
		return cn.onPeerFIN()
	case *hijackConn:
		return cn.onPeerFIN()
	case *upgraded:
		if hc, ok := cn.h.(reactor.HalfCloseHandler); ok {
			return hc.OnPeerFIN(c)
		}
	}
	return false
}

func (h *reactorHandler) OnPressure(c *reactor.Conn, paused bool) {
	switch cn := c.Context().(type) {
	case *conn:
		cn.onPressure(paused)
	case *hijackConn:
		cn.onPressure(paused)
	case *upgraded:
		if ph, ok := cn.h.(reactor.PressureHandler); ok {
			ph.OnPressure(c, paused)
		}
	}
}

func (h *reactorHandler) OnShutdown(c *reactor.Conn) {
	h.s.drained.Add(1)
	switch cn := c.Context().(type) {
	case *conn:
		cn.onShutdown()
	case *hijackConn:
		cn.onShutdown()
	case *upgraded:
		if sh, ok := cn.h.(reactor.ShutdownHandler); ok {
			sh.OnShutdown(c)
		} else {
			_ = c.Close()
		}
	}
}
