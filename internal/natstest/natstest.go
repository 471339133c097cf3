// Package natstest runs the real NATS server (nats-server v2, JetStream
// on, file storage in a test's temporary directory) inside a test
// process, on loopback, and reads streams back: one server, or a
// JetStream cluster of several whose nodes can be stopped and started
// again on their store. It is for tests only: gyre's JetStream tests talk
// to a real server, never to a mock, and this is the one place that
// knows how to start one.
package natstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
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
	// hold keeps the port while the server is not running, so that no
	// other test (go test runs packages in parallel) starts a server of
	// its own there and a client meant to find this one down finds that
	// one instead; it accepts connections and closes them at once.
	hold net.Listener
}

// New prepares a JetStream server on a loopback port (0: one free now),
// with its store in a fresh temporary directory, without starting it; it
// is stopped at cleanup. users, if given, are user and password pairs the
// server requires.
func New(t testing.TB, port int, users ...string) *Server {
	t.Helper()
	return NewWith(t, port, nil, users...)
}

// NewWith is New with mod, if not nil, changing the server's options
// (permissions, limits) before it starts.
func NewWith(t testing.TB, port int, mod func(*server.Options), users ...string) *Server {
	t.Helper()
	s := newServer(t, port, users...)
	if mod != nil {
		mod(&s.opts)
	}
	return s
}

func newServer(t testing.TB, port int, users ...string) *Server {
	t.Helper()
	s := &Server{t: t}
	if port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		s.keep(ln)
	} else {
		s.holdPort(port)
	}
	s.opts = server.Options{
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoLog:      true,
		NoSigs:     true,
		MaxPayload: 1 << 20,
	}
	for i := 0; i+1 < len(users); i += 2 {
		s.opts.Users = append(s.opts.Users, &server.User{Username: users[i], Password: users[i+1]})
	}
	t.Cleanup(func() {
		s.Stop()
		s.releasePort()
	})
	return s
}

// holdPort takes the port while the server is down (see Server.hold);
// if another process has it already, there is nothing to hold.
func (s *Server) holdPort(port int) {
	if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
		s.keep(ln)
	}
}

// keep makes ln the port's placeholder: every connection is closed at
// once, as a client of a server that is down would have it refused.
func (s *Server) keep(ln net.Listener) {
	s.hold = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
}

func (s *Server) releasePort() {
	if s.hold != nil {
		_ = s.hold.Close()
		s.hold = nil
	}
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
	s.releasePort()
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

// Running reports whether the server is started.
func (s *Server) Running() bool { return s.srv != nil }

// Name is the server's name (in a cluster: n1, n2...).
func (s *Server) Name() string { return s.opts.ServerName }

// Stop shuts the server down and waits until it has; its store stays.
func (s *Server) Stop() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
		s.holdPort(s.opts.Port)
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
	return connect(t, s.URL(), s.opts.Users)
}

// connect opens a helper connection to url (several, comma-separated),
// as the first of users if any, closed at cleanup.
func connect(t testing.TB, url string, users []*server.User) jetstream.JetStream {
	t.Helper()
	opts := []nats.Option{nats.Timeout(5 * time.Second)}
	if len(users) > 0 {
		opts = append(opts, nats.UserInfo(users[0].Username, users[0].Password))
	}
	nc, err := nats.Connect(url, opts...)
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
	createStream(t, s.JS(t), cfg)
}

func createStream(t testing.TB, js jetstream.JetStream, cfg jetstream.StreamConfig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, cfg); err != nil {
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
	return readStream(t, s.JS(t), name)
}

