package reactor_test

import (
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gyre-io/gyre/reactor"
)

// pauseCounter pauses reading at its first OnData and counts every byte
// it is given.
type pauseCounter struct {
	*connGrabber
	n atomic.Int64
}

func (h *pauseCounter) OnData(c *reactor.Conn, b []byte) int {
	h.n.Add(int64(len(b)))
	c.PauseReading()
	return len(b)
}

func (h *pauseCounter) OnClose(_ *reactor.Conn, cause error) { h.closed <- cause }

// TestFINWhilePausedKeepsInput: bytes the kernel had already received when
// a pause took effect, followed by the peer's FIN, are presented at
// ResumeReading before the connection closes with io.EOF; none is dropped.
func TestFINWhilePausedKeepsInput(t *testing.T) {
	h := &pauseCounter{connGrabber: newGrabber()}
	s := start(t, reactor.Config{Reactors: 1}, h)
	client := s.dial(t)
	defer client.Close()
	sc := h.conn(t)
	const size = 1 << 20
	if _, err := client.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	_ = client.(interface{ CloseWrite() error }).CloseWrite()
	// Wait until receiving has stopped (the pause took effect) or the FIN
	// was seen: the bytes that arrived meanwhile are kept for the resume.
	settled := make(chan bool, 1)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := sc.Post(func(c *reactor.Conn) { settled <- reactor.ReadSettled(c) }); err != nil {
			t.Fatal(err)
		}
		if <-settled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("receiving did not stop after the pause")
		}
		time.Sleep(time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.n.Load() < size && time.Now().Before(deadline) {
		_ = sc.Post(func(c *reactor.Conn) { c.ResumeReading() })
		time.Sleep(5 * time.Millisecond)
	}
	if got := h.n.Load(); got != size {
		t.Fatalf("handler saw %d bytes, want %d", got, size)
	}
	_ = sc.Post(func(c *reactor.Conn) { c.ResumeReading() }) // nothing left: the FIN closes
	if cause := waitCause(t, h.closed); !errors.Is(cause, io.EOF) {
		t.Fatalf("close cause %v, want io.EOF", cause)
	}
}
