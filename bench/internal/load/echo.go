package load

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// EchoConfig is one run of the echo client.
type EchoConfig struct {
	Addr   string
	Conns  int
	Size   int // bytes per message, >= MinEchoSize
	Window int // unanswered messages per connection
	// Duration of the send phase; the run then waits for the outstanding
	// echoes (at most DrainTimeout).
	Duration time.Duration
	// Rate is the planned messages/s over the normal connections; 0 sends
	// as fast as the window allows (closed loop).
	Rate float64
	// BurstOn/BurstOff: with Rate, send only during ON (same average rate).
	BurstOn, BurstOff time.Duration
	// SlowFraction of the connections stop reading after SlowAfter and keep
	// sending at their share of the rate, ignoring the window: the server
	// must push back (or buffer). Their latency is not measured.
	SlowFraction   float64
	SlowAfter      time.Duration
	SrcIPs         []string
	ConnectTimeout time.Duration
	DrainTimeout   time.Duration
	// Sync, when set, brackets the measured phase: it is called with
	// PhaseStart once every connection is open, right before the first
	// message, and with PhaseEnd once the echoes are drained, before any
	// connection closes. The harness samples the server's CPU time there,
	// so connecting and closing stay outside the measured window. An
	// error aborts the run.
	Sync func(phase string) error
}

// MinEchoSize fits the 8-byte sequence number at both ends of a message.
const MinEchoSize = 16

// EchoResult is the JSON the echo subcommand prints.
type EchoResult struct {
	Addr       string  `json:"addr"`
	Conns      int     `json:"conns"`
	Size       int     `json:"size"`
	Window     int     `json:"window"`
	Rate       float64 `json:"rate"`
	Burst      string  `json:"burst"`
	SlowConns  int     `json:"slow_conns"`
	SendSecond float64 `json:"send_seconds"`
	// ElapsedSeconds runs from the start to the last echo (or the end of
	// sending, if later).
	ElapsedSeconds   float64 `json:"elapsed_seconds"`
	MessagesSent     uint64  `json:"messages_sent"`     // normal connections
	MessagesAnswered uint64  `json:"messages_answered"` // normal connections
	MessagesPerSec   float64 `json:"messages_per_sec"`
	MBPerSec         float64 `json:"mb_per_sec"` // echoed payload, 10^6 bytes/s, one way
	// LatencyUS: from the write of a message to the read of its last echoed
	// byte, normal connections only.
	LatencyUS Latency `json:"latency_us"`
	// LagUS: with Rate, how late writes were against the plan (client
	// timer granularity and scheduling; a large lag means the client could
	// not offer the load).
	LagUS            Latency  `json:"lag_us"`
	SlowMessagesSent uint64   `json:"slow_messages_sent"`
	SlowClosed       int      `json:"slow_closed"` // slow connections the server closed
	Errors           int      `json:"errors"`
	ErrorSamples     []string `json:"error_samples"`
	OK               bool     `json:"ok"`
}

func (c *EchoConfig) validate() error {
	switch {
	case c.Conns < 1:
		return errors.New("echo: conns must be >= 1")
	case c.Size < MinEchoSize || c.Size > 1<<20:
		return fmt.Errorf("echo: size must be %d..%d bytes", MinEchoSize, 1<<20)
	case c.Window < 1 || c.Window > 1<<16:
		return errors.New("echo: window must be 1..65536")
	case c.Duration <= 0:
		return errors.New("echo: duration must be > 0")
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return errors.New("echo: rate must be >= 0")
	case (c.BurstOn > 0) != (c.BurstOff > 0):
		return errors.New("echo: burst needs both ON and OFF")
	case c.BurstOn > 0 && c.Rate == 0:
		return errors.New("echo: burst needs a rate")
	case c.SlowFraction < 0 || c.SlowFraction >= 1:
		return errors.New("echo: slow fraction must be in [0, 1)")
	case c.SlowFraction > 0 && c.Rate == 0:
		return errors.New("echo: slow clients need a rate")
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 5 * time.Second
	}
	return nil
}

