package reactor_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gyre-io/gyre/acceptor"
	"github.com/gyre-io/gyre/reactor"
)

type echo struct{ reactor.BaseHandler }

func (echo) OnData(c *reactor.Conn, b []byte) int {
	_, _ = c.Write(b)
	return len(b)
}

func TestSmokeEcho(t *testing.T) {
	g, err := reactor.NewGroup(reactor.Config{Reactors: 2}, echo{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := acceptor.Listen(acceptor.Config{Addrs: []string{"127.0.0.1:0"}}, g)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", a.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("hello"), 1000)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("mismatch")
	}
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v %+v", g.Stats(), a.Stats())
}
