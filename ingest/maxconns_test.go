package ingest

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestMaxConnsRefusesAtOnce: with MaxConns open, the next connection is
// accepted and closed at once (not left in the backlog), counted as
// refused; the open ones keep working, and once one closes a new one is
// served.
func TestMaxConnsRefusesAtOnce(t *testing.T) {
	const max = 4
	s := startServer(t, ServerConfig{Sink: &DiscardSink{}, Reactors: 2, MaxConns: max})
	var open []*testClient
	for i := 0; i < max; i++ {
		c := dialClient(t, s.Addr())
		c.data([]byte("x"))
		c.flush()
		c.waitAck(1)
		open = append(open, c)
	}
	for i := 0; i < 3; i++ {
		c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadAll(c)
		c.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection %d over MaxConns %d was left open", max+i+1, max)
		}
	}
	if st := s.Stats(); st.ConnsRefused != 3 || st.ConnsActive != max {
		t.Errorf("stats %+v: want 3 refused and %d active", st, max)
	}
	for _, c := range open { // still served
		seq := c.data([]byte("y"))
		c.flush()
		c.waitAck(seq)
	}
	open[0].c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().ConnsActive != max-1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	c := dialClient(t, s.Addr())
	c.data([]byte("z"))
	c.flush()
	c.waitAck(1)
}

// TestMaxConnsDefaultBelowDescriptorLimit: the default leaves
// ConnsReserve descriptors for everything else.
func TestMaxConnsDefaultBelowDescriptorLimit(t *testing.T) {
	n := DefaultMaxConns()
	if n <= 0 {
		t.Skip("no descriptor limit to derive it from here")
	}
	cfg, err := ServerConfig{Sink: &DiscardSink{}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConns != n {
		t.Errorf("MaxConns default %d, want DefaultMaxConns() %d", cfg.MaxConns, n)
	}
}
