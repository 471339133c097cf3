package main

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
)

// TestBugDrainResetDestroysGoaway shows that the SIGTERM drain does not end
// connections with a clean close when the client still has DATA in flight
// (the normal case for a pipelining client): the server pauses reading at
// the start of the drain, queues GOAWAY, and closes the socket while the
// client's bytes keep arriving unread. Linux answers with RST instead of a
// FIN after the queued replies, and an RST throws away whatever the
// server's socket has not transmitted yet. For a client that is behind in
// reading its replies, that is the last ACKs and the GOAWAY itself: the
// client sees "connection reset by peer" and - following docs/protocol.md
// section 7 - resends every message after the last ACK it got, although
// the log already holds them (duplicates on every routine restart). The
// drain is meant to be the graceful path: "After GOAWAY the server sends
// the ACKs that are still due and closes the connection".
//
// Set-up: the client has a small receive buffer and does not read its
// replies while it produces (60 PINGs first, whose PONGs fill its receive
// window, so every ACK after them waits in the server's send queue); at
// SIGTERM it keeps producing for 50 ms more (frames in flight), stops, and
// then reads everything. With the same client stopping *before* the
// SIGTERM, it does get every ACK and the GOAWAY: the loss comes from the
// reset alone.
func TestRegressionDrainResetDestroysGoaway(t *testing.T) {
	dir := t.TempDir()
	d := startServe(t, dir, "--grace", "5s")

	dialer := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := dialer.DialContext(context.Background(), "tcp", d.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))

	// Keep DATA flowing at a steady pace well within what the server
	// stores (so its queue never fills and it never stops reading), as a
	// producer with a bounded window does, until told to stop.
	stop := make(chan struct{})
	sent := make(chan uint64, 1)
	var writeErr error // the writer's; read after <-sent
	// First a few PINGs, whose PONGs (80 bytes each) fill the small
	// receive window at once, so the ACKs that follow wait in the
	// server's send queue; PINGs take seqs like DATA.
	const pings = 60
	var frames []byte
	for i := uint64(1); i <= pings; i++ {
		frames, _ = ingest.AppendPing(frames, i, make([]byte, ingest.MaxPingPayload))
	}
	if _, err := c.Write(frames); err != nil {
		t.Fatal(err)
	}
	go func() {
		seq := uint64(pings)
		defer func() { sent <- seq }()
		var frames []byte
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			frames = frames[:0]
			for i := 0; i < 16; i++ {
				seq++
				frames, _ = ingest.AppendData(frames, seq, appendPayload(nil, 1, seq))
			}
			if _, err := c.Write(frames); err != nil {
				writeErr = err
				seq -= 16
				return
			}
		}
	}()
	time.Sleep(1500 * time.Millisecond)

	// SIGTERM; the producer's frames already on their way keep arriving
	// for a moment (here: it stops 50 ms later), then the client catches
	// up on its replies, as a client told to drain does.
	d.signal(syscall.SIGTERM)
	time.Sleep(50 * time.Millisecond)
	close(stop)
	_ = c.SetWriteDeadline(time.Now()) // unblock a Write stuck on a full window
	sentSeq := <-sent
	dec := ingest.NewReplyDecoder()
	var buf []byte
	tmp := make([]byte, 4096)
	var lastAck, goaway uint64
	gotGoaway := false
	var end error
	for end == nil {
		f, n, err := dec.Decode(buf)
		if err == nil {
			buf = buf[n:]
			switch f.Kind {
			case ingest.KindAck:
				lastAck = f.Seq
			case ingest.KindGoaway:
				gotGoaway, goaway = true, f.Seq
			}
			continue
		}
		if !errors.Is(err, ingest.ErrNeedMore) {
			t.Fatalf("bad reply: %v", err)
		}
		m, rerr := c.Read(tmp)
		buf = append(buf, tmp[:m]...)
		if rerr != nil && m == 0 {
			end = rerr
		}
	}
	c.Close()
	if code := d.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}

	// The highest seq stored: every DATA seq up to it is in the log.
	var highest uint64
	for k := range logContents(t, dir) {
		if k.client == 1 {
			highest = max(highest, k.seq)
		}
	}
	t.Logf("sent up to seq %d, stored up to %d, last ACK received %d, GOAWAY received %v (seq %d), writing ended with %v, reading with %v",
		sentSeq, highest, lastAck, gotGoaway, goaway, writeErr, end)
	if !gotGoaway {
		t.Errorf("the client never received the GOAWAY: the drain's close reset the connection (writing ended with %v)", writeErr)
	}
	if lastAck != highest {
		t.Errorf("the client saw ACK %d but messages up to seq %d are stored: it will resend %d stored messages", lastAck, highest, highest-lastAck)
	}
	if !errors.Is(end, io.EOF) {
		t.Errorf("reading ended with %v, want EOF (a clean close after GOAWAY)", end)
	}
}
