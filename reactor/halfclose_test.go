package reactor_test

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gyre-io/gyre/reactor"
)

// halfCloser collects what arrives and answers it, upper-cased, only once
// the peer has shut down its sending side; keep says whether it keeps the
// connection open for that (HalfCloseHandler).
type halfCloser struct {
	keep   bool
	got    []byte
	closed chan error
}

func (h *halfCloser) OnOpen(*reactor.Conn) {}

func (h *halfCloser) OnData(_ *reactor.Conn, b []byte) int {
	h.got = append(h.got, b...)
	return len(b)
}

func (h *halfCloser) OnPeerFIN(c *reactor.Conn) bool {
	if !h.keep {
		return false
	}
	_, _ = c.Write(bytes.ToUpper(h.got))
	_ = c.Close()
	return true
}

func (h *halfCloser) OnClose(_ *reactor.Conn, cause error) { h.closed <- cause }

// TestHalfCloseHandler: a client that sends its request and shuts down its
// sending side gets its answer from a HalfCloseHandler that keeps
// writing, on every engine; and one that declines closes as before, with
// io.EOF.
func TestHalfCloseHandler(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.String(), func(t *testing.T) {
			for _, keep := range []bool{true, false} {
				t.Run(map[bool]string{true: "keep", false: "decline"}[keep], func(t *testing.T) { halfClose(t, e, keep) })
			}
		})
	}
}

func halfClose(t *testing.T, e reactor.Engine, keep bool) {
	h := &halfCloser{keep: keep, closed: make(chan error, 1)}
	s := start(t, reactor.Config{Engine: e, Reactors: 1, Buffers: bufringSmall}, h)
	c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := bytes.Repeat([]byte("half-closed "), 10000) // many receive buffers
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	c.Close()
	if err != nil {
		t.Fatalf("keep=%v: reading the reply: %v", keep, err)
	}
	cause := waitCause(t, h.closed)
	if keep {
		if !bytes.Equal(reply, bytes.ToUpper(msg)) {
			t.Fatalf("got %d bytes back, want the %d sent, upper-cased", len(reply), len(msg))
		}
		if cause != nil {
			t.Fatalf("close cause %v, want nil (the handler closed)", cause)
		}
	} else if len(reply) != 0 || cause != io.EOF {
		t.Fatalf("declined: got %d bytes and cause %v, want none and io.EOF", len(reply), cause)
	}
}
