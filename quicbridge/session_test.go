package quicbridge

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/quic-go/quic-go"
)

// storedSeqs returns the seqs the sink stored for session id, in order,
// after checking that each was stored once, with its payload, and that no
// record of another session (or of none) is there.
func storedSeqs(t *testing.T, sink *recSink, id ingest.SessionID, key string) []uint64 {
	t.Helper()
	seen := map[uint64]bool{}
	var seqs []uint64
	for pid, recs := range sink.snapshot() {
		for _, r := range recs {
			if r.session != id {
				t.Fatalf("producer %#x seq %d: session %v, want %v", pid, r.seq, r.session, id)
			}
			if seen[r.seq] {
				t.Fatalf("seq %d stored twice", r.seq)
			}
			seen[r.seq] = true
			if want := string(payloadFor(key, r.seq)); r.payload != want {
				t.Fatalf("seq %d: payload %q, want %q", r.seq, r.payload, want)
			}
			seqs = append(seqs, r.seq)
		}
	}
	slices.Sort(seqs)
	return seqs
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// welcome says HELLO for id on rs and returns the WELCOME.
func (rs *replyStream) welcome(id ingest.SessionID) ingest.Frame {
	rs.t.Helper()
	rs.write(helloFrame(id, "test-client"))
	f := rs.expect(ingest.KindWelcome)
	if got := f.Welcome(); got.IsZero() || !id.IsZero() && got != id {
		rs.t.Fatalf("WELCOME for session %v, want %v", got, id)
	}
	return f
}

// finish half-closes rs and expects only ACKs up to lastAck, then FIN.
func (rs *replyStream) finish(lastAck uint64) {
	rs.t.Helper()
	if err := rs.str.Close(); err != nil {
		rs.t.Fatal(err)
	}
	got, end := rs.rest()
	var acked uint64
	for _, f := range got {
		if f.Kind != ingest.KindAck {
			rs.t.Fatalf("got %v seq %d before FIN, want only ACKs", f.Kind, f.Seq)
		}
		acked = f.Seq
	}
	if !errors.Is(end, io.EOF) {
		rs.t.Fatalf("stream end %v, want FIN", end)
	}
	if acked != 0 && acked != lastAck {
		rs.t.Fatalf("last ACK %d, want %d", acked, lastAck)
	}
}

func waitDetached(t *testing.T, b *Bridge, n int) {
	t.Helper()
	waitFor(t, 10*time.Second, "the session to be detached", func() bool {
		st := b.disp.Sessions().Stats()
		return st.Attached == 0 && st.Detached == n
	})
}

// TestSessionNew: HELLO with the zero id opens a session (WELCOME with a
// new id and seq 0); DATA is acknowledged as usual and stored with the
// session id; the session is detached when the stream ends.
func TestSessionNew(t *testing.T) {
	sink := newRecSink()
	b := startBridge(t, Config{}, ingest.DispatcherConfig{}, sink)
	c := dial(t, b.Addr(), nil)
	rs := openReplyStream(t, c)
	w := rs.welcome(ingest.SessionID{})
	if w.Seq != 0 {
		t.Fatalf("WELCOME seq %d for a new session, want 0", w.Seq)
	}
	id := w.Welcome()
	rs.write(dataFrames("new", 1, 20))
	rs.ackUpTo(20)
	rs.finish(20)
	if got := storedSeqs(t, sink, id, "new"); !slices.Equal(got, seqRange(1, 20)) {
		t.Fatalf("stored %v, want 1..20", got)
	}
	waitDetached(t, b, 1)
	if st := b.disp.Sessions().Stats(); st.Created != 1 || st.Duplicates != 0 {
		t.Fatalf("session stats %+v", st)
	}
}

// TestSessionResume: a second connection resumes the session: WELCOME
// carries the highest acknowledged seq; what is resent at or below it is
// acknowledged without being stored again, what follows is stored.
func TestSessionResume(t *testing.T) {
	sink := newRecSink()
	b := startBridge(t, Config{}, ingest.DispatcherConfig{}, sink)

	c1 := dial(t, b.Addr(), nil)
	rs := openReplyStream(t, c1)
	id := rs.welcome(ingest.SessionID{}).Welcome()
	rs.write(dataFrames("resume", 1, 20))
	rs.ackUpTo(20)
	rs.finish(20)
	_ = c1.CloseWithError(0, "")
	waitDetached(t, b, 1)

	c2 := dial(t, b.Addr(), nil)
	rs = openReplyStream(t, c2)
	if w := rs.welcome(id); w.Seq != 20 {
		t.Fatalf("WELCOME seq %d, want 20", w.Seq)
	}
	// Only duplicates: acknowledged as if stored.
	rs.write(dataFrames("resume", 15, 20))
	rs.ackUpTo(20)
	rs.write(dataFrames("resume", 21, 30))
	rs.ackUpTo(30)
	rs.finish(30)
	if got := storedSeqs(t, sink, id, "resume"); !slices.Equal(got, seqRange(1, 30)) {
		t.Fatalf("stored %v, want 1..30 once each", got)
	}
	waitDetached(t, b, 1)
	if st := b.disp.Sessions().Stats(); st.Resumed != 1 || st.Duplicates != 6 || st.Takeovers != 0 {
		t.Fatalf("session stats %+v", st)
	}
	if st := b.Stats(); st.MessagesIn != 30 {
		t.Fatalf("%d messages queued, want 30 (duplicates are not)", st.MessagesIn)
	}
}

// TestSessionTakeover: a HELLO on another connection takes over a session
// whose stream is still open, with records queued: the old stream gets
// GOAWAY and ends, and the WELCOME waits until those records are reported,
// so its seq covers them.
func TestSessionTakeover(t *testing.T) {
	sink := newRecSink()
	sink.stall()
	b := startBridge(t, Config{}, ingest.DispatcherConfig{}, sink)

	ca := dial(t, b.Addr(), nil)
	a := openReplyStream(t, ca)
	id := a.welcome(ingest.SessionID{}).Welcome()
	a.write(dataFrames("take", 1, 10))
	waitFor(t, 5*time.Second, "the frames to be queued", func() bool { return b.Stats().MessagesIn == 10 })

	cb := dial(t, b.Addr(), nil)
	bs := openReplyStream(t, cb)
	bs.write(helloFrame(id, "newer"))
	// A hears first, while its records are still in the stalled sink.
	if g := a.expect(ingest.KindGoaway); g.Seq != 10 {
		t.Fatalf("GOAWAY %d, want 10", g.Seq)
	}
	sink.release()
	got, end := a.rest()
	if !errors.Is(end, io.EOF) {
		t.Fatalf("old stream end %v, want FIN", end)
	}
	if len(got) == 0 || got[len(got)-1].Kind != ingest.KindAck || got[len(got)-1].Seq != 10 {
		t.Fatalf("old stream's last replies %+v, want ACK 10", got)
	}
	w := bs.expect(ingest.KindWelcome)
	if w.Seq != 10 || w.Welcome() != id {
		t.Fatalf("WELCOME %v seq %d, want %v seq 10", w.Welcome(), w.Seq, id)
	}
	bs.write(dataFrames("take", 5, 15))
	bs.ackUpTo(15)
	bs.finish(15)
	if got := storedSeqs(t, sink, id, "take"); !slices.Equal(got, seqRange(1, 15)) {
		t.Fatalf("stored %v, want 1..15 once each", got)
	}
	// A's connection was left alone.
	if err := oneShot(context.Background(), ca, "take-after"); err != nil {
		t.Fatal(err)
	}
	waitDetached(t, b, 1)
	if st := b.disp.Sessions().Stats(); st.Takeovers != 1 || st.Duplicates != 6 {
		t.Fatalf("session stats %+v", st)
	}
}

// TestSessionDetachAfterConnLoss: a connection dies with records of its
// session still in the sink; the session is detached once they are
// reported, after the stream's goroutine returned, and a HELLO meanwhile
// waits for that.
func TestSessionDetachAfterConnLoss(t *testing.T) {
	sink := newRecSink()
	sink.stall()
	b := startBridge(t, Config{}, ingest.DispatcherConfig{}, sink)

	ca := dial(t, b.Addr(), nil)
	a := openReplyStream(t, ca)
	id := a.welcome(ingest.SessionID{}).Welcome()
	a.write(dataFrames("lost", 1, 3))
	waitFor(t, 5*time.Second, "the frames to be queued", func() bool { return b.Stats().MessagesIn == 3 })
	_ = ca.CloseWithError(0, "gone")
	waitFor(t, 5*time.Second, "the stream to end", func() bool { return b.Stats().StreamsActive == 0 })
	if st := b.disp.Sessions().Stats(); st.Attached != 1 {
		t.Fatalf("session stats %+v: detached with records still queued", st)
	}

	cb := dial(t, b.Addr(), nil)
	bs := openReplyStream(t, cb)
	bs.write(helloFrame(id, ""))
	waitFor(t, 5*time.Second, "the HELLO to wait", func() bool { return b.disp.Sessions().Stats().Takeovers == 1 })
	sink.release()
	if w := bs.expect(ingest.KindWelcome); w.Seq != 3 {
		t.Fatalf("WELCOME seq %d, want 3", w.Seq)
	}
	bs.write(dataFrames("lost", 4, 5))
	bs.ackUpTo(5)
	bs.finish(5)
	if got := storedSeqs(t, sink, id, "lost"); !slices.Equal(got, seqRange(1, 5)) {
		t.Fatalf("stored %v, want 1..5", got)
	}
	waitDetached(t, b, 1)
}

// TestSessionHelloErrors: an unknown session id gets NACK 5; HELLO after
// another frame, or twice, NACK 1. The stream ends each time (STOP_SENDING
// with the NACK's code, then FIN) and the connection goes on.
func TestSessionHelloErrors(t *testing.T) {
	sink := newRecSink()
	b := startBridge(t, Config{}, ingest.DispatcherConfig{}, sink)
	c := dial(t, b.Addr(), nil)
	var unknown ingest.SessionID
	_, _ = rand.Read(unknown[:])

	for _, tc := range []struct {
		name    string
		wire    []byte
		code    ingest.NackCode
		welcome bool
	}{
		{"unknown", helloFrame(unknown, ""), ingest.NackUnknownSession, false},
		{"not-first", append(dataFrame(1, payloadFor("late-hello", 1)), helloFrame(ingest.SessionID{}, "")...), ingest.NackMalformed, false},
		{"twice", append(helloFrame(ingest.SessionID{}, ""), helloFrame(ingest.SessionID{}, "")...), ingest.NackMalformed, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := openReplyStream(t, c)
			rs.write(tc.wire)
			got, end := rs.rest()
			if !errors.Is(end, io.EOF) {
				t.Fatalf("stream end %v, want FIN", end)
			}
			var nack *ingest.Frame
			welcomed := false
			for i, f := range got {
				switch f.Kind {
				case ingest.KindNack:
					nack = &got[i]
				case ingest.KindWelcome:
					welcomed = true
				}
			}
			if nack == nil || nack.NackCode() != tc.code || nack.Seq != 0 || welcomed != tc.welcome {
				t.Fatalf("replies %+v: want NACK %d for seq 0 (WELCOME %v)", got, tc.code, tc.welcome)
			}
			var se *quic.StreamError
			deadline := time.Now().Add(5 * time.Second)
			for {
				_, err := rs.str.Write([]byte("more"))
				if errors.As(err, &se) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("writes still succeed after the NACK (last err %v)", err)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if se.ErrorCode != quic.StreamErrorCode(tc.code) || !se.Remote {
				t.Fatalf("STOP_SENDING code %d, want %d", se.ErrorCode, tc.code)
			}
		})
	}
	if err := oneShot(context.Background(), c, "after"); err != nil {
		t.Fatal(err)
	}
	waitDetached(t, b, 1) // the one "twice" opened
	if st := b.Stats(); st.Nacks[ingest.NackUnknownSession] != 1 || st.Nacks[ingest.NackMalformed] != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestSessionOverloadReject: under the reject policy a session stream that
// gets NACK 3 then gets GOAWAY and ends; nothing above the NACKed seq is
// stored, and the client resumes from there on a new stream.
func TestSessionOverloadReject(t *testing.T) {
	sink := newRecSink()
	sink.stall()
	b := startBridge(t, Config{Overload: ingest.OverloadReject}, ingest.DispatcherConfig{Shards: 1, QueueMessages: 2, QueueBytes: 1 << 20}, sink)
	c := dial(t, b.Addr(), nil)
	rs := openReplyStream(t, c)
	id := rs.welcome(ingest.SessionID{}).Welcome()
	rs.write(dataFrames("rej", 1, 8))
	nack := rs.expect(ingest.KindNack)
	if nack.NackCode() != ingest.NackOverloaded {
		t.Fatalf("NACK code %v, want 3", nack.NackCode())
	}
	k := nack.Seq
	if g := rs.expect(ingest.KindGoaway); g.Seq != k-1 {
		t.Fatalf("GOAWAY %d after NACK 3 for %d, want %d", g.Seq, k, k-1)
	}
	sink.release()
	got, end := rs.rest()
	if !errors.Is(end, io.EOF) {
		t.Fatalf("stream end %v, want FIN", end)
	}
	for _, f := range got {
		if f.Kind != ingest.KindAck || f.Seq > k-1 {
			t.Fatalf("after GOAWAY: %v seq %d, want ACKs up to %d", f.Kind, f.Seq, k-1)
		}
	}
	if got := storedSeqs(t, sink, id, "rej"); !slices.Equal(got, seqRange(1, k-1)) {
		t.Fatalf("stored %v, want 1..%d", got, k-1)
	}

	// Resume: WELCOME says k-1; the client resends the rest with the same
	// seqs, one at a time (the queue is tiny).
	rs = openReplyStream(t, c)
	if w := rs.welcome(id); w.Seq != k-1 {
		t.Fatalf("WELCOME seq %d, want %d", w.Seq, k-1)
	}
	for seq := k; seq <= 8; seq++ {
		rs.write(dataFrame(seq, payloadFor("rej", seq)))
		rs.ackUpTo(seq)
	}
	rs.finish(8)
	if got := storedSeqs(t, sink, id, "rej"); !slices.Equal(got, seqRange(1, 8)) {
		t.Fatalf("stored %v, want 1..8", got)
	}
}

// TestSessionSinkFailure: NACK 6 on a session stream is followed by GOAWAY
// and the stream's end; the session's seq stays below the refused record.
func TestSessionSinkFailure(t *testing.T) {
	sink := newRecSink()
	b := startBridge(t, Config{}, ingest.DispatcherConfig{}, sink)
	c := dial(t, b.Addr(), nil)
	rs := openReplyStream(t, c)
	id := rs.welcome(ingest.SessionID{}).Welcome()
	rs.write(dataFrames("fail", 1, 2))
	rs.ackUpTo(2)
	sink.failing.Store(true)
	rs.write(dataFrame(3, payloadFor("fail", 3)))
	if n := rs.expect(ingest.KindNack); n.Seq != 3 || n.NackCode() != ingest.NackStorageUnavailable {
		t.Fatalf("NACK %d code %v, want NACK 6 for seq 3", n.Seq, n.NackCode())
	}
	if g := rs.expect(ingest.KindGoaway); g.Seq != 3 {
		t.Fatalf("GOAWAY %d, want 3", g.Seq)
	}
	if got, end := rs.rest(); len(got) != 0 || !errors.Is(end, io.EOF) {
		t.Fatalf("after GOAWAY: %+v, end %v; want FIN", got, end)
	}
	sink.failing.Store(false)

	rs = openReplyStream(t, c)
	if w := rs.welcome(id); w.Seq != 2 {
		t.Fatalf("WELCOME seq %d, want 2", w.Seq)
	}
	rs.write(dataFrames("fail", 3, 4))
	rs.ackUpTo(4)
	rs.finish(4)
	if got := storedSeqs(t, sink, id, "fail"); !slices.Equal(got, seqRange(1, 4)) {
		t.Fatalf("stored %v, want 1..4", got)
	}
}

// TestSessionShutdown: a drain ends a session stream like any other
// (GOAWAY, ACKs, FIN) and detaches its session.
func TestSessionShutdown(t *testing.T) {
	sink := newRecSink()
	b := startBridge(t, Config{}, ingest.DispatcherConfig{}, sink)
	c := dial(t, b.Addr(), nil)
	rs := openReplyStream(t, c)
	id := rs.welcome(ingest.SessionID{}).Welcome()
	rs.write(dataFrames("drain", 1, 5))
	rs.ackUpTo(5)
	done := make(chan error, 1)
	go func() { done <- b.Shutdown(context.Background()) }()
	if g := rs.expect(ingest.KindGoaway); g.Seq != 5 {
		t.Fatalf("GOAWAY %d, want 5", g.Seq)
	}
	if _, end := rs.rest(); !errors.Is(end, io.EOF) {
		t.Fatalf("stream end %v, want FIN", end)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitDetached(t, b, 1)
	if got := storedSeqs(t, sink, id, "drain"); !slices.Equal(got, seqRange(1, 5)) {
		t.Fatalf("stored %v", got)
	}
}

// TestSessionTakeoverWhileBlocked: the old stream waits for queue room
// (block policy, full queue, stalled sink) when its session is taken
// over: the takeover ends that wait, so GOAWAY comes at once, and the new
// stream's WELCOME still waits for the records already queued.
func TestSessionTakeoverWhileBlocked(t *testing.T) {
	sink := newRecSink()
	sink.stall()
	b := startBridge(t, Config{Overload: ingest.OverloadBlock}, ingest.DispatcherConfig{Shards: 1, QueueMessages: 2, QueueBytes: 1 << 20}, sink)

	ca := dial(t, b.Addr(), nil)
	a := openReplyStream(t, ca)
	id := a.welcome(ingest.SessionID{}).Welcome()
	a.write(dataFrames("blocked", 1, 10))
	waitFor(t, 5*time.Second, "the stream to wait for queue room", func() bool { return b.Stats().QueueFull == 1 })

	cb := dial(t, b.Addr(), nil)
	bs := openReplyStream(t, cb)
	bs.write(helloFrame(id, ""))
	g := a.expect(ingest.KindGoaway) // with the sink still stalled
	if q := b.Stats().MessagesIn; g.Seq != q {
		t.Fatalf("GOAWAY %d, want %d (the frames queued)", g.Seq, q)
	}
	sink.release()
	a.ackUpTo(g.Seq)
	if got, end := a.rest(); len(got) != 0 || !errors.Is(end, io.EOF) {
		t.Fatalf("old stream: %+v then %v, want FIN", got, end)
	}
	if w := bs.expect(ingest.KindWelcome); w.Seq != g.Seq {
		t.Fatalf("WELCOME seq %d, want %d", w.Seq, g.Seq)
	}
	bs.write(dataFrames("blocked", g.Seq+1, 10))
	bs.ackUpTo(10)
	bs.finish(10)
	if got := storedSeqs(t, sink, id, "blocked"); !slices.Equal(got, seqRange(1, 10)) {
		t.Fatalf("stored %v, want 1..10", got)
	}
}

// notifyCache is a client session cache that signals each ticket stored.
type notifyCache struct {
	tls.ClientSessionCache
	put chan struct{}
}

func (c *notifyCache) Put(key string, cs *tls.ClientSessionState) {
	c.ClientSessionCache.Put(key, cs)
	if cs != nil {
		select {
		case c.put <- struct{}{}:
		default:
		}
	}
}

// TestSessionHelloIn0RTT: a HELLO that arrives in 0-RTT (maybe a replay)
// is not attached before the handshake completes, so DATA after it is not
// stored before then either; then all goes as usual.
func TestSessionHelloIn0RTT(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "tickets.key")
	if err := CreateTicketKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	keys, err := LoadTicketKeys(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	sink := newRecSink()
	b := startBridge(t, Config{TicketKeys: keys}, ingest.DispatcherConfig{}, sink)
	cache := &notifyCache{ClientSessionCache: tls.NewLRUClientSessionCache(4), put: make(chan struct{}, 1)}
	ctls := clientTLS(t)
	ctls.ClientSessionCache = cache
	qconf := &quic.Config{TokenStore: quic.NewLRUTokenStore(4, 4)}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c1, err := quic.DialAddr(ctx, b.Addr(), ctls, qconf)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-cache.put:
	case <-ctx.Done():
		t.Fatal("no session ticket")
	}
	_ = c1.CloseWithError(0, "")

	const delay = time.Second
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	slow := &handshakeDelayConn{PacketConn: udp, delay: delay, gate: make(chan struct{})}
	tr := &quic.Transport{Conn: slow}
	defer func() { slow.pending.Wait(); _ = tr.Close(); _ = udp.Close() }()
	raddr, _ := net.ResolveUDPAddr("udp", b.Addr())
	began := time.Now()
	c, err := tr.DialEarly(ctx, raddr, ctls, qconf)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseWithError(0, "")
	str, err := c.OpenStream() // in 0-RTT
	slow.release()
	if err != nil {
		t.Fatal(err)
	}
	rs := &replyStream{t: t, str: str}
	rs.ch = replies(str, &rs.end)
	rs.write(append(helloFrame(ingest.SessionID{}, "early"), dataFrames("early", 1, 3)...))
	w := rs.expect(ingest.KindWelcome)
	rs.ackUpTo(3)
	rs.finish(3)
	if !c.ConnectionState().Used0RTT {
		t.Fatal("the connection did not use 0-RTT")
	}
	if got := storedSeqs(t, sink, w.Welcome(), "early"); !slices.Equal(got, seqRange(1, 3)) {
		t.Fatalf("stored %v", got)
	}
	for _, recs := range sink.snapshot() {
		if at := recs[0].at.Sub(began); at < delay {
			t.Fatalf("stored %v after the dial, before the handshake could complete (%v)", at, delay)
		}
	}
}