func (c *EchoConfig) slowConns() int {
	if c.SlowFraction == 0 {
		return 0
	}
	n := max(int(math.Round(c.SlowFraction*float64(c.Conns))), 1)
	return min(n, c.Conns-1)
}

// minPace is the shortest pause of a paced writer (the same choice as
// cmd/ingest-load): waking every writer once per message at high rates
// keeps the client's scheduler so busy that echoes are read late and the
// latency measured is the client's own; pausing at least 1 ms sends what
// fell due meanwhile in one write.
const minPace = time.Millisecond

// batchBytes is how much a writer puts in one Write at most.
const batchBytes = 64 << 10

type echoRun struct {
	cfg     EchoConfig
	start   time.Time
	sendEnd int64 // ns since start
	stop    chan struct{}
	errs    *errorList
	filler  []byte
}

func (r *echoRun) since() int64 { return int64(time.Since(r.start)) }

type echoConn struct {
	r     *echoRun
	id    int
	nc    *net.TCPConn
	slow  bool
	sched schedule

	sent     atomic.Uint64 // messages written (seq of the next one)
	done     atomic.Uint64 // messages fully echoed
	progress chan struct{} // capacity 1: the reader completed something
	closing  atomic.Bool   // the run closes the socket on purpose
	failed   atomic.Bool

	mask  uint64
	times []int64 // write time of each live seq, ns since start

	hist      *hdrhistogram.Histogram // reader-owned
	lag       *hdrhistogram.Histogram // writer-owned
	lastRead  int64                   // reader-owned, ns since start
	slowClose atomic.Bool             // the server closed a slow connection
}

