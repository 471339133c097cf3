package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// largeFrame returns a DATA frame with a payload of n bytes that names seq
// and key, so the sink's copy can be checked byte for byte.
func largeFrame(t *testing.T, key string, seq uint64, n int) (frame, payload []byte) {
	t.Helper()
	unit := fmt.Sprintf("%s/%d;", key, seq)
	payload = bytes.Repeat([]byte(unit), n/len(unit)+1)[:n]
	frame, err := AppendData(nil, seq, payload)
	if err != nil {
		t.Fatal(err)
	}
	return frame, payload
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestFrameMemoryRefusesWhenUsedUp: with frame memory for one maximal
// frame, held by one connection's half-sent frame, a second connection's
// large frame is refused with NACK 3 "frame memory exhausted"; its payload
// is read and dropped and the connection goes on: a small frame after it
// is stored, and the large one, resent with a new seq once the first frame
// is done, is stored too. Every stored copy is intact, nothing of the
// refused frame is stored, and nothing is held afterwards.
func TestFrameMemoryRefusesWhenUsedUp(t *testing.T) {
	const maxPayload = 256 << 10
	sink := &recordingSink{}
	s := startServer(t, ServerConfig{Sink: sink, MaxPayload: maxPayload, FrameMemory: maxPayload + HeaderSize})

	f1, p1 := largeFrame(t, "first", 1, maxPayload)
	f2, _ := largeFrame(t, "refused", 1, maxPayload)
	a, b := dialClient(t, s.Addr()), dialClient(t, s.Addr())
	if _, err := a.c.Write(f1[:len(f1)/2]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first frame to hold the frame memory", 5*time.Second, func() bool { return s.frames.Held() == maxPayload+HeaderSize })
	if _, err := b.c.Write(f2); err != nil {
		t.Fatal(err)
	}
	b.seq = 1
	nack, err := b.next()
	if err != nil || nack.Kind != KindNack || nack.Seq != 1 || string(nack.Payload[2:]) != refuseReason {
		t.Fatalf("refused frame: got %v seq %d %q (%v), want NACK 3 seq 1 %q", nack.Kind, nack.Seq, nack.Payload, err, refuseReason)
	}
	small := b.data([]byte("after the refusal"))
	b.flush()
	b.waitAck(small)

	if _, err := a.c.Write(f1[len(f1)/2:]); err != nil {
		t.Fatal(err)
	}
	a.waitAck(1)
	f3, p3 := largeFrame(t, "resent", 3, maxPayload)
	if _, err := b.c.Write(f3); err != nil {
		t.Fatal(err)
	}
	b.waitAck(3)

	sink.mu.Lock()
	got := map[string][]byte{}
	for _, r := range sink.recs {
		got[string(r.Payload[:6])] = r.Payload
	}
	sink.mu.Unlock()
	if len(got) != 3 || !bytes.Equal(got["first/"], p1) || !bytes.Equal(got["resent"], p3) || string(got["after "]) != "after the refusal" {
		t.Fatalf("the sink holds %d records, or copies that differ from what was sent; want the first frame, the small one and the resent one", len(got))
	}
	if st := s.Stats(); st.FrameMemory != 0 || st.FrameRefusals != 1 {
		t.Fatalf("afterwards: %d bytes of frame memory held, %d refusals (want 0 and 1)", st.FrameMemory, st.FrameRefusals)
	}
}

// TestFrameMemoryBoundsStalledFrames is the attack of issue 15 in small:
// many connections announce a maximal frame and stall one byte short. The
// frame memory never exceeds its budget, the connections that find it used
// up get NACK 3 "frame memory exhausted", a healthy client is served
// throughout, and once the frame deadline has closed the stalled
// connections (every one of them, within the deadline), nothing is held.
func TestFrameMemoryBoundsStalledFrames(t *testing.T) {
	const (
		maxPayload = 64 << 10
		budget     = 4 * (maxPayload + HeaderSize)
		attackers  = 60
		timeout    = 1500 * time.Millisecond
	)
	sink := &recordingSink{}
	s := startServer(t, ServerConfig{Sink: sink, MaxPayload: maxPayload, FrameMemory: budget, FrameTimeout: timeout})

	type outcome struct {
		nacked bool          // got NACK 3 for its frame
		after  time.Duration // from its last byte to the server's close
		err    error
	}
	results := make(chan outcome, attackers)
	var wg sync.WaitGroup
	for i := range attackers {
		c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		frame, _ := largeFrame(t, fmt.Sprintf("stall%d", i), 1, maxPayload)
		wg.Go(func() {
			if _, err := c.Write(frame[:len(frame)-1]); err != nil {
				results <- outcome{err: err}
				return
			}
			sent := time.Now()
			_ = c.SetReadDeadline(time.Now().Add(timeout + 10*time.Second))
			dec := NewReplyDecoder()
			reply, err := io.ReadAll(c) // until the server closes
			o := outcome{after: time.Since(sent)}
			if len(reply) > 0 {
				f, _, derr := dec.Decode(reply)
				switch {
				case derr != nil:
					o.err = derr
				case f.Kind == KindNack && NackCode(f.Payload[0])<<8|NackCode(f.Payload[1]) == NackOverloaded &&
					string(f.Payload[2:]) == refuseReason:
					o.nacked = true
				default:
					o.err = fmt.Errorf("unexpected reply %v seq %d", f.Kind, f.Seq)
				}
			}
			if err != nil && !errors.Is(err, net.ErrClosed) && o.err == nil && !isReset(err) {
				o.err = err
			}
			results <- o
		})
	}

	// A healthy client sends small records throughout.
	h := dialClient(t, s.Addr())
	for range 200 {
		seq := h.data([]byte("healthy"))
		h.flush()
		h.waitAck(seq)
		if held := s.frames.Held(); held > budget {
			t.Fatalf("frame memory holds %d bytes, over the budget of %d", held, budget)
		}
	}
	wg.Wait()
	close(results)
	nacked := 0
	for o := range results {
		if o.err != nil {
			t.Errorf("attacker: %v", o.err)
		}
		if o.after > timeout+time.Second {
			t.Errorf("an attacker was closed %v after its last byte, want within the frame timeout (%v)", o.after, timeout)
		}
		if o.nacked {
			nacked++
		}
	}
	st := s.Stats()
	t.Logf("%d attackers: %d refused with NACK 3, peak frame memory %d of %d", attackers, st.FrameRefusals, s.frames.Peak(), int64(budget))
	if s.frames.Peak() > budget {
		t.Errorf("peak frame memory %d over the budget %d", s.frames.Peak(), budget)
	}
	if st.FrameRefusals == 0 || uint64(nacked) != st.FrameRefusals {
		t.Errorf("%d refusals counted, %d NACKs seen: want the same, more than 0", st.FrameRefusals, nacked)
	}
	waitFor(t, "every stalled connection to be closed", 10*time.Second, func() bool { return s.Stats().ConnsActive == 1 })
	if held := s.frames.Held(); held != 0 {
		t.Errorf("after the attack: %d bytes of frame memory held", held)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, r := range sink.recs {
		if string(r.Payload) != "healthy" {
			t.Fatalf("the sink stored part of an unfinished frame (%d bytes)", len(r.Payload))
		}
	}
}

// isReset reports a connection reset by the server (it may close a
// connection with unread bytes, which the kernel answers with RST).
func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op)
}
