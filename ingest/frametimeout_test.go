package ingest

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestFrameTimeoutClosesSlowClients: connections that start a frame and
// then trickle it in one byte at a time (slowloris) are closed once
// FrameTimeout has passed since the frame began, however often a byte
// arrives; a client whose frames arrive in pieces, each frame finished in
// time, and a client sending whole frames are served throughout.
func TestFrameTimeoutClosesSlowClients(t *testing.T) {
	const timeout = 400 * time.Millisecond
	s := startServer(t, ServerConfig{Sink: &DiscardSink{}, Reactors: 1, FrameTimeout: timeout})
	frame, err := AppendData(nil, 1, make([]byte, 1000))
	if err != nil {
		t.Fatal(err)
	}

	const slow = 20
	stop := make(chan struct{})
	defer close(stop)
	closedAfter := make(chan time.Duration, slow)
	for i := 0; i < slow; i++ {
		c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		began := time.Now()
		if _, err := c.Write(frame[:5]); err != nil { // part of the header
			t.Fatal(err)
		}
		go func() { // one byte every 20 ms, never the whole frame
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for i := 5; i < len(frame)-1; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := c.Write(frame[i : i+1]); err != nil {
					return
				}
			}
		}()
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(timeout + 5*time.Second))
			_, err := io.ReadAll(c)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				closedAfter <- -1
				return
			}
			closedAfter <- time.Since(began)
		}()
	}

	// Meanwhile: whole frames, and frames sent in two halves 100 ms apart
	// (each finished well within the timeout) for twice the timeout.
	whole := dialClient(t, s.Addr())
	for i := 0; i < 8; i++ {
		whole.data(make([]byte, 1000))
	}
	whole.flush()
	whole.waitAck(8)
	halves := dialClient(t, s.Addr())
	for seq := uint64(1); seq <= 8; seq++ {
		f, _ := AppendData(nil, seq, make([]byte, 1000))
		if _, err := halves.c.Write(f[:600]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // pacing: the frame arrives in two pieces
		if _, err := halves.c.Write(f[600:]); err != nil {
			t.Fatal(err)
		}
		halves.waitAck(seq)
	}

	for i := 0; i < slow; i++ {
		d := <-closedAfter
		switch {
		case d < 0:
			t.Fatalf("a slow connection was still open %v after its frame began (FrameTimeout %v)", timeout+5*time.Second, timeout)
		case d < timeout:
			t.Errorf("a slow connection was closed after %v, before FrameTimeout %v", d, timeout)
		case d > timeout+2*time.Second:
			t.Errorf("a slow connection was closed only after %v (FrameTimeout %v)", d, timeout)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().ClosedBy[CloseFrameTimeout] < slow && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := s.Stats().ClosedBy[CloseFrameTimeout]; got != slow {
		t.Errorf("ClosedBy[frame_timeout] = %d, want %d; stats %+v", got, slow, s.Stats())
	}
}

// TestFrameTimeoutOff: a negative FrameTimeout leaves an unfinished frame
// alone.
func TestFrameTimeoutOff(t *testing.T) {
	s := startServer(t, ServerConfig{Sink: &DiscardSink{}, Reactors: 1, FrameTimeout: -1})
	c := dialClient(t, s.Addr())
	f, _ := AppendData(nil, 1, make([]byte, 100))
	if _, err := c.c.Write(f[:50]); err != nil {
		t.Fatal(err)
	}
	_ = c.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read = %v, want the client's own deadline (the server must not close)", err)
	}
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.c.Write(f[50:]); err != nil {
		t.Fatal(err)
	}
	c.waitAck(1)
}
