package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gyre-io/gyre/bench/internal/load"
	"github.com/gyre-io/gyre/bench/internal/procfs"
	"github.com/gyre-io/gyre/bench/internal/wrk"
)

// measureOnce is one run of one server: fresh server, warm-up, measured
// load, samples around it, stop. An error is fatal to the whole harness
// (server failure, load client errors); the returned run, if any, is
// recorded even then.
func (h *H) measureOnce(c *Cell, srv string, runN, attempt int) (*Run, error) {
	tag := fmt.Sprintf("%s-%s-%d.%d", c.ID, srv, runN, attempt)
	r := &Run{Cell: c.ID, Workload: c.Workload, Server: srv, Run: runN, Attempt: attempt,
		Started: time.Now().UTC().Format(time.RFC3339), Metrics: map[string]float64{}}
	r.Quiet = h.waitQuiet()
	r.ServerLog = filepath.Join(h.raw, tag+".server.log")
	s, err := h.startServer(srv, c.Workload, c.Params.Mode, r.ServerLog)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	r.ServerCmd = s.args
	r.GoMaxProcs = s.goMaxProcs()
	base := filepath.Join(h.raw, tag)
	switch c.Workload {
	case WHTTP:
		err = h.runHTTP(c, s, r, base)
	case WEcho:
		err = h.runEcho(c, s, r, base)
	case WAccept:
		err = h.runAccept(c, s, r, base)
	case WIdle:
		err = h.runIdle(c, s, r, base)
	case WLatency:
		err = h.runLatency(c, s, r, base)
	case WIngest, WIngestLatency:
		err = h.runIngest(c, s, r, base)
	default:
		err = fmt.Errorf("unknown workload %q", c.Workload)
	}
	if err != nil {
		return r, err
	}
	if !s.alive() {
		return r, fmt.Errorf("%s server died during the run; log %s:\n%s", srv, r.ServerLog, tail(r.ServerLog, 20))
	}
	return r, nil
}

// loadResult is one finished load process.
type loadResult struct {
	stdout []byte
	cpu    float64 // user+system seconds of the load process
}

