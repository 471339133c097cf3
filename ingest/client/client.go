// Package client sends records to a gyre ingest node over ingest-v1
// (docs/protocol.md), on QUIC or TCP, with a bounded window, backpressure,
// retries and failover between endpoints.
//
// Delivery is exactly once within a producer session: the client opens a
// session with its first connection (HELLO), numbers its records in the
// session, and after a lost connection, a GOAWAY, a NACK or a move to
// another endpoint resumes the session on the next connection. The
// server's WELCOME says up to which seq it has stored the session's
// records; the client counts those as acknowledged and resends only the
// rest, with the same seqs, so a record is stored once however often the
// connection breaks, and across a server restart (the file sink keeps the
// sessions). Persist Client.Session and pass it back in Config.Session to
// resume after the producer itself restarts. A session the server no
// longer knows (expired after its --session-ttl, or a different node that
// does not share it) is replaced by a new one, and then records that were
// in flight may be stored twice: Stats.SessionsLost counts those events.
//
// A Client keeps one connection (one QUIC stream, or one TCP connection)
// at a time. All methods are safe for concurrent use.
package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/gyre-io/gyre/ingest"
)

// Errors returned by Send, Flush and Close. ErrClosed matches net.ErrClosed.
var (
	ErrClosed   = fmt.Errorf("client: closed: %w", net.ErrClosed)
	ErrTooLarge = errors.New("client: payload larger than Config.MaxPayload or Config.MaxUnackedBytes")
)

// retainedPayload is the largest payload buffer a record slot keeps for
// the next record once its record is answered: the slots' retained memory
// is at most Window x retainedPayload beyond the unacknowledged bytes.
const retainedPayload = 4 << 10

// resumeGap is how far past WELCOME's seq a client that resumes a session
// it has not numbered itself starts its seqs: more than any producer sends
// between two updates of a session store, and 2^32 restarts of a
// producer before the seq space (uint64) runs out.
const resumeGap = 1 << 32

// writeBatch is the size at which the writer stops adding frames to one
// Write.
const writeBatch = 64 << 10

// Record states.
const (
	recFree    = iota // slot unused, or its record answered
	recPending        // queued or in flight
)

// record is one record Send queued, in its ring slot.
type record struct {
	id      uint64
	seq     uint64 // the session seq it was first sent with, kept for resends; 0 before
	payload []byte // Send's copy
	state   uint8
}

// flight is a DATA frame in flight on a connection, in seq order.
type flight struct {
	seq, id uint64
}

// End reasons of a connection, which decide where and when to reconnect.
type endReason uint8

const (
	endLost       endReason = iota // read/write failed, or the server closed
	endGoaway                      // GOAWAY or NACK 4: next endpoint, at once
	endStorage                     // NACK 6: next endpoint, after a backoff
	endOverloaded                  // NACK 3: the same endpoint, sending after a backoff
	endFatal                       // NACK 1/2/5 or a bad reply: a new connection
	endClosing                     // Close
)

// conn is the client's state for one connection.
type conn struct {
	ep       endpoint
	s        stream
	done     chan struct{} // closed when the reader has returned
	welcomed bool          // (mu) WELCOME arrived: DATA may be sent
	highest  uint64        // (mu) highest seq sent on it
	ackSeq   uint64        // (mu) highest ACK (WELCOME's seq at first)
	flights  []flight      // (mu) DATA sent, not yet ACKed, in seq order
	live     int           // (mu) flights whose record is still waiting for this conn's answer
	leaving  bool          // (mu) send nothing more (GOAWAY, NACK 4 or 6, write failure)
	reason   endReason     // (mu) why the connection ends
	err      error         // (mu) the error that ended it, if any
	acked    bool          // (mu) an ACK arrived on it
	goaway   uint64        // (mu) GOAWAY's seq: higher seqs were not accepted (MaxUint64: no GOAWAY)
	timer    *time.Timer   // (mu) closes a leaving connection that takes too long
	once     sync.Once
}

