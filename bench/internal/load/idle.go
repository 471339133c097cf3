package load

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// IdleConfig is one idle-connection holder: it opens Conns connections to
// an echo server, checks each with one small round trip, reports "ready",
// holds them until told to verify (a line on its control input, or EOF) or
// until MaxHold, checks each again and closes them.
type IdleConfig struct {
	Addr           string
	Conns          int
	SrcIPs         []string
	ConnectTimeout time.Duration
	MaxHold        time.Duration
}

// IdleReady is the first JSON line the holder prints.
type IdleReady struct {
	Ready        bool     `json:"ready"`
	Conns        int      `json:"conns"` // open and answered
	OpenSeconds  float64  `json:"open_seconds"`
	FileLimit    uint64   `json:"file_limit"`
	Errors       int      `json:"errors"`
	ErrorSamples []string `json:"error_samples"`
}

// IdleResult is the second (last) JSON line.
type IdleResult struct {
	Conns        int      `json:"conns"`
	Verified     int      `json:"verified"` // still answered after the hold
	HeldSeconds  float64  `json:"held_seconds"`
	Errors       int      `json:"errors"`
	ErrorSamples []string `json:"error_samples"`
	OK           bool     `json:"ok"`
}

var idleProbe = []byte("gyre-bench-idle!")

func probe(c net.Conn, buf []byte) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(idleProbe); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, buf[:len(idleProbe)]); err != nil {
		return err
	}
	if string(buf[:len(idleProbe)]) != string(idleProbe) {
		return errors.New("wrong echo")
	}
	return c.SetDeadline(time.Time{})
}

// RunIdle runs a holder; control gives the "verify" signal (any line, or
// EOF), out receives the two JSON lines.
func RunIdle(ctx context.Context, cfg IdleConfig, control io.Reader, out io.Writer) (*IdleResult, error) {
	if cfg.Conns < 1 {
		return nil, errors.New("idle: conns must be >= 1")
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.MaxHold <= 0 {
		cfg.MaxHold = 5 * time.Minute
	}
	limit, err := RaiseFileLimit()
	if err != nil {
		return nil, fmt.Errorf("idle: raising RLIMIT_NOFILE: %w", err)
	}
	if uint64(cfg.Conns)+16 > limit {
		return nil, fmt.Errorf("idle: %d connections do not fit RLIMIT_NOFILE %d; use more holders", cfg.Conns, limit)
	}
	d, err := NewDialer(cfg.SrcIPs, cfg.ConnectTimeout)
	if err != nil {
		return nil, err
	}
	errs := newErrorList()
	conns := make([]net.Conn, cfg.Conns)
	start := time.Now()
	parallel(cfg.Conns, 128, func(i int) {
		c, err := d.Dial(ctx, cfg.Addr)
		if err != nil {
			errs.add("conn %d: connect: %v", i, err)
			return
		}
		if err := probe(c, make([]byte, 32)); err != nil {
			errs.add("conn %d: first round trip: %v", i, err)
			c.Close()
			return
		}
		conns[i] = c
	})
	ready := IdleReady{Ready: true, OpenSeconds: time.Since(start).Seconds(), FileLimit: limit}
	for _, c := range conns {
		if c != nil {
			ready.Conns++
		}
	}
	ready.Errors, ready.ErrorSamples = errs.list()
	enc := json.NewEncoder(out)
	if err := enc.Encode(ready); err != nil {
		return nil, err
	}
	held := time.Now()

	got := make(chan struct{})
	go func() {
		_, _ = bufio.NewReader(control).ReadString('\n')
		close(got)
	}()
	t := time.NewTimer(cfg.MaxHold)
	defer t.Stop()
	select {
	case <-got:
	case <-t.C:
	case <-ctx.Done():
	}
	res := &IdleResult{Conns: ready.Conns, HeldSeconds: time.Since(held).Seconds()}
	var mu sync.Mutex
	parallel(cfg.Conns, 128, func(i int) {
		c := conns[i]
		if c == nil {
			return
		}
		defer c.Close()
		if err := probe(c, make([]byte, 32)); err != nil {
			errs.add("conn %d: round trip after the hold: %v", i, err)
			return
		}
		mu.Lock()
		res.Verified++
		mu.Unlock()
	})
	res.Errors, res.ErrorSamples = errs.list()
	res.OK = res.Errors == 0 && res.Verified == cfg.Conns
	return res, enc.Encode(res)
}

// parallel runs f(0..n-1) with at most p at once.
func parallel(n, p int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, p)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(i)
		}()
	}
	wg.Wait()
}
