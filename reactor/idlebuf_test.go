package reactor_test

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/gyre-io/gyre/reactor"
)

// keepHalf echoes what it receives but consumes only whole 100-byte
// records, so a cut record is kept in the accumulation buffer until the
// rest arrives.
type keepHalf struct{ conns chan *reactor.Conn }

func (h keepHalf) OnOpen(c *reactor.Conn) { h.conns <- c }
func (h keepHalf) OnData(c *reactor.Conn, b []byte) int {
	n := len(b) / 100 * 100
	_, _ = c.Write(b[:n])
	return n
}
func (keepHalf) OnClose(*reactor.Conn, error) {}

// TestIdleConnectionHoldsNoBuffers: after a burst of output (64 KiB) and
// a record cut across receives, a connection that has nothing left to send
// and no input kept holds no output or accumulation buffer once it has been
// quiet for a moment, so idle connections cost only their bookkeeping,
// whatever their last burst was.
func TestIdleConnectionHoldsNoBuffers(t *testing.T) {
	h := keepHalf{conns: make(chan *reactor.Conn, 1)}
	s := start(t, reactor.Config{Reactors: 1}, h)
	nc := s.dial(t)
	defer nc.Close()
	c := <-h.conns
	burst := bytes.Repeat([]byte("0123456789"), 6400)
	if _, err := nc.Write(burst); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(nc, make([]byte, len(burst))); err != nil {
		t.Fatal(err)
	}
	// A record in two pieces: the first is kept until the second comes.
	if _, err := nc.Write(burst[:60]); err != nil {
		t.Fatal(err)
	}
	held := make(chan int, 1)
	waitHeld := func() int {
		t.Helper()
		if err := c.Post(func(c *reactor.Conn) { held <- reactor.HeldBuffers(c) }); err != nil {
			t.Fatal(err)
		}
		return <-held
	}
	if _, err := nc.Write(burst[60:100]); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(nc, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	// The buffers go back once the connection has been quiet for the
	// sweep's half second; poll for that, with a deadline.
	deadline := time.Now().Add(5 * time.Second)
	for n := waitHeld(); n != 0; n = waitHeld() {
		if time.Now().After(deadline) {
			t.Fatalf("an idle connection still holds %d bytes of buffers", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConnSize keeps a connection's bookkeeping within the 224-byte size
// class: with no buffers held, that is what an idle connection costs the
// reactor (docs/benchmarks.md, idle after traffic). A field added here
// is paid by every idle connection of every server.
func TestConnSize(t *testing.T) {
	if reactor.ConnSize > 224 {
		t.Fatalf("reactor.Conn is %d bytes, over the 224 it is held to", reactor.ConnSize)
	}
}