func (cn *conn) close() { cn.once.Do(func() { _ = cn.s.Close() }) }

// Client sends records to ingest nodes. Create it with Dial; stop it with
// Close.
type Client struct {
	cfg settings

	closeCtx  context.Context // canceled by Close: aborts dials and backoffs
	closeFn   context.CancelFunc
	loopDone  chan struct{}
	wake      chan struct{} // capacity 1: the writer has something to do
	closeOnce sync.Once

	mu         sync.Mutex
	ring       []record // records by id & mask
	mask       uint64
	floor      uint64   // lowest id not answered (== nextID when none)
	nextID     uint64   // id of the next Send
	bytes      int      // payload bytes of pending records
	sendq      []uint64 // ids to send on the current connection, in seq order then id order
	session    ingest.SessionID
	nextSeq    uint64 // the session's next seq
	pauseUntil time.Time
	nack3      int // NACK 3 in a row without an ACK
	// cwnd bounds the records in flight on the connection below Window
	// after NACK 3: halved once per NACK 3 episode, grown by one per ACK frame
	// (back to Window), so an overloaded server is not sent a whole window
	// again after every backoff.
	cwnd      int
	cur       *conn
	changed   chan struct{} // closed and cleared when records are answered or the client closes
	closed    bool
	lastErr   error // the last connection or dial error
	failed    uint64
	reported  uint64 // failed, as of the last Flush that reported failures
	firstFail error  // first failure since the last report
	stats     Stats
}

// Stats counts what a Client did. Resent counts records sent again after
// the connection they were in flight on ended unanswered; Retried those
// sent again that the server said it did not store (NACK 3, 4 or 6, or
// above a GOAWAY's seq). Neither is stored twice within a session;
// Resumed counts those the WELCOME of the next connection said were
// stored after all.
type Stats struct {
	Sent    uint64 // DATA frames written (including resends)
	Acked   uint64 // records acknowledged (by ACK, or by WELCOME's seq)
	Failed  uint64 // records failed (NACK 1 or 2, or abandoned by Close)
	Resent  uint64 // records resent after a connection ended
	Retried uint64 // records resent after NACK 3, 4, 6 or past GOAWAY
	Resumed uint64 // records in flight when a connection ended that WELCOME said were stored
	// SessionsLost counts sessions the server did not know (NACK 5:
	// expired, or another node): the client opened a new one, and the
	// records then unacknowledged may be stored twice.
	SessionsLost uint64
	Nacks        [7]uint64
	Goaways      uint64
	Dials        uint64 // connection attempts
	DialErrors   uint64
	Endpoint     string // the current endpoint, "" when not connected
}

// Dial connects to the first endpoint of cfg.Endpoints that answers within
// cfg.DialTimeout, trying each once in order, and returns a Client sending
// on that connection. It fails if none answers (the error joins each
// endpoint's) or ctx ends first; ctx is used only for this first
// connection.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	s, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	var errs []error
	for i, e := range s.endpoints {
		st, err := dialEndpoint(ctx, e, s.tls, s.DialTimeout)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		c := newClient(s)
		c.stats.Dials = uint64(i + 1)
		c.stats.DialErrors = uint64(i)
		go c.loop(i, st)
		return c, nil
	}
	return nil, errors.Join(errs...)
}

func newClient(s settings) *Client {
	n := uint64(1) << bits.Len64(uint64(s.Window)-1)
	c := &Client{
		cfg:      s,
		loopDone: make(chan struct{}),
		wake:     make(chan struct{}, 1),
		ring:     make([]record, n),
		mask:     n - 1,
		floor:    1,
		nextID:   1,
		session:  s.Session,
		nextSeq:  1,
		cwnd:     s.Window,
	}
	c.closeCtx, c.closeFn = context.WithCancel(context.Background())
	return c
}

