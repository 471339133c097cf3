package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// AcceptConfig is one accept storm: Workers loops, each connecting,
// sending one HTTP request, reading the fixed response and closing, for
// Duration.
type AcceptConfig struct {
	Addr           string
	Workers        int
	Duration       time.Duration
	SrcIPs         []string
	ConnectTimeout time.Duration
	// Sync: as EchoConfig.Sync, around the storm (PhaseStart before the
	// first connect, PhaseEnd after the last close).
	Sync func(phase string) error
}

// AcceptResult is the JSON the accept subcommand prints.
type AcceptResult struct {
	Addr           string  `json:"addr"`
	Workers        int     `json:"workers"`
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	Connections    int64   `json:"connections"` // complete connect-request-response-close cycles
	ConnsPerSec    float64 `json:"conns_per_sec"`
	// LatencyUS: one whole cycle, connect to close.
	LatencyUS    Latency  `json:"latency_us"`
	Errors       int      `json:"errors"`
	ErrorSamples []string `json:"error_samples"`
	OK           bool     `json:"ok"`
}

// The request the storm sends and the start of the answer it expects:
// the fixed response of gyre-echo and gnet-echo in -mode http.
var (
	acceptRequest  = []byte("GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
	responsePrefix = []byte("HTTP/1.1 200 OK\r\n")
	// ResponseLen is the length of the fixed response.
	ResponseLen = len("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!")
)

// RunAccept runs the storm. A failed cycle is an error in the result.
func RunAccept(ctx context.Context, cfg AcceptConfig) (*AcceptResult, error) {
	if cfg.Workers < 1 || cfg.Duration <= 0 {
		return nil, errors.New("accept: workers must be >= 1 and duration > 0")
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if _, err := RaiseFileLimit(); err != nil {
		return nil, fmt.Errorf("accept: raising RLIMIT_NOFILE: %w", err)
	}
	d, err := NewDialer(cfg.SrcIPs, cfg.ConnectTimeout)
	if err != nil {
		return nil, err
	}
	errs := newErrorList()
	var total atomic.Int64
	if err := syncPhase(cfg.Sync, PhaseStart); err != nil {
		return nil, err
	}
	start := time.Now()
	end := start.Add(cfg.Duration)
	hists := make([]*hdrhistogram.Histogram, cfg.Workers)
	var wg sync.WaitGroup
	for w := range cfg.Workers {
		hists[w] = newHist(cfg.Workers)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 512)
			for time.Now().Before(end) && ctx.Err() == nil {
				t0 := time.Now()
				if err := cycle(ctx, d, cfg.Addr, buf, end.Add(cfg.ConnectTimeout)); err != nil {
					errs.add("worker %d: %v", w, err)
					if errs.n.Load() > 100 {
						return // the server is gone; stop hammering it
					}
					continue
				}
				recordUS(hists[w], int64(time.Since(t0)))
				total.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	syncErr := syncPhase(cfg.Sync, PhaseEnd)
	h := newHist(1)
	for _, wh := range hists {
		h.Merge(wh)
	}
	res := &AcceptResult{Addr: cfg.Addr, Workers: cfg.Workers, ElapsedSeconds: elapsed, Connections: total.Load(),
		LatencyUS: summarizeHist(h)}
	if elapsed > 0 {
		res.ConnsPerSec = float64(res.Connections) / elapsed
	}
	res.Errors, res.ErrorSamples = errs.list()
	res.OK = res.Errors == 0 && res.Connections > 0
	return res, syncErr
}

// cycle is one connection: connect, request, whole response, close.
func cycle(ctx context.Context, d *Dialer, addr string, buf []byte, deadline time.Time) error {
	c, err := d.Dial(ctx, addr)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	if _, err := c.Write(acceptRequest); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if _, err := io.ReadFull(c, buf[:ResponseLen]); err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if !bytes.HasPrefix(buf[:ResponseLen], responsePrefix) {
		return fmt.Errorf("unexpected response %q", buf[:min(ResponseLen, 40)])
	}
	return nil
}
