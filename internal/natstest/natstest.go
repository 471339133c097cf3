// Package natstest runs the real NATS server (nats-server v2, JetStream
// on, file storage in a test's temporary directory) inside a test
// process, on loopback, and reads streams back. It is for tests only:
// gyre's JetStream tests talk to a real server, never to a mock, and this
// is the one place that knows how to start one.
package natstest

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is one in-process NATS server. It can be stopped and started
// again on the same port and store directory, as a restarted server.
type Server struct {
	t    testing.TB
	opts server.Options
	srv  *server.Server
}

// New prepares a JetStream server on a loopback port (0: one free now),
// with its store in a fresh temporary directory, without starting it; it
// is stopped at cleanup. users, if given, are user and password pairs the
// server requires.
func New(t testing.TB, port int, users ...string) *Server {
	t.Helper()
	if port == 0 {
		port = FreePort(t)
	}
	s := &Server{t: t, opts: server.Options{
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoLog:      true,
		NoSigs:     true,
		MaxPayload: 1 << 20,
	}}
	for i := 0; i+1 < len(users); i += 2 {
		s.opts.Users = append(s.opts.Users, &server.User{Username: users[i], Password: users[i+1]})
	}
	t.Cleanup(s.Stop)
	return s
}

// Start runs a new JetStream server on a free port and returns it.
func Start(t testing.TB, users ...string) *Server {
	t.Helper()
	s := New(t, 0, users...)
	s.Start()
	return s
}

// FreePort returns a loopback port nothing listened on a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// Start starts the server (again) and waits until it takes connections.
func (s *Server) Start() {
	s.t.Helper()
	opts := s.opts // the server keeps and changes its options
	srv, err := server.NewServer(&opts)
	if err != nil {
		s.t.Fatalf("nats-server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		s.t.Fatal("nats-server not ready after 10s")
	}
	s.srv = srv
}

// Stop shuts the server down and waits until it has; its store stays.
func (s *Server) Stop() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

// SetUsers replaces the users and passwords the server requires (pairs,
// as for New) and reloads it, as an operator who changes its
// configuration: clients whose credentials no longer hold are
// disconnected. The running server must have been started with users.
func (s *Server) SetUsers(users ...string) {
	s.t.Helper()
	s.opts.Users = nil
	for i := 0; i+1 < len(users); i += 2 {
		s.opts.Users = append(s.opts.Users, &server.User{Username: users[i], Password: users[i+1]})
	}
	if s.srv == nil {
		return
	}
	opts := s.opts
	if err := s.srv.ReloadOptions(&opts); err != nil {
		s.t.Fatalf("nats-server reload: %v", err)
	}
}

// URL is the server's client URL.
func (s *Server) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(s.opts.Port) }

// JS connects a helper client to the server (as its first user, if it
// has users) and returns its JetStream context; the connection is closed
// at cleanup.
func (s *Server) JS(t testing.TB) jetstream.JetStream {
	t.Helper()
	var opts []nats.Option
	if len(s.opts.Users) > 0 {
		opts = append(opts, nats.UserInfo(s.opts.Users[0].Username, s.opts.Users[0].Password))
	}
	nc, err := nats.Connect(s.URL(), opts...)
	if err != nil {
		t.Fatalf("helper connection to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// CreateStream creates a stream (file storage unless cfg says otherwise).
func (s *Server) CreateStream(t testing.TB, cfg jetstream.StreamConfig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.JS(t).CreateStream(ctx, cfg); err != nil {
		t.Fatalf("creating stream %s: %v", cfg.Name, err)
	}
}

// DeleteStream deletes a stream.
func (s *Server) DeleteStream(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.JS(t).DeleteStream(ctx, name); err != nil {
		t.Fatalf("deleting stream %s: %v", name, err)
	}
}

// Msg is a message read back from a stream.
type Msg struct {
	ID      string // its Nats-Msg-Id header
	Subject string
	Data    string
}

// ReadStream reads every message of a stream, in stream order, with an
// ordered consumer.
func (s *Server) ReadStream(t testing.TB, name string) []Msg {
	t.Helper()
	js := s.JS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	total := int(info.State.Msgs)
	if total == 0 {
		return nil
	}
	cons, err := js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]Msg, 0, total)
	for len(out) < total {
		batch, err := cons.Fetch(min(total-len(out), 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatalf("reading stream %s: %v", name, err)
		}
		got := 0
		for m := range batch.Messages() {
			out = append(out, Msg{ID: m.Headers().Get(jetstream.MsgIDHeader), Subject: m.Subject(), Data: string(m.Data())})
			got++
		}
		if err := batch.Error(); err != nil {
			t.Fatalf("reading stream %s: %v", name, err)
		}
		if got == 0 {
			t.Fatalf("reading stream %s: nothing more after %d of %d messages", name, len(out), total)
		}
	}
	return out
}