// Send queues a copy of payload and returns its id (1, 2, 3, ... in Send
// order), which Config.OnResult reports. It blocks while Config.Window
// records or Config.MaxUnackedBytes bytes are unanswered, until ctx ends
// (then it returns ctx's error and queues nothing). The caller may reuse
// payload as soon as Send returns. Safe for concurrent use; records from
// concurrent Sends are sent in id order.
func (c *Client) Send(ctx context.Context, payload []byte) (uint64, error) {
	if len(payload) > c.cfg.MaxPayload || len(payload) > c.cfg.MaxUnackedBytes {
		return 0, ErrTooLarge
	}
	c.mu.Lock()
	for {
		if c.closed {
			c.mu.Unlock()
			return 0, ErrClosed
		}
		if c.nextID-c.floor < uint64(c.cfg.Window) &&
			(c.bytes+len(payload) <= c.cfg.MaxUnackedBytes || c.nextID == c.floor) {
			break
		}
		ch := c.changedLocked()
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		c.mu.Lock()
	}
	id := c.nextID
	c.nextID++
	r := &c.ring[id&c.mask]
	r.id, r.seq, r.state = id, 0, recPending
	r.payload = append(r.payload[:0], payload...)
	c.bytes += len(payload)
	c.sendq = append(c.sendq, id)
	c.mu.Unlock()
	c.signal()
	return id, nil
}

// Flush returns once every record queued before the call is answered. It
// returns nil if all of them (and those since the previous Flush that
// returned an error) were acknowledged; an error wrapping the first
// failure (a *ingest.ProtocolError) if some failed; ctx's error, with the
// last connection error, if ctx ends first; ErrClosed after Close.
func (c *Client) Flush(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	target := c.nextID
	for c.floor < target {
		if c.closed {
			return ErrClosed
		}
		ch := c.changedLocked()
		c.mu.Unlock()
		select {
		case <-ch:
			c.mu.Lock()
		case <-ctx.Done():
			c.mu.Lock()
			if c.lastErr != nil {
				return fmt.Errorf("client: flush: %w (last connection error: %v)", ctx.Err(), c.lastErr)
			}
			return fmt.Errorf("client: flush: %w", ctx.Err())
		}
	}
	if c.failed > c.reported {
		n, err := c.failed-c.reported, c.firstFail
		c.reported, c.firstFail = c.failed, nil
		return fmt.Errorf("client: %d records failed, the first: %w", n, err)
	}
	return nil
}

// Close flushes (see Flush), then closes the connection and stops the
// client's goroutines, whether or not the flush succeeded. Records still
// unanswered then fail with ErrClosed (reported to Config.OnResult).
// It returns Flush's error. Later calls return ErrClosed.
func (c *Client) Close(ctx context.Context) error {
	first := false
	c.closeOnce.Do(func() { first = true })
	if !first {
		return ErrClosed
	}
	err := c.Flush(ctx)
	c.mu.Lock()
	c.closed = true
	c.broadcastLocked()
	cn := c.cur
	c.mu.Unlock()
	c.closeFn()
	if cn != nil {
		cn.close() // a Write blocked on flow control returns
	}
	c.signal()
	<-c.loopDone
	// Abandon what is left.
	var res []result
	c.mu.Lock()
	for id := c.floor; id < c.nextID; id++ {
		r := &c.ring[id&c.mask]
		if r.state == recPending {
			res = c.resolveLocked(r, ErrClosed, res)
		}
	}
	c.mu.Unlock()
	c.report(res)
	return err
}

// Session returns the client's producer session: Config.Session, or the
// one the server opened for it (zero until the first WELCOME). Pass it in
// Config.Session to a later client to resume the session.
func (c *Client) Session() ingest.SessionID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	if c.cur != nil {
		s.Endpoint = c.cur.ep.raw
	}
	return s
}

// changedLocked returns a channel closed at the next change.
func (c *Client) changedLocked() <-chan struct{} {
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	return c.changed
}