// RunEcho dials every connection, runs the load and reports. It returns
// an error only for a bad configuration; failures during the run are in
// the result (OK false).
func RunEcho(ctx context.Context, cfg EchoConfig) (*EchoResult, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if _, err := RaiseFileLimit(); err != nil {
		return nil, fmt.Errorf("echo: raising RLIMIT_NOFILE: %w", err)
	}
	d, err := NewDialer(cfg.SrcIPs, cfg.ConnectTimeout)
	if err != nil {
		return nil, err
	}
	r := &echoRun{cfg: cfg, stop: make(chan struct{}), errs: newErrorList(), filler: make([]byte, cfg.Size)}
	for i := range r.filler {
		r.filler[i] = byte('a' + i%26)
	}
	nSlow := cfg.slowConns()
	res := &EchoResult{Addr: cfg.Addr, Conns: cfg.Conns, Size: cfg.Size, Window: cfg.Window, Rate: cfg.Rate,
		SlowConns: nSlow, ErrorSamples: []string{}}
	if cfg.BurstOn > 0 {
		res.Burst = cfg.BurstOn.String() + "/" + cfg.BurstOff.String()
	}

	conns := make([]*echoConn, cfg.Conns)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 128)
	nNormal := cfg.Conns - nSlow
	ring := uint64(1) << bits.Len64(uint64(max(cfg.Window, 64))-1)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			nc, err := d.Dial(ctx, cfg.Addr)
			if err != nil {
				r.errs.add("conn %d: connect: %v", i, err)
				return
			}
			c := &echoConn{r: r, id: i, nc: nc, slow: i >= nNormal, progress: make(chan struct{}, 1),
				mask: ring - 1, times: make([]int64, ring)}
			if c.slow {
				_ = nc.SetReadBuffer(4 << 10)
			} else {
				c.hist = newHist(cfg.Conns)
			}
			if cfg.Rate > 0 {
				// Rate/Conns each, slow clients included, as ingest-load does.
				per := cfg.Rate / float64(cfg.Conns)
				// Phases spread the connections evenly over one interval.
				c.sched = newSchedule(per, cfg.BurstOn, cfg.BurstOff, float64(i)/float64(cfg.Conns))
				if !c.slow {
					// A slow client blocks in write by design: its lateness
					// says nothing about whether the load was offered.
					c.lag = newHist(cfg.Conns)
				}
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	var live []*echoConn
	for _, c := range conns {
		if c != nil {
			live = append(live, c)
		}
	}
	if len(live) < cfg.Conns {
		for _, c := range live {
			c.nc.Close()
		}
		res.Errors, res.ErrorSamples = r.errs.list()
		return res, nil
	}

	if err := syncPhase(cfg.Sync, PhaseStart); err != nil {
		for _, c := range live {
			c.nc.Close()
		}
		return nil, err
	}
	r.start = time.Now()
	r.sendEnd = int64(cfg.Duration)
	timer := time.AfterFunc(cfg.Duration, func() { close(r.stop) })
	defer timer.Stop()
	var writers, readers sync.WaitGroup
	for _, c := range live {
		writers.Add(1)
		readers.Add(1)
		go func() { defer writers.Done(); c.write() }()
		go func() { defer readers.Done(); c.read() }()
	}
	writers.Wait()
	// Drain: wait for the echoes of everything the normal connections sent.
	drainEnd := time.Now().Add(cfg.DrainTimeout)
	for _, c := range live {
		if c.slow {
			continue
		}
		for !c.failed.Load() && c.done.Load() < c.sent.Load() && time.Now().Before(drainEnd) {
			time.Sleep(time.Millisecond)
		}
	}
	syncErr := syncPhase(cfg.Sync, PhaseEnd)
	for _, c := range live {
		c.closing.Store(true)
		c.nc.Close()
	}
	readers.Wait()

	hist, lag := newHist(1), newHist(1)
	var last int64
	for _, c := range live {
		if c.slow {
			res.SlowMessagesSent += c.sent.Load()
			if c.slowClose.Load() {
				res.SlowClosed++
			}
			continue
		}
		sent, done := c.sent.Load(), c.done.Load()
		res.MessagesSent += sent
		res.MessagesAnswered += done
		if done < sent && !c.failed.Load() {
			r.errs.add("conn %d: %d of %d messages not echoed within %v after sending stopped", c.id, sent-done, sent, cfg.DrainTimeout)
		}
		hist.Merge(c.hist)
		if c.lag != nil {
			lag.Merge(c.lag)
		}
		last = max(last, c.lastRead)
	}
	res.SendSecond = float64(r.sendEnd) / 1e9
	res.ElapsedSeconds = float64(max(last, r.sendEnd)) / 1e9
	if res.ElapsedSeconds > 0 {
		res.MessagesPerSec = float64(res.MessagesAnswered) / res.ElapsedSeconds
		res.MBPerSec = res.MessagesPerSec * float64(cfg.Size) / 1e6
	}
	res.LatencyUS = summarizeHist(hist)
	res.LagUS = summarizeHist(lag)
	res.Errors, res.ErrorSamples = r.errs.list()
	res.OK = res.Errors == 0 && res.MessagesAnswered > 0
	return res, syncErr
}

// fail records the first error of a connection (none once the run closes
// it on purpose) and closes it.
func (c *echoConn) fail(format string, args ...any) {
	if c.closing.Load() || !c.failed.CompareAndSwap(false, true) {
		return
	}
	c.r.errs.add("conn %d: "+format, append([]any{c.id}, args...)...)
	c.nc.Close()
}

func (c *echoConn) stopped() bool {
	select {
	case <-c.r.stop:
		return true
	default:
		return false
	}
}

// appendMsg encodes message seq: the seq in the first and last 8 bytes,
// filler in between.
func (r *echoRun) appendMsg(b []byte, seq uint64) []byte {
	n := len(b)
	b = append(b, r.filler...)
	binary.LittleEndian.PutUint64(b[n:], seq)
	binary.LittleEndian.PutUint64(b[n+r.cfg.Size-8:], seq)
	return b
}

