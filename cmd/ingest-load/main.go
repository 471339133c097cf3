// Command ingest-load is the load client of the gyre ingest node: it opens
// --conns connections, pipelines DATA frames of the ingest-v1 protocol
// (docs/protocol.md) on each, and checks that every frame gets an ACK or a
// NACK, measuring throughput and ack latency.
//
//	ingest-load --addr 127.0.0.1:7400 --conns 64 --duration 10s --size 128 --window 256
//	ingest-load --messages 100000 --window 1 --json
//	ingest-load --transport quic --pin-sha256 HEX --conns 16 --streams 4 --quic-streams reuse
//	ingest-load --transport quic --insecure --quic-streams per-message --streams 8 --0rtt --kill 0.25
//
// Over QUIC (docs/quic.md) a load stream is a QUIC stream: --streams of
// them per connection with --quic-streams reuse, or, with per-message, one
// per connection whose DATA frames each travel on a stream of their own.
//
// Each connection has a writer goroutine (DATA frames with seqs 1, 2, 3, ...
// encoded into a reused buffer, at most --window unanswered) and a reader
// goroutine (replies decoded from a reused buffer). Ack latency is the time
// from writing a DATA frame to reading the cumulative ACK that covers it,
// kept in one HdrHistogram per connection (no locks on the hot path) and
// merged at the end.
//
// Exit status: 0 when every message was answered and nothing failed; 1 when
// there were errors (connection failures, protocol violations, NACK 1 or 2)
// or unanswered messages, with the reasons on stderr; 2 for bad flags.
// NACK 3 (overloaded) and 4 (shutting down) are reported but are not
// errors. Slow clients (--slow-clients) are expected to be disconnected
// and are reported apart.
//
// Flag names are relied on by scripts, as are the --json field names.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gyre-io/gyre/ingest"
)

func main() {
	// The first SIGINT/SIGTERM ends the send phase (the drain and the
	// report follow); a second one kills the process as usual.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exit codes
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// run is the whole command; ctx ending (SIGINT) stops the send phase early
// and the run is reported as usual.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr, isTerminal(stderr))
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "ingest-load: %v\n", err)
		return exitUsage
	}
	tr, err := newTransport(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "ingest-load: %v\n", err)
		return exitUsage
	}
	if cfg.CPUProfile != "" {
		stopProfile, err := startCPUProfile(cfg.CPUProfile)
		if err != nil {
			fmt.Fprintf(stderr, "ingest-load: %v\n", err)
			return exitUsage
		}
		defer stopProfile()
	}
	res := runLoad(ctx, cfg, tr, stderr)
	if cfg.JSON {
		if err := writeJSON(stdout, res); err != nil {
			fmt.Fprintf(stderr, "ingest-load: writing results: %v\n", err)
			return exitFail
		}
	} else {
		writeText(stdout, res)
	}
	if !res.OK {
		fmt.Fprintf(stderr, "ingest-load: FAILED: %s\n", res.failure())
		for _, s := range res.ErrorSamples {
			fmt.Fprintf(stderr, "ingest-load:   %s\n", s)
		}
		return exitFail
	}
	return exitOK
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// runner is what the connections of one run share. Every field is fixed
// before the connections start, except the channels and counters.
type runner struct {
	cfg       config
	sched     schedule
	start     time.Time
	warmup    int64  // ns since start when measuring begins
	slowAfter int64  // ns since start when slow clients stop reading
	payload   []byte // random bytes, SizeMax long, shared read-only
	batchCap  int    // writer buffer capacity
	maxBatch  uint64 // frames per Write at most

	stopSend chan struct{} // closed when the send phase ends
	sending  atomic.Int64  // normal connections still in their send phase
	allSent  chan struct{} // closed when sending reaches 0

	// draining counts the normal connections that have not yet finished
	// their drain; allDrained is closed when it reaches 0. release is
	// closed when they may close: at once, or after --hold.
	draining   atomic.Int64
	allDrained chan struct{}
	release    chan struct{}
}

func (r *runner) since() int64 { return int64(time.Since(r.start)) }

// sendDone is called once by each normal connection's writer when it stops
// sending.
func (r *runner) sendDone() {
	if r.sending.Add(-1) == 0 {
		close(r.allSent)
	}
}

// drained is called once by each normal connection's writer when its
// drain is over; a healthy connection then waits for release (--hold).
func (r *runner) drained() {
	if r.draining.Add(-1) == 0 {
		close(r.allDrained)
	}
}