// runLoad runs a load client pinned to the load CPU, bounded by timeout.
// A non-zero exit is an error that quotes the client's stderr.
func (h *H) runLoad(args []string, outBase string, timeout time.Duration) (loadResult, error) {
	full := append([]string{"taskset", "-c", strconv.Itoa(h.cfg.CPULoad)}, args...)
	ctx, cancel := context.WithTimeout(h.ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 2 * time.Second
	runErr := cmd.Run()
	_ = os.WriteFile(outBase+".out", out.Bytes(), 0o644)
	_ = os.WriteFile(outBase+".err", errb.Bytes(), 0o644)
	var lr loadResult
	lr.stdout = out.Bytes()
	if cmd.ProcessState != nil {
		lr.cpu = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	}
	if h.ctx.Err() != nil {
		return lr, fmt.Errorf("interrupted: %w", h.ctx.Err())
	}
	if ctx.Err() == context.DeadlineExceeded {
		return lr, fmt.Errorf("load client %s did not finish within %v (killed); output %s.out/.err", filepath.Base(args[0]), timeout, outBase)
	}
	if runErr != nil {
		return lr, fmt.Errorf("load client %s failed (%v): %s\n%s", filepath.Base(args[0]), runErr,
			strings.TrimSpace(lastLines(errb.String(), 8)), strings.TrimSpace(lastLines(out.String(), 4)))
	}
	return lr, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func secs(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }

// measured runs the measured load between two samples and fills the CPU
// figures; it returns the load result.
func (h *H) measured(s *server, r *Run, args []string, outBase string, timeout time.Duration) (loadResult, error) {
	r.LoadCmd = append([]string{"taskset", "-c", strconv.Itoa(h.cfg.CPULoad)}, args...)
	a, err := h.takeSample(s)
	if err != nil {
		return loadResult{}, err
	}
	lr, err := h.runLoad(args, outBase, timeout)
	if err != nil {
		if !s.alive() {
			return lr, fmt.Errorf("%w\nthe server died: %s", err, tail(s.log, 10))
		}
		return lr, err
	}
	b, err := h.takeSample(s)
	if err != nil {
		return lr, err
	}
	h.account(r, a, b, lr.cpu)
	if rss, err := procfs.RSS(s.pid); err == nil {
		r.ServerRSS = rss
	}
	if n, err := procfs.CountFDs(s.pid); err == nil {
		r.ServerFDs = n
	}
	r.Metrics["server_cpu"] = r.ServerCPUSeconds / r.WallSeconds
	r.Metrics["load_cpu"] = r.LoadCPUSeconds / r.WallSeconds
	r.Metrics["rss_mib"] = float64(r.ServerRSS) / (1 << 20)
	return lr, nil
}

func perCPU(n, cpu float64) float64 {
	if cpu <= 0 {
		return 0
	}
	return n / cpu
}

// ---------------------------------------------------------------- HTTP

func (h *H) wrkArgs(c *Cell, s *server, d time.Duration) []string {
	return []string{"wrk", "-t1", fmt.Sprintf("-c%d", c.Params.Conns), "-d" + secs(d) + "s", "--latency", "http://" + s.addr + "/"}
}

func parseWrk(lr loadResult) (wrk.Result, error) {
	w, err := wrk.Parse(string(lr.stdout))
	if err != nil {
		return w, err
	}
	return w, w.Check()
}

func (h *H) runHTTP(c *Cell, s *server, r *Run, base string) error {
	if h.cfg.Warmup > 0 {
		lr, err := h.runLoad(h.wrkArgs(c, s, h.cfg.Warmup), base+".warmup", h.cfg.Warmup+30*time.Second)
		if err != nil {
			return err
		}
		if _, err := parseWrk(lr); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	lr, err := h.measured(s, r, h.wrkArgs(c, s, h.cfg.Duration), base+".load", h.cfg.Duration+30*time.Second)
	if err != nil {
		return err
	}
	w, err := parseWrk(lr)
	if err != nil {
		return fmt.Errorf("%w (output %s.load.out)", err, base)
	}
	r.Client = w
	r.Metrics["rps"] = w.RequestsPerSec
	r.Metrics["rps_per_cpu"] = perCPU(float64(w.Requests), r.ServerCPUSeconds)
	r.Metrics["p50_ms"] = w.P50ms
	r.Metrics["p99_ms"] = w.P99ms
	return nil
}

// ---------------------------------------------------------------- echo

func (h *H) echoArgs(c *Cell, s *server, d time.Duration, rate float64, shape string) []string {
	a := []string{h.bin("gyre-bench"), "echo", "-addr", s.addr, "-conns", strconv.Itoa(c.Params.Conns),
		"-size", strconv.Itoa(c.Params.Size), "-window", strconv.Itoa(c.Params.Window), "-duration", d.String()}
	if rate > 0 {
		a = append(a, "-rate", strconv.FormatFloat(rate, 'f', 0, 64))
	}
	switch shape {
	case ShapeBursty:
		a = append(a, "-burst", burstOn.String()+"/"+burstOff.String())
	case ShapeSlow:
		a = append(a, "-slow-clients", strconv.FormatFloat(slowFraction, 'f', -1, 64), "-slow-after", slowAfter.String())
	}
	if len(h.cfg.SrcIPs) > 0 {
		a = append(a, "-src", strings.Join(h.cfg.SrcIPs, ","))
	}
	return a
}

func parseEcho(lr loadResult) (*load.EchoResult, error) {
	var e load.EchoResult
	if err := json.Unmarshal(lr.stdout, &e); err != nil {
		return nil, fmt.Errorf("echo client output: %w", err)
	}
	if !e.OK {
		return &e, fmt.Errorf("echo client saw %d errors: %s", e.Errors, strings.Join(e.ErrorSamples, "; "))
	}
	return &e, nil
}

func (h *H) runEcho(c *Cell, s *server, r *Run, base string) error {
	if h.cfg.Warmup > 0 {
		lr, err := h.runLoad(h.echoArgs(c, s, h.cfg.Warmup, 0, ""), base+".warmup", h.cfg.Warmup+30*time.Second)
		if err != nil {
			return err
		}
		if _, err := parseEcho(lr); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	lr, err := h.measured(s, r, h.echoArgs(c, s, h.cfg.Duration, 0, ""), base+".load", h.cfg.Duration+30*time.Second)
	if err != nil {
		return err
	}
	e, err := parseEcho(lr)
	if err != nil {
		return err
	}
	r.Client = e
	r.Metrics["mps"] = e.MessagesPerSec
	r.Metrics["mbps"] = e.MBPerSec
	r.Metrics["mps_per_cpu"] = perCPU(float64(e.MessagesAnswered), r.ServerCPUSeconds)
	r.Metrics["p50_us"] = e.LatencyUS.P50
	r.Metrics["p99_us"] = e.LatencyUS.P99
	return nil
}

func (h *H) runLatency(c *Cell, s *server, r *Run, base string) error {
	rate := c.Params.Rate
	if h.cfg.Warmup > 0 {
		lr, err := h.runLoad(h.echoArgs(c, s, h.cfg.Warmup, rate, ShapeSteady), base+".warmup", h.cfg.Warmup+30*time.Second)
		if err != nil {
			return err
		}
		if _, err := parseEcho(lr); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	lr, err := h.measured(s, r, h.echoArgs(c, s, h.cfg.Duration, rate, c.Params.Shape), base+".load", h.cfg.Duration+30*time.Second)
	if err != nil {
		return err
	}
	e, err := parseEcho(lr)
	if err != nil {
		return err
	}
	r.Client = e
	latencyMetrics(r, rate, e.MessagesPerSec, e.LatencyUS)
	r.Metrics["lag_p99_us"] = e.LagUS.P99
	return nil
}

func latencyMetrics(r *Run, rate, achieved float64, l load.Latency) {
	r.Metrics["rate"] = rate
	r.Metrics["achieved"] = achieved
	r.Metrics["p50_us"] = l.P50
	r.Metrics["p95_us"] = l.P95
	r.Metrics["p99_us"] = l.P99
	r.Metrics["p999_us"] = l.P999
	r.Metrics["server_cpu"] = r.ServerCPUSeconds / r.WallSeconds
}

// ---------------------------------------------------------------- accept

func (h *H) runAccept(c *Cell, s *server, r *Run, base string) error {
	args := func(d time.Duration) []string {
		a := []string{h.bin("gyre-bench"), "accept", "-addr", s.addr, "-workers", strconv.Itoa(c.Params.Workers), "-duration", d.String()}
		if len(h.cfg.SrcIPs) > 0 {
			a = append(a, "-src", strings.Join(h.cfg.SrcIPs, ","))
		}
		return a
	}
	parse := func(lr loadResult) (*load.AcceptResult, error) {
		var a load.AcceptResult
		if err := json.Unmarshal(lr.stdout, &a); err != nil {
			return nil, fmt.Errorf("accept client output: %w", err)
		}
		if !a.OK {
			return &a, fmt.Errorf("accept storm saw %d errors: %s", a.Errors, strings.Join(a.ErrorSamples, "; "))
		}
		return &a, nil
	}
	if h.cfg.Warmup > 0 {
		lr, err := h.runLoad(args(h.cfg.Warmup), base+".warmup", h.cfg.Warmup+30*time.Second)
		if err != nil {
			return err
		}
		if _, err := parse(lr); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	lr, err := h.measured(s, r, args(h.cfg.Duration), base+".load", h.cfg.Duration+30*time.Second)
	if err != nil {
		return err
	}
	a, err := parse(lr)
	if err != nil {
		return err
	}
	r.Client = a
	r.Metrics["cps"] = a.ConnsPerSec
	r.Metrics["cps_per_cpu"] = perCPU(float64(a.Connections), r.ServerCPUSeconds)
	r.Metrics["p50_us"] = a.LatencyUS.P50
	r.Metrics["p99_us"] = a.LatencyUS.P99
	return nil
}

// ---------------------------------------------------------------- ingest

func (h *H) ingestArgs(c *Cell, s *server, d time.Duration, shape string) []string {
	a := []string{h.bin("ingest-load"), "--addr", s.addr, "--conns", strconv.Itoa(c.Params.Conns),
		"--size", strconv.Itoa(c.Params.Size), "--window", strconv.Itoa(c.Params.Window),
		"--duration", d.String(), "--json", "--progress=false"}
	rate := c.Params.Rate
	switch shape {
	case ShapeBursty:
		// ingest-load's --rate is the rate while ON: twice the average.
		rate *= float64(burstOn+burstOff) / float64(burstOn)
		a = append(a, "--burst", burstOn.String()+"/"+burstOff.String())
	case ShapeSlow:
		a = append(a, "--slow-clients", strconv.FormatFloat(slowFraction, 'f', -1, 64), "--slow-after", slowAfter.String())
	}
	if rate > 0 {
		a = append(a, "--rate", strconv.FormatFloat(rate, 'f', 0, 64))
	}
	return a
}

// ingestResult is the part of ingest-load's --json output the harness uses.
type ingestResult struct {
	MessagesAcked     uint64       `json:"messages_acked"`
	MessagesPerSecond float64      `json:"messages_per_second"`
	MeasuredMessages  uint64       `json:"measured_messages"`
	LatencyUS         load.Latency `json:"latency_us"`
	Errors            int          `json:"errors"`
	ErrorSamples      []string     `json:"error_samples"`
	Unanswered        uint64       `json:"unanswered"`
	Nacks             map[string]uint64
	SlowDisconnected  int  `json:"slow_disconnected"`
	SlowStalled       int  `json:"slow_stalled"`
	OK                bool `json:"ok"`
}

func parseIngest(lr loadResult) (*ingestResult, json.RawMessage, error) {
	var in ingestResult
	if err := json.Unmarshal(lr.stdout, &in); err != nil {
		return nil, nil, fmt.Errorf("ingest-load output: %w", err)
	}
	if !in.OK {
		return &in, nil, fmt.Errorf("ingest-load: %d errors, %d unanswered: %s", in.Errors, in.Unanswered, strings.Join(in.ErrorSamples, "; "))
	}
	return &in, json.RawMessage(bytes.TrimSpace(lr.stdout)), nil
}

func (h *H) runIngest(c *Cell, s *server, r *Run, base string) error {
	shape := ""
	if c.Workload == WIngestLatency {
		shape = c.Params.Shape
	}
	if h.cfg.Warmup > 0 {
		lr, err := h.runLoad(h.ingestArgs(c, s, h.cfg.Warmup, ""), base+".warmup", h.cfg.Warmup+30*time.Second)
		if err != nil {
			return err
		}
		if _, _, err := parseIngest(lr); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	lr, err := h.measured(s, r, h.ingestArgs(c, s, h.cfg.Duration, shape), base+".load", h.cfg.Duration+30*time.Second)
	if err != nil {
		return err
	}
	in, raw, err := parseIngest(lr)
	if err != nil {
		return err
	}
	r.Client = raw
	if c.Workload == WIngestLatency {
		latencyMetrics(r, c.Params.Rate, in.MessagesPerSecond, in.LatencyUS)
		return nil
	}
	r.Metrics["mps"] = in.MessagesPerSecond
	r.Metrics["mps_per_cpu"] = perCPU(float64(in.MessagesAcked), r.ServerCPUSeconds)
	r.Metrics["p50_us"] = in.LatencyUS.P50
	r.Metrics["p99_us"] = in.LatencyUS.P99
	return nil
}

// ---------------------------------------------------------------- idle

// runIdle opens the idle connections from holder processes (each within
// its own RLIMIT_NOFILE, from its own source address), samples the
// server's RSS and descriptors once they settled, and checks that every
// connection still answers.
func (h *H) runIdle(c *Cell, s *server, r *Run, base string) error {
	// A few round trips first, so the runtime and buffers are set up
	// before the baseline RSS is taken.
	wc := &Cell{Params: Params{Conns: 16, Size: 64, Window: 4}}
	if _, err := h.runLoad(h.echoArgs(wc, s, time.Second, 0, ""), base+".warmup", 30*time.Second); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	baseRSS, err := procfs.RSS(s.pid)
	if err != nil {
		return err
	}
	baseFDs, err := procfs.CountFDs(s.pid)
	if err != nil {
		return err
	}
	limit, err := procfs.OpenFileLimit(s.pid)
	if err != nil {
		return err
	}
	want := c.Params.IdleConns
	if limit > 0 && int64(want+baseFDs+16) > limit {
		// The server cannot hold more descriptors than its limit (the hard
		// limit cannot be raised without privileges); hold what fits.
		want = int(limit) - baseFDs - 16
		h.logf("  %s: RLIMIT_NOFILE %d with %d descriptors in use: holding %d connections instead of %d",
			s.name, limit, baseFDs, want, c.Params.IdleConns)
	}
	per := h.cfg.IdlePerHolder
	var holders []*holder
	defer func() {
		for _, hd := range holders {
			hd.kill()
		}
	}()
	srcs := h.cfg.SrcIPs
	if len(srcs) == 0 {
		srcs = []string{"127.0.0.1"}
	}
	for i := 0; i*per < want; i++ {
		n := min(per, want-i*per)
		args := []string{h.bin("gyre-bench"), "idle", "-addr", s.addr, "-conns", strconv.Itoa(n), "-src", srcs[i%len(srcs)],
			"-max-hold", "5m"}
		hd, err := h.startHolder(args, fmt.Sprintf("%s.holder%d", base, i))
		if err != nil {
			return err
		}
		holders = append(holders, hd)
	}
	r.LoadCmd = holders[0].args
	t0 := time.Now()
	held := 0
	for _, hd := range holders {
		rd, err := hd.ready(2 * time.Minute)
		if err != nil {
			return err
		}
		if rd.Errors > 0 || !rd.Ready {
			return fmt.Errorf("idle holder: %d errors opening connections: %s", rd.Errors, strings.Join(rd.ErrorSamples, "; "))
		}
		held += rd.Conns
	}
	h.logf("  %s: %d connections open in %.1fs", s.name, held, time.Since(t0).Seconds())
	time.Sleep(h.cfg.IdleSettle)
	a, err := h.takeSample(s)
	if err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // the idle CPU window
	b, err := h.takeSample(s)
	if err != nil {
		return err
	}
	h.account(r, a, b, 0)
	r.Contended = false // nothing runs on purpose here: other work cannot skew RSS
	if r.ServerRSS, err = procfs.RSS(s.pid); err != nil {
		return err
	}
	if r.ServerFDs, err = procfs.CountFDs(s.pid); err != nil {
		return err
	}
	if r.ServerFDs < baseFDs+held {
		return fmt.Errorf("%s holds %d descriptors, expected at least %d (+%d connections): connections were not accepted",
			s.name, r.ServerFDs, baseFDs+held, held)
	}
	var results []load.IdleResult
	for _, hd := range holders {
		res, err := hd.finish(2 * time.Minute)
		if err != nil {
			return err
		}
		if !res.OK {
			return fmt.Errorf("idle holder: %d of %d connections failed the round trip after the hold: %s",
				res.Conns-res.Verified, res.Conns, strings.Join(res.ErrorSamples, "; "))
		}
		results = append(results, *res)
	}
	r.Client = results
	r.Metrics["conns"] = float64(held)
	r.Metrics["rss_per_conn"] = float64(r.ServerRSS-baseRSS) / float64(held)
	r.Metrics["rss_mib"] = float64(r.ServerRSS) / (1 << 20)
	r.Metrics["base_rss_mib"] = float64(baseRSS) / (1 << 20)
	r.Metrics["fds"] = float64(r.ServerFDs)
	r.Metrics["idle_cpu_pct"] = 100 * r.ServerCPUSeconds / r.WallSeconds
	return nil
}

// holder is one `gyre-bench idle` process.
type holder struct {
	args   []string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	errLog string
	done   chan struct{}
}

func (h *H) startHolder(args []string, base string) (*holder, error) {
	full := append([]string{"taskset", "-c", strconv.Itoa(h.cfg.CPULoad)}, args...)
	cmd := exec.CommandContext(h.ctx, full[0], full[1:]...)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	ef, err := os.Create(base + ".err")
	if err != nil {
		return nil, err
	}
	cmd.Stderr = ef
	if err := cmd.Start(); err != nil {
		ef.Close()
		return nil, err
	}
	hd := &holder{args: full, cmd: cmd, stdin: in, lines: make(chan string, 2), errLog: base + ".err", done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			hd.lines <- sc.Text()
		}
		close(hd.lines)
		_ = cmd.Wait()
		ef.Close()
		close(hd.done)
	}()
	return hd, nil
}

func (hd *holder) line(timeout time.Duration) (string, error) {
	select {
	case l, ok := <-hd.lines:
		if !ok {
			<-hd.done
			return "", fmt.Errorf("idle holder exited early (%v): %s", hd.cmd.ProcessState, lastLines(readFile(hd.errLog), 5))
		}
		return l, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("idle holder silent for %v: %s", timeout, lastLines(readFile(hd.errLog), 5))
	}
}

func (hd *holder) ready(timeout time.Duration) (*load.IdleReady, error) {
	l, err := hd.line(timeout)
	if err != nil {
		return nil, err
	}
	var rd load.IdleReady
	if err := json.Unmarshal([]byte(l), &rd); err != nil {
		return nil, fmt.Errorf("idle holder: %q: %w", l, err)
	}
	return &rd, nil
}

func (hd *holder) finish(timeout time.Duration) (*load.IdleResult, error) {
	_, _ = io.WriteString(hd.stdin, "verify\n")
	_ = hd.stdin.Close()
	l, err := hd.line(timeout)
	if err != nil {
		return nil, err
	}
	var res load.IdleResult
	if err := json.Unmarshal([]byte(l), &res); err != nil {
		return nil, fmt.Errorf("idle holder: %q: %w", l, err)
	}
	select {
	case <-hd.done:
	case <-time.After(10 * time.Second):
	}
	return &res, nil
}

func (hd *holder) kill() {
	select {
	case <-hd.done:
	default:
		_ = hd.cmd.Process.Kill()
		<-hd.done
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
