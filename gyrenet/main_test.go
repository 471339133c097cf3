package gyrenet_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/gyre-io/gyre/gyrenet"
	"github.com/gyre-io/gyre/internal/leakcheck"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// listen starts a Listener on a loopback port with two reactors (the
// engine GYRE_ENGINE names, or the one Auto picks) and registers a cleanup
// that shuts it down and checks that no descriptor or ring is left behind
// (goroutines are checked by TestMain).
func listen(t testing.TB, cfg gyrenet.Config) *gyrenet.Listener {
	t.Helper()
	before := leakcheck.Take(t)
	if cfg.Reactors == 0 {
		cfg.Reactors = 2
	}
	l, err := gyrenet.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := l.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case <-l.Done():
		default:
			t.Errorf("Done not closed after Shutdown")
		}
		leakcheck.Check(t, before)
	})
	return l
}

func dial(t testing.TB, l net.Listener) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// accept returns the next server-side connection, failing t after a while.
func accept(t testing.TB, l net.Listener) net.Conn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		ch <- res{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Accept: %v", r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return r.c
	case <-time.After(10 * time.Second):
		t.Fatalf("Accept: nothing after 10s")
	}
	return nil
}

// pair dials l and returns the client and the server side.
func pair(t testing.TB, l net.Listener) (client, server net.Conn) {
	t.Helper()
	client = dial(t, l)
	server = accept(t, l)
	return client, server
}

// waitUntil polls cond until it holds, failing t after 5 s: for states a
// test must reach before it acts (a call waiting, a buffer full), which
// have no event of their own to receive.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