func readStream(t testing.TB, js jetstream.JetStream, name string) []Msg {
	t.Helper()
	// A cluster may answer "no responders" for a moment after a node came
	// back (the consumer's placement): read again from the start then.
	deadline := time.Now().Add(20 * time.Second)
	for {
		msgs, err := readStreamOnce(js, name)
		if err == nil {
			return msgs
		}
		if time.Now().After(deadline) || !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("reading stream %s: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readStreamOnce(js jetstream.JetStream, name string) ([]Msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	total := int(info.State.Msgs)
	if total == 0 {
		return nil, nil
	}
	cons, err := js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	out := make([]Msg, 0, total)
	for len(out) < total {
		batch, err := cons.Fetch(min(total-len(out), 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		got := 0
		for m := range batch.Messages() {
			out = append(out, Msg{ID: m.Headers().Get(jetstream.MsgIDHeader), Subject: m.Subject(), Data: string(m.Data())})
			got++
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if got == 0 {
			return nil, fmt.Errorf("nothing more after %d of %d messages", len(out), total)
		}
	}
	return out, nil
}

// Cluster is a JetStream cluster of in-process servers on loopback, each
// with its own client and route ports and its store in a temporary
// directory of its own. A node can be stopped and started again (on the
// same ports and store), as a restarted server.
type Cluster struct {
	t     testing.TB
	Nodes []*Server
}

// NewCluster prepares n JetStream servers that route to each other as
// cluster "gyre-test" (names n1, n2...), without starting them; they are
// stopped at cleanup.
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	routes := make([]string, n)
	cports := make([]int, n)
	for i := range n {
		cports[i] = FreePort(t)
		routes[i] = "nats://127.0.0.1:" + strconv.Itoa(cports[i])
	}
	for i := range n {
		s := newServer(t, 0)
		s.opts.ServerName = fmt.Sprintf("n%d", i+1)
		s.opts.Cluster = server.ClusterOpts{Name: "gyre-test", Host: "127.0.0.1", Port: cports[i]}
		s.opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		c.Nodes = append(c.Nodes, s)
	}
	return c
}

// StartCluster starts a cluster of n nodes and waits until JetStream has
// a meta leader (streams can be created).
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := NewCluster(t, n)
	c.Start()
	return c
}

// Start starts every node that is not running, at once (each waits for
// the others' routes), then waits until JetStream answers.
func (c *Cluster) Start() {
	c.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(c.Nodes))
	for _, s := range c.Nodes {
		if s.Running() {
			continue
		}
		s.releasePort()
		wg.Go(func() {
			opts := s.opts
			srv, err := server.NewServer(&opts)
			if err != nil {
				errs <- fmt.Errorf("nats-server %s: %w", s.Name(), err)
				return
			}
			srv.Start()
			if !srv.ReadyForConnections(10 * time.Second) {
				srv.Shutdown()
				errs <- fmt.Errorf("nats-server %s not ready after 10s", s.Name())
				return
			}
			s.srv = srv
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		c.t.Fatal(err)
	}
	c.WaitJetStream()
}

// WaitJetStream waits, for at most 30 s, until the cluster's JetStream
// has a meta leader and every running node is current with it.
func (c *Cluster) WaitJetStream() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		leader, current := false, true
		for _, s := range c.Nodes {
			if s.srv != nil {
				leader = leader || s.srv.JetStreamIsLeader()
				current = current && s.srv.JetStreamIsCurrent()
			}
		}
		if leader && current {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatal("nats cluster: no JetStream meta leader after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URLs are the client URLs of every node.
func (c *Cluster) URLs() []string {
	urls := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		urls[i] = s.URL()
	}
	return urls
}

// URL is every node's client URL, comma-separated (as nats.Connect and
// ingestd --nats-url take them).
func (c *Cluster) URL() string { return strings.Join(c.URLs(), ",") }

// JS connects a helper client to the cluster (any node) and returns its
// JetStream context; the connection is closed at cleanup.
func (c *Cluster) JS(t testing.TB) jetstream.JetStream {
	t.Helper()
	return connect(t, c.URL(), nil)
}

// CreateStream creates a stream (file storage unless cfg says otherwise;
// set cfg.Replicas for a replicated one), trying again for up to 10 s
// while the cluster cannot place it yet (peers still joining).
func (c *Cluster) CreateStream(t testing.TB, cfg jetstream.StreamConfig) {
	t.Helper()
	js := c.JS(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := js.CreateStream(ctx, cfg)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("creating stream %s: %v", cfg.Name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ReadStream reads every message of a stream, in stream order, with an
// ordered consumer.
func (c *Cluster) ReadStream(t testing.TB, name string) []Msg {
	t.Helper()
	return readStream(t, c.JS(t), name)
}

// StreamLeader returns the index in Nodes of the stream's leader.
func (c *Cluster) StreamLeader(t testing.TB, name string) int {
	t.Helper()
	info := c.streamInfo(t, name)
	if info.Cluster != nil {
		for i, s := range c.Nodes {
			if s.Name() == info.Cluster.Leader {
				return i
			}
		}
	}
	t.Fatalf("stream %s: no leader among the nodes (%+v)", name, info.Cluster)
	return -1
}

func (c *Cluster) streamInfo(t testing.TB, name string) *jetstream.StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.JS(t).Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return st.CachedInfo()
}

// WaitStreamCurrent waits, for at most 30 s, until the stream has a
// leader and every replica is current (caught up), as after a node came
// back.
func (c *Cluster) WaitStreamCurrent(t testing.TB, name string) {
	t.Helper()
	js := c.JS(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := js.Stream(ctx, name)
		cancel()
		if err == nil {
			info := st.CachedInfo()
			ok := info.Cluster != nil && info.Cluster.Leader != "" && len(info.Cluster.Replicas) == info.Config.Replicas-1
			for i := 0; ok && i < len(info.Cluster.Replicas); i++ {
				r := info.Cluster.Replicas[i]
				ok = r.Current && !r.Offline
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s: replicas not current after 30s (%v)", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