func (c *Client) broadcastLocked() {
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

func (c *Client) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// result is one answered record, for Config.OnResult.
type result struct {
	id  uint64
	err error
}

// resolveLocked answers record r, frees the slots below the first
// pending record, and appends the result for OnResult to res.
func (c *Client) resolveLocked(r *record, err error, res []result) []result {
	r.state = recFree
	r.seq = 0
	c.bytes -= len(r.payload)
	if cap(r.payload) > retainedPayload {
		r.payload = nil
	} else {
		r.payload = r.payload[:0]
	}
	if err != nil {
		c.stats.Failed++
		c.failed++
		if c.firstFail == nil {
			c.firstFail = err
		}
	} else {
		c.stats.Acked++
	}
	if c.cfg.OnResult != nil {
		res = append(res, result{r.id, err})
	}
	for c.floor < c.nextID && c.ring[c.floor&c.mask].state == recFree {
		c.floor++
	}
	c.broadcastLocked()
	return res
}

func (c *Client) report(res []result) {
	for _, r := range res {
		c.cfg.OnResult(r.id, r.err)
	}
}

// loop owns the connections: it runs each (the writer on this goroutine,
// the reader on another), and after each one ends picks the next endpoint
// and reconnects, with a backoff when the connection made no progress.
func (c *Client) loop(ep int, st stream) {
	defer close(c.loopDone)
	n := len(c.cfg.endpoints)
	attempt := 0
	readBuf := make([]byte, 64<<10)
	for {
		if st == nil {
			if attempt > 0 && !c.sleep(c.cfg.Backoff.delay(attempt)) {
				return
			}
			e := c.cfg.endpoints[ep]
			var err error
			st, err = dialEndpoint(c.closeCtx, e, c.cfg.tls, c.cfg.DialTimeout)
			c.mu.Lock()
			c.stats.Dials++
			if err != nil {
				c.stats.DialErrors++
				c.lastErr = err
			}
			c.mu.Unlock()
			if err != nil {
				if c.closeCtx.Err() != nil {
					return
				}
				attempt++
				ep = (ep + 1) % n
				continue
			}
		}
		cn := c.start(c.cfg.endpoints[ep], st, readBuf)
		st = nil
		c.write(cn)
		cn.close()
		<-cn.done
		reason, progressed := c.finish(cn)
		switch {
		case reason == endClosing || c.closeCtx.Err() != nil:
			return
		case progressed:
			attempt = 0
		default:
			attempt++
		}
		switch reason {
		case endStorage:
			attempt = max(attempt, 1)
			ep = (ep + 1) % n
		case endFatal, endOverloaded:
			// A new connection to the same endpoint; after NACK 3 the
			// writer waits out pauseUntil before sending DATA.
		default:
			ep = (ep + 1) % n
		}
	}
}

// sleep waits d unless the client closes first; it reports whether to go on.
func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.closeCtx.Done():
		return false
	}
}

// start installs a new connection and starts its reader. The writer says
// HELLO first; records are queued for it when WELCOME arrives
// (welcomeLocked), which must be within DialTimeout.
func (c *Client) start(e endpoint, st stream, readBuf []byte) *conn {
	cn := &conn{ep: e, s: st, done: make(chan struct{}), goaway: math.MaxUint64}
	c.mu.Lock()
	c.cur = cn
	c.sendq = c.sendq[:0]
	cn.timer = time.AfterFunc(c.cfg.DialTimeout, func() {
		c.mu.Lock()
		late := !cn.welcomed
		if late && !cn.leaving {
			cn.leaving, cn.reason = true, endLost
			cn.err = fmt.Errorf("client: no WELCOME from %s within %v", e, c.cfg.DialTimeout)
		}
		c.mu.Unlock()
		if late {
			cn.close()
		}
	})
	closed := c.closed
	c.mu.Unlock()
	if closed {
		cn.reason = endClosing
		cn.close()
		close(cn.done)
		return cn
	}
	go c.read(cn, readBuf)
	return cn
}

