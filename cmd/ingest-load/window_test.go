package main

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
)

// ackingServer is a minimal ingest-v1 server: it ACKs the highest DATA seq
// it has read every millisecond, and records the most DATA frames it ever
// saw unanswered on one connection.
type ackingServer struct {
	ln             net.Listener
	maxOutstanding atomic.Uint64
	frames         atomic.Uint64
	wg             sync.WaitGroup
}

func startAckingServer(t *testing.T) *ackingServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &ackingServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *ackingServer) serve(c net.Conn) {
	defer c.Close()
	var mu sync.Mutex
	var received, acked uint64
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			mu.Lock()
			if received > acked {
				acked = received
				_, _ = c.Write(ingest.AppendAck(nil, acked))
			}
			mu.Unlock()
		}
	}()
	dec := ingest.NewDecoder(0)
	buf := make([]byte, 1<<16)
	have := 0
	for {
		n, err := c.Read(buf[have:])
		have += n
		used := 0
		for {
			f, m, derr := dec.Decode(buf[used:have])
			if errors.Is(derr, ingest.ErrNeedMore) {
				break
			}
			if derr != nil {
				return
			}
			used += m
			s.frames.Add(1)
			mu.Lock()
			received = f.Seq
			out := received - acked
			mu.Unlock()
			for {
				cur := s.maxOutstanding.Load()
				if out <= cur || s.maxOutstanding.CompareAndSwap(cur, out) {
					break
				}
			}
		}
		have = copy(buf, buf[used:have])
		if err != nil {
			return
		}
	}
}

// The writer never has more than --window DATA frames unanswered; with
// window 1 it waits for each ACK before the next DATA.
func TestWindowRespected(t *testing.T) {
	for _, window := range []int{1, 4, 64} {
		s := startAckingServer(t)
		code, res, _, stderr := runJSON(t, "--addr", s.ln.Addr().String(), "--conns", "2", "--duration", "300ms",
			"--window", strconv.Itoa(window))
		if code != exitOK || res.MessagesAcked != res.MessagesSent {
			t.Fatalf("window %d: exit %d, %+v; %s", window, code, res, stderr)
		}
		got := s.maxOutstanding.Load()
		if got > uint64(window) {
			t.Errorf("window %d: the server saw %d DATA frames unanswered", window, got)
		}
		if window > 1 && got < 2 {
			t.Errorf("window %d: never more than %d unanswered: not pipelining", window, got)
		}
		t.Logf("window %d: %d frames, at most %d unanswered", window, s.frames.Load(), got)
	}
}