func (c *echoConn) write() {
	r := c.r
	size := r.cfg.Size
	maxBatch := uint64(max(batchBytes/size, 1))
	buf := make([]byte, 0, int(maxBatch)*size)
	window := uint64(r.cfg.Window)
	if c.slow {
		// Slow clients ignore the window (they stop reading) and must not
		// block past the end of the send phase.
		window = math.MaxUint64
		_ = c.nc.SetWriteDeadline(r.start.Add(r.cfg.Duration + 100*time.Millisecond))
	}
	var seq uint64
	var timer *time.Timer // reused (Go >= 1.23: Reset needs no drain)
	for !c.stopped() && !c.failed.Load() {
		avail := window - min(window, seq-c.done.Load())
		if avail == 0 {
			select {
			case <-c.progress:
			case <-r.stop:
			}
			continue
		}
		k := min(avail, maxBatch)
		now := r.since()
		if r.cfg.Rate > 0 {
			// Open loop: send what is due, sleep until the next one.
			due := uint64(0)
			for due < k && c.sched.at(seq+due) <= now {
				due++
			}
			if due == 0 {
				next := c.sched.at(seq)
				if next >= r.sendEnd {
					break
				}
				wait := max(time.Duration(next-now), minPace)
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				select {
				case <-timer.C:
				case <-r.stop:
				}
				continue
			}
			if c.lag != nil {
				for i := uint64(0); i < due; i++ {
					recordUS(c.lag, now-c.sched.at(seq+i))
				}
			}
			k = due
		}
		buf = buf[:0]
		for i := uint64(0); i < k; i++ {
			if !c.slow {
				c.times[(seq+i)&c.mask] = now
			}
			buf = r.appendMsg(buf, seq+i)
		}
		seq += k
		c.sent.Store(seq)
		if _, err := c.nc.Write(buf); err != nil {
			if c.slow {
				// A timeout: blocked until the end, the server pushed back
				// as it should. Anything else: the server closed it.
				c.sent.Store(seq - k)
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					c.slowClose.Store(true)
				}
				return
			}
			c.sent.Store(seq - k) // not all of it reached the socket
			c.fail("write: %v", err)
			return
		}
	}
}

func (c *echoConn) read() {
	r := c.r
	size := r.cfg.Size
	buf := make([]byte, max(64<<10, 2*size))
	have := 0
	done := uint64(0)
	slowStop := r.start.Add(r.cfg.SlowAfter)
	for {
		if c.slow && time.Now().After(slowStop) {
			// Stop reading for the rest of the run: the server sees a
			// client whose receive window closes.
			<-r.stop
			return
		}
		if c.slow {
			_ = c.nc.SetReadDeadline(slowStop)
		}
		n, err := c.nc.Read(buf[have:])
		now := r.since()
		have += n
		off := 0
		for have-off >= size {
			if c.slow {
				off += size
				done++
				continue
			}
			msg := buf[off : off+size]
			h := binary.LittleEndian.Uint64(msg)
			t := binary.LittleEndian.Uint64(msg[size-8:])
			if h != done || t != done {
				c.fail("echo %d came back as %d/%d (reordered or corrupted)", done, h, t)
				return
			}
			if done >= c.sent.Load() {
				c.fail("echo of message %d that was never sent", done)
				return
			}
			recordUS(c.hist, now-c.times[done&c.mask])
			done++
			c.done.Store(done)
			c.lastRead = now
			off += size
		}
		if off > 0 {
			have = copy(buf, buf[off:have])
			if c.slow {
				c.done.Store(done)
			}
			select {
			case c.progress <- struct{}{}:
			default:
			}
		}
		if err != nil {
			if c.slow && errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if c.closing.Load() {
				return
			}
			if c.slow {
				c.slowClose.Store(true)
				<-r.stop
				return
			}
			c.fail("read after %d echoes: %v", done, err)
			return
		}
	}
}