// finish takes down a connection whose reader has returned: the records
// that were in flight on it will be sent again, counted as Resent (maybe
// stored) or, above a GOAWAY's seq, as Retried (not accepted).
func (c *Client) finish(cn *conn) (endReason, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range cn.flights {
		r := &c.ring[f.id&c.mask]
		if r.state == recPending && r.id == f.id && r.seq == f.seq {
			// It keeps its seq: the next WELCOME says whether it was
			// stored, and if not it is resent under the same seq.
			if f.seq > cn.goaway {
				c.stats.Retried++
			} else {
				c.stats.Resent++
			}
		}
	}
	if cn.timer != nil {
		cn.timer.Stop()
	}
	if cn.err != nil {
		c.lastErr = cn.err
	}
	c.cur = nil
	if c.closed {
		return endClosing, cn.acked
	}
	return cn.reason, cn.acked
}

// write sends queued records on cn until cn ends or the client closes.
func (c *Client) write(cn *conn) {
	var buf []byte
	var pause *time.Timer
	defer func() {
		if pause != nil {
			pause.Stop()
		}
	}()
	hello := true
	for {
		c.mu.Lock()
		if hello {
			// First of all: open or resume the session.
			hello = false
			buf, _ = ingest.AppendHello(buf, c.session, c.cfg.Name) // checked by resolve
		}
		var wait time.Duration
		now := time.Now()
		for cn.welcomed && !cn.leaving && !c.closed && len(c.sendq) > 0 && len(buf) < writeBatch && cn.live < c.cwnd {
			if d := c.pauseUntil.Sub(now); d > 0 {
				wait = d
				break
			}
			id := c.sendq[0]
			c.sendq = c.sendq[1:]
			r := &c.ring[id&c.mask]
			if r.state != recPending || r.id != id || r.seq != 0 && r.seq <= cn.highest {
				continue // answered, or already sent on this connection
			}
			if r.seq == 0 {
				r.seq = c.nextSeq
				c.nextSeq++
			}
			seq := r.seq
			cn.highest = seq
			cn.flights = append(cn.flights, flight{seq, id})
			cn.live++
			c.stats.Sent++
			buf, _ = ingest.AppendData(buf, seq, r.payload) // len <= MaxPayload <= MaxFramePayload
		}
		c.mu.Unlock()
		if len(buf) > 0 {
			_, err := cn.s.Write(buf)
			if cap(buf) > 4*writeBatch {
				buf = nil
			} else {
				buf = buf[:0]
			}
			if err != nil {
				// Keep reading the replies already due; close if they
				// take too long.
				c.leave(cn, endLost, err)
				<-cn.done
				return
			}
			continue
		}
		var pauseC <-chan time.Time
		if wait > 0 {
			if pause == nil {
				pause = time.NewTimer(wait)
			} else {
				pause.Reset(wait)
			}
			pauseC = pause.C
		}
		select {
		case <-c.wake:
		case <-pauseC:
		case <-cn.done:
			return
		case <-c.closeCtx.Done():
			return
		}
	}
}

// leave stops sending on cn; it is closed once nothing is in flight on it
// any more, or after DialTimeout.
func (c *Client) leave(cn *conn, reason endReason, err error) {
	c.mu.Lock()
	c.leaveLocked(cn, reason, err)
	c.mu.Unlock()
}

func (c *Client) leaveLocked(cn *conn, reason endReason, err error) {
	if !cn.leaving {
		cn.leaving = true
		cn.reason = reason
		cn.err = err
		cn.timer = time.AfterFunc(c.cfg.DialTimeout, cn.close)
	}
	if cn.live == 0 {
		cn.close()
	}
}

// read decodes the replies on cn until it ends.
func (c *Client) read(cn *conn, buf []byte) {
	defer close(cn.done)
	dec := ingest.NewReplyDecoder()
	have := 0
	var res []result
	for {
		n, rerr := cn.s.Read(buf[have:])
		have += n
		used := 0
		c.mu.Lock()
		var perr error
		for perr == nil {
			f, k, err := dec.Decode(buf[used:have])
			if err == ingest.ErrNeedMore {
				break
			}
			if err != nil {
				perr = fmt.Errorf("client: bad reply from %s: %w", cn.ep, err)
				break
			}
			used += k
			res, perr = c.handleLocked(cn, f, res)
		}
		if perr != nil {
			cn.leaving, cn.reason, cn.err = true, endFatal, perr
		} else if rerr != nil && !cn.leaving {
			cn.leaving, cn.reason, cn.err = true, endLost, fmt.Errorf("client: connection to %s: %w", cn.ep, rerr)
		}
		c.mu.Unlock()
		c.report(res)
		res = res[:0]
		if perr != nil || rerr != nil {
			cn.close()
			return
		}
		have = copy(buf, buf[used:have])
	}
}