func newRunner(cfg config) *runner {
	frameMax := ingest.HeaderSize + cfg.SizeMax
	batchCap := max(batchBytes, frameMax)
	r := &runner{
		cfg:        cfg,
		sched:      newSchedule(cfg),
		warmup:     int64(cfg.Warmup),
		slowAfter:  int64(cfg.SlowAfter),
		payload:    make([]byte, cfg.SizeMax),
		batchCap:   batchCap,
		maxBatch:   uint64(max(batchCap/frameMax, 1)),
		stopSend:   make(chan struct{}),
		allSent:    make(chan struct{}),
		allDrained: make(chan struct{}),
		release:    make(chan struct{}),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range r.payload {
		r.payload[i] = byte(rng.Uint32())
	}
	return r
}

// runLoad dials, runs the load and collects the results.
func runLoad(ctx context.Context, cfg config, tr Transport, stderr io.Writer) *result {
	r := newRunner(cfg)
	res := newResult(cfg, tr.Name())
	nSlow := cfg.slowConns()
	nConns := cfg.loadStreams()
	if c, ok := tr.(io.Closer); ok {
		defer c.Close()
	}

	// --server-pid: the server's CPU time before dialing, when every
	// connection is up, when measuring starts and when every answer is in.
	var srvCPU serverCPU
	if cfg.ServerPID > 0 {
		srvCPU.pid = cfg.ServerPID
		srvCPU.sample(&srvCPU.dialStart)
	}

	// Dial everything first, so the clock starts with every connection up.
	// The last nSlow connections are the slow clients.
	conns := make([]*conn, nConns)
	dialErrs := make([]error, nConns)
	var wg sync.WaitGroup
	sem := make(chan struct{}, cfg.DialParallel)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rw, err := tr.Dial(ctx)
			if err != nil {
				dialErrs[i] = fmt.Errorf("conn %d: connect to %s: %w", i, cfg.Addr, err)
				return
			}
			if cfg.Session {
				if err := openSession(rw); err != nil {
					_ = rw.Close()
					dialErrs[i] = fmt.Errorf("conn %d: %w", i, err)
					return
				}
			}
			c := newConn(r, i, i >= nConns-nSlow)
			c.rw = rw
			if s, ok := rw.(readBufferSetter); ok && c.slow {
				_ = s.SetReadBuffer(slowReadBuffer)
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	for _, err := range dialErrs {
		if err != nil {
			res.addError(err)
		}
	}
	var live []*conn
	normal := 0 // live normal connections
	for _, c := range conns {
		if c != nil {
			live = append(live, c)
			if !c.slow {
				r.sending.Add(1)
				r.draining.Add(1)
				normal++
			}
		}
	}
	if r.sending.Load() == 0 {
		close(r.allSent)
		close(r.allDrained)
	}

	srvCPU.sample(&srvCPU.start)
	r.start = time.Now()
	if cfg.Warmup > 0 {
		srvCPU.measure.Add(1)
		warm := time.AfterFunc(cfg.Warmup, func() {
			defer srvCPU.measure.Done()
			srvCPU.sample(&srvCPU.measureStart)
		})
		defer warm.Stop()
	} else {
		srvCPU.measureStart = srvCPU.start
	}
	finished := make(chan struct{})
	var sendEnd atomic.Int64
	var coord sync.WaitGroup
	coord.Add(1)
	go func() {
		defer coord.Done()
		var deadline <-chan time.Time
		if cfg.Duration > 0 {
			t := time.NewTimer(cfg.Warmup + cfg.Duration)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-ctx.Done():
		case <-deadline:
		case <-r.allSent:
		}
		sendEnd.Store(r.since())
		close(r.stopSend)
		// Hard stop: whatever is still open after the drain (a writer stuck
		// in Write, a reader that cannot be woken) is closed.
		hard := time.NewTimer(cfg.DrainTimeout + time.Second)
		defer hard.Stop()
		// Every normal connection reaches its drain's end before it
		// finishes, so allDrained comes before finished.
		select {
		case <-hard.C:
		case <-r.allDrained:
			srvCPU.sample(&srvCPU.end)
			hold(ctx, cfg, normal, r.release, stderr)
			hard.Reset(cfg.DrainTimeout + time.Second)
			select {
			case <-finished:
				return
			case <-hard.C:
			}
		}
		select {
		case <-r.release:
		default:
			close(r.release)
		}
		for _, c := range live {
			c.end(nil)
		}
	}()
	if k, ok := tr.(killer); ok && cfg.Kill > 0 {
		coord.Add(1)
		go func() {
			defer coord.Done()
			t := time.NewTimer(cfg.KillAfter)
			defer t.Stop()
			select {
			case <-t.C:
				res.KilledAtSeconds = math.Round(nsToSeconds(r.since())*1000) / 1000
				res.KilledConns = k.kill(cfg.Kill)
			case <-finished:
			}
		}()
	}
	var pb *progress
	if cfg.Progress {
		pb = startProgress(r, live, stderr)
	}
	for _, c := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run()
		}()
	}
	wg.Wait()
	close(finished)
	coord.Wait()
	if pb != nil {
		pb.finish()
	}
	res.collect(r, live, sendEnd.Load())
	srvCPU.report(res)
	if q, ok := tr.(*quicTransport); ok && cfg.ZeroRTT {
		res.ZeroRTTConns = q.zeroRTT()
	}
	return res
}

// hold runs once every normal connection has drained: it keeps the n
// healthy ones open for --hold (or until ctx ends), then closes release so
// they close.
func hold(ctx context.Context, cfg config, n int, release chan struct{}, stderr io.Writer) {
	if cfg.Hold > 0 {
		fmt.Fprintf(stderr, "ingest-load: holding %d connections for %v\n", n, cfg.Hold)
		t := time.NewTimer(cfg.Hold)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	close(release)
}

// nsToSeconds converts ns since the start to seconds.
func nsToSeconds(ns int64) float64 { return math.Max(float64(ns)/1e9, 0) }

// startCPUProfile profiles this process into path until the returned
// function runs.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}
