package main

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
)

// loadClient is a minimal pipelining ingest-v1 client: a sender goroutine
// writes DATA frames with seqs 1, 2, 3... while at most window of them are
// unacknowledged, and a reader goroutine decodes the replies, frees window
// slots on ACK and NACK, and records what it saw. It never resends.
//
// Fields are owned by one goroutine each; the test reads them only after
// the owner has finished (done), except the atomics.
type loadClient struct {
	id     int
	conn   net.Conn
	tokens chan struct{} // free window slots
	stop   chan struct{} // closed by the test: stop sending
	goaway chan struct{} // closed by the reader on GOAWAY: stop sending

	sentSeq  atomic.Uint64 // highest seq handed to Write
	ackedSeq atomic.Uint64 // highest ACK seen

	senderDone, readerDone chan struct{}

	// Sender-owned.
	sendErr error

	// Reader-owned.
	frames    []replyEvent // every reply, in order
	lastAck   uint64       // highest ACK seen
	nacked    map[uint64]ingest.NackCode
	goawaySeq uint64
	gotGoaway bool
	readErr   error    // what ended reading (io.EOF for a clean close)
	problems  []string // protocol violations seen by the reader
}

type replyEvent struct {
	kind ingest.Kind
	seq  uint64
	code ingest.NackCode
}

// startLoad dials addr and starts sending.
func startLoad(t *testing.T, addr string, id, window int) *loadClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("client %d: %v", id, err)
	}
	lc := &loadClient{
		id: id, conn: c,
		tokens: make(chan struct{}, window), stop: make(chan struct{}), goaway: make(chan struct{}),
		senderDone: make(chan struct{}), readerDone: make(chan struct{}),
		nacked: map[uint64]ingest.NackCode{},
	}
	for i := 0; i < window; i++ {
		lc.tokens <- struct{}{}
	}
	// Everything is bounded: nothing waits on the connection past this.
	_ = c.SetDeadline(time.Now().Add(45 * time.Second))
	go lc.send()
	go lc.read()
	t.Cleanup(func() {
		c.Close()
		<-lc.senderDone
		<-lc.readerDone
	})
	return lc
}

func (lc *loadClient) send() {
	defer close(lc.senderDone)
	var frame, payload []byte
	for seq := uint64(1); ; seq++ {
		select {
		case <-lc.tokens:
		case <-lc.stop:
			return
		case <-lc.goaway:
			return
		case <-lc.readerDone:
			return
		}
		// A GOAWAY or stop may have come while waiting: check before
		// sending another frame.
		select {
		case <-lc.stop:
			return
		case <-lc.goaway:
			return
		default:
		}
		payload = appendPayload(payload[:0], lc.id, seq)
		frame, _ = ingest.AppendData(frame[:0], seq, payload)
		lc.sentSeq.Store(seq) // before the write: its ACK may be read before Write returns
		if _, err := lc.conn.Write(frame); err != nil {
			lc.sendErr = err
			return
		}
	}
}

func (lc *loadClient) read() {
	defer close(lc.readerDone)
	dec := ingest.NewReplyDecoder()
	var buf []byte
	tmp := make([]byte, 32<<10)
	for {
		f, n, err := dec.Decode(buf)
		if errors.Is(err, ingest.ErrNeedMore) {
			m, rerr := lc.conn.Read(tmp)
			buf = append(buf, tmp[:m]...)
			if rerr != nil && m == 0 {
				lc.readErr = rerr
				return
			}
			continue
		}
		if err != nil {
			lc.problem("undecodable reply: %v", err)
			lc.readErr = err
			return
		}
		buf = buf[n:]
		ev := replyEvent{kind: f.Kind, seq: f.Seq, code: f.NackCode()}
		lc.frames = append(lc.frames, ev)
		if lc.gotGoaway {
			lc.problem("%v seq %d after GOAWAY", f.Kind, f.Seq)
		}
		switch f.Kind {
		case ingest.KindAck:
			if f.Seq < lc.lastAck {
				lc.problem("ACK %d after ACK %d", f.Seq, lc.lastAck)
				continue
			}
			if sent := lc.sentSeq.Load(); f.Seq > sent {
				lc.problem("ACK %d for a seq not sent yet (sent up to %d)", f.Seq, sent)
			}
			for s := lc.lastAck + 1; s <= f.Seq; s++ {
				if _, ok := lc.nacked[s]; !ok {
					lc.release()
				}
			}
			lc.lastAck = f.Seq
			lc.ackedSeq.Store(f.Seq)
		case ingest.KindNack:
			if f.Seq <= lc.lastAck {
				lc.problem("NACK %d after ACK %d covered it", f.Seq, lc.lastAck)
			}
			lc.nacked[f.Seq] = f.NackCode()
			lc.release()
		case ingest.KindGoaway:
			lc.gotGoaway = true
			lc.goawaySeq = f.Seq
			close(lc.goaway)
		default:
			lc.problem("unexpected %v seq %d", f.Kind, f.Seq)
		}
	}
}

// release frees one window slot.
func (lc *loadClient) release() {
	select {
	case lc.tokens <- struct{}{}:
	default:
		lc.problem("more slots freed than frames sent")
	}
}

func (lc *loadClient) problem(format string, args ...any) {
	if len(lc.problems) < 10 {
		lc.problems = append(lc.problems, fmt.Sprintf("client %d: ", lc.id)+fmt.Sprintf(format, args...))
	}
}

// waitDone waits for both goroutines of every client.
func waitDone(t *testing.T, clients []*loadClient, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for _, lc := range clients {
		for _, ch := range []chan struct{}{lc.readerDone, lc.senderDone} {
			select {
			case <-ch:
			case <-deadline:
				t.Fatalf("client %d still running after %v (sent %d, acked %d)", lc.id, timeout, lc.sentSeq.Load(), lc.ackedSeq.Load())
			}
		}
	}
}

// waitAcked waits until every client has at least min acknowledged.
func waitAcked(t *testing.T, clients []*loadClient, min uint64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, lc := range clients {
		for lc.ackedSeq.Load() < min {
			if time.Now().After(deadline) {
				t.Fatalf("client %d: only ACK %d after %v", lc.id, lc.ackedSeq.Load(), timeout)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