// welcomeLocked takes WELCOME: the session's id (kept for the next
// connections), and its seq, up to which the server has stored the
// session's records. Pending records at or below it are acknowledged; the
// others are queued, those with a seq first in seq order (sent again
// under it), then the ones never sent, in id order.
func (c *Client) welcomeLocked(cn *conn, f ingest.Frame, res []result) ([]result, error) {
	id := f.Welcome()
	if id.IsZero() || !c.session.IsZero() && id != c.session {
		return res, fmt.Errorf("client: WELCOME from %s names session %v, want %v", cn.ep, id, c.session)
	}
	if f.Seq >= c.nextSeq && !c.session.IsZero() && c.nextSeq > 1 {
		return res, fmt.Errorf("client: WELCOME from %s says seq %d is stored, but the highest sent is %d", cn.ep, f.Seq, c.nextSeq-1)
	}
	if !c.session.IsZero() && c.nextSeq == 1 {
		// Resuming a session this client has not numbered (Config.Session,
		// after the producer restarted): the server's seq may lag what it
		// stored (a cluster's session store, after a node died), and
		// records under those seqs would be taken for duplicates. Start
		// well past any seq the session can have used.
		c.nextSeq = f.Seq + 1 + resumeGap
	}
	c.session = id
	cn.welcomed = true
	cn.ackSeq = f.Seq
	c.nextSeq = max(c.nextSeq, f.Seq+1) // a resumed session's seqs go on after it
	if cn.timer != nil {
		cn.timer.Stop()
		cn.timer = nil
	}
	c.sendq = c.sendq[:0]
	var unsent []uint64
	for i := c.floor; i < c.nextID; i++ {
		r := &c.ring[i&c.mask]
		switch {
		case r.state != recPending:
		case r.seq == 0:
			unsent = append(unsent, i)
		case r.seq <= f.Seq:
			c.stats.Resumed++
			res = c.resolveLocked(r, nil, res)
		default:
			c.sendq = append(c.sendq, i)
		}
	}
	sort.Slice(c.sendq, func(a, b int) bool {
		return c.ring[c.sendq[a]&c.mask].seq < c.ring[c.sendq[b]&c.mask].seq
	})
	c.sendq = append(c.sendq, unsent...)
	c.signal()
	return res, nil
}

// handleLocked applies one reply frame.
func (c *Client) handleLocked(cn *conn, f ingest.Frame, res []result) ([]result, error) {
	if !cn.welcomed && f.Kind != ingest.KindWelcome && f.Kind != ingest.KindNack && f.Kind != ingest.KindGoaway {
		return res, fmt.Errorf("client: %v before WELCOME from %s", f.Kind, cn.ep)
	}
	switch f.Kind {
	case ingest.KindWelcome:
		if cn.welcomed {
			return res, fmt.Errorf("client: second WELCOME from %s", cn.ep)
		}
		return c.welcomeLocked(cn, f, res)
	case ingest.KindAck:
		if f.Seq < cn.ackSeq || f.Seq > cn.highest {
			return res, fmt.Errorf("client: bad ACK %d from %s (previous %d, highest sent %d)", f.Seq, cn.ep, cn.ackSeq, cn.highest)
		}
		cn.ackSeq = f.Seq
		i := 0
		for ; i < len(cn.flights) && cn.flights[i].seq <= f.Seq; i++ {
			fl := cn.flights[i]
			r := &c.ring[fl.id&c.mask]
			if r.state == recPending && r.id == fl.id && r.seq == fl.seq {
				cn.live--
				res = c.resolveLocked(r, nil, res)
			}
		}
		cn.flights = cn.flights[:copy(cn.flights, cn.flights[i:])]
		if i > 0 {
			cn.acked = true
			c.nack3 = 0
			c.cwnd = min(c.cwnd+1, c.cfg.Window)
			c.signal()
		}
	case ingest.KindNack:
		code := f.NackCode()
		c.stats.Nacks[min(int(code), len(c.stats.Nacks)-1)]++
		if code == ingest.NackUnknownSession {
			// Expired, or a node that does not share the session: open a
			// new one on the next connection.
			c.stats.SessionsLost++
			c.session = ingest.SessionID{}
			c.leaveLocked(cn, endFatal, &ingest.ProtocolError{Code: code, Seq: f.Seq, Reason: string(f.NackReason())})
			return res, nil
		}
		if !cn.welcomed {
			// The HELLO itself was refused: NACK 6 when the node cannot
			// reach its session store, 3 or 4 when it is busy or draining.
			reason := endFatal
			switch code {
			case ingest.NackStorageUnavailable:
				reason = endStorage
			case ingest.NackShuttingDown:
				reason = endGoaway
			case ingest.NackOverloaded:
				reason = endOverloaded
			}
			c.leaveLocked(cn, reason, &ingest.ProtocolError{Code: code, Seq: f.Seq, Reason: string(f.NackReason())})
			return res, nil
		}
		i := sort.Search(len(cn.flights), func(i int) bool { return cn.flights[i].seq >= f.Seq })
		if i == len(cn.flights) || cn.flights[i].seq != f.Seq {
			return res, fmt.Errorf("client: NACK %d for seq %d from %s, which is not in flight", code, f.Seq, cn.ep)
		}
		fl := cn.flights[i]
		r := &c.ring[fl.id&c.mask]
		if r.state != recPending || r.id != fl.id || r.seq != fl.seq {
			return res, fmt.Errorf("client: second answer (NACK %d) for seq %d from %s", code, f.Seq, cn.ep)
		}
		cn.live--
		cn.flights = append(cn.flights[:i], cn.flights[i+1:]...) // no ACK may cover it
		// The server accepts nothing after a NACKed record on a session's
		// connection and ends it; this record (same seq) and the rest are
		// sent again after the next WELCOME.
		switch code {
		case ingest.NackOverloaded:
			c.stats.Retried++
			// One backoff step per episode: the NACKs of the frames sent
			// before the pause began arrive during it and do not extend it.
			if now := time.Now(); !now.Before(c.pauseUntil) {
				c.nack3++
				c.cwnd = max(min(c.cwnd, cn.live+1)/2, 1)
				c.pauseUntil = now.Add(c.cfg.Backoff.delay(c.nack3))
			}
			c.leaveLocked(cn, endOverloaded, &ingest.ProtocolError{Code: code, Seq: f.Seq, Reason: string(f.NackReason())})
		case ingest.NackShuttingDown, ingest.NackStorageUnavailable:
			c.stats.Retried++
			reason := endGoaway
			if code == ingest.NackStorageUnavailable {
				reason = endStorage
			}
			c.leaveLocked(cn, reason, &ingest.ProtocolError{Code: code, Seq: f.Seq, Reason: string(f.NackReason())})
		default: // 1, 2: the record fails; the server closes the connection
			perr := &ingest.ProtocolError{Code: code, Seq: f.Seq, Reason: string(f.NackReason())}
			res = c.resolveLocked(r, perr, res)
			c.leaveLocked(cn, endFatal, perr)
		}
	case ingest.KindGoaway:
		c.stats.Goaways++
		cn.goaway = min(cn.goaway, f.Seq)
		c.leaveLocked(cn, endGoaway, nil)
	case ingest.KindPong:
		// This client sends no PING.
	}
	if cn.leaving && cn.live == 0 {
		cn.close() // nothing more to hear on it
	}
	return res, nil
}
