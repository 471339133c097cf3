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
	"golang.org/x/sys/unix"
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
	r.Engine = s.engine
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
// loadResult is one finished load process.
type loadResult struct {
	stdout []byte
	cpu    float64 // user+system seconds of the load process, whole lifetime
}

// phaseFunc is called when a -sync load client reaches a phase (start or
// end of its measured part), with the client's pid; the client waits
// until it returns.
type phaseFunc func(phase string, pid int) error

// runLoad runs a load client pinned to the load CPU, bounded by timeout.
// A non-zero exit is an error that quotes the client's stderr. With
// onPhase, the client must have been given -sync: it writes each phase on
// descriptor 3 and waits for a line on its stdin.
func (h *H) runLoad(args []string, outBase string, timeout time.Duration, onPhase phaseFunc) (loadResult, error) {
	full := h.onLoadCPU(args)
	ctx, cancel := context.WithTimeout(h.ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 2 * time.Second
	var phaseErr error
	var runErr error
	if onPhase == nil {
		runErr = cmd.Run()
	} else {
		runErr, phaseErr = runSynced(cmd, onPhase)
	}
	_ = os.WriteFile(outBase+".out", out.Bytes(), 0o644)
	_ = os.WriteFile(outBase+".err", errb.Bytes(), 0o644)
	lr := loadResult{stdout: out.Bytes()}
	if cmd.ProcessState != nil {
		lr.cpu = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	}
	name := filepath.Base(args[0])
	switch {
	case h.ctx.Err() != nil:
		return lr, fmt.Errorf("interrupted: %w", h.ctx.Err())
	case ctx.Err() == context.DeadlineExceeded:
		return lr, fmt.Errorf("load client %s did not finish within %v (killed); output %s.out/.err", name, timeout, outBase)
	case phaseErr != nil:
		return lr, fmt.Errorf("load client %s: %w", name, phaseErr)
	case runErr != nil:
		return lr, fmt.Errorf("load client %s failed (%v): %s\n%s", name, runErr,
			strings.TrimSpace(lastLines(errb.String(), 8)), strings.TrimSpace(lastLines(out.String(), 4)))
	}
	return lr, nil
}

// runSynced runs cmd with the -sync protocol: descriptor 3 of the client
// is a pipe on which it names each phase; onPhase runs, then a line on the
// client's stdin lets it go on. An onPhase error kills the client.
func runSynced(cmd *exec.Cmd, onPhase phaseFunc) (runErr, phaseErr error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return err, nil
	}
	defer pr.Close()
	cmd.ExtraFiles = []*os.File{pw}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		pw.Close()
		return err, nil
	}
	err = cmd.Start()
	pw.Close() // the client holds the write end now
	if err != nil {
		return err, nil
	}
	sc := bufio.NewScanner(pr)
	var seen []string
	for sc.Scan() {
		phase := sc.Text()
		seen = append(seen, phase)
		if err := onPhase(phase, cmd.Process.Pid); err != nil {
			phaseErr = err
			_ = cmd.Process.Kill()
			break
		}
		if _, err := io.WriteString(stdin, "go\n"); err != nil {
			break // the client is gone; Wait says why
		}
	}
	runErr = cmd.Wait()
	if phaseErr == nil && runErr == nil && strings.Join(seen, ",") != load.PhaseStart+","+load.PhaseEnd {
		phaseErr = fmt.Errorf("signalled phases %q, want %s then %s", seen, load.PhaseStart, load.PhaseEnd)
	}
	return runErr, phaseErr
}

func (h *H) onLoadCPU(args []string) []string {
	return append([]string{"taskset", "-c", strconv.Itoa(h.cfg.CPULoad)}, args...)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func secs(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }

// CPU windows of a run (Run.Window).
const (
	// WindowPhase: the client's own measured phase, from its "start" to
	// its "end" signal: connecting and closing stay outside.
	WindowPhase = "client measured phase (-sync)"
	// WindowProcess: the load process's lifetime (wrk, ingest-load, which
	// cannot signal): it includes their connect and close.
	WindowProcess = "load process lifetime"
)

// measured runs the measured load between two samples and fills the CPU
// figures. A synced client is sampled at its own phase signals, and its
// CPU time is read from /proc like the server's; any other client is
// sampled around its whole process and its CPU time is its rusage.
func (h *H) measured(s *server, r *Run, args []string, synced bool, outBase string, timeout time.Duration) (loadResult, error) {
	r.LoadCmd = h.onLoadCPU(args)
	var a, b sample
	var lr loadResult
	var err error
	if synced {
		r.Window = WindowPhase
		var got int
		lr, err = h.runLoad(args, outBase, timeout, func(phase string, pid int) error {
			sm, err := h.takeSample(s, pid)
			if err != nil {
				return err
			}
			switch phase {
			case load.PhaseStart:
				a = sm
			case load.PhaseEnd:
				b = sm
			default:
				return fmt.Errorf("unknown phase %q", phase)
			}
			got++
			return nil
		})
		if err == nil && got != 2 {
			err = fmt.Errorf("load client signalled %d phases, want 2", got)
		}
	} else {
		r.Window = WindowProcess
		if a, err = h.takeSample(s, 0); err != nil {
			return lr, err
		}
		lr, err = h.runLoad(args, outBase, timeout, nil)
		if err == nil {
			b, err = h.takeSample(s, 0)
			a.loadCPU, b.loadCPU = 0, lr.cpu
		}
	}
	if err != nil {
		if !s.alive() {
			return lr, fmt.Errorf("%w\nthe server died: %s", err, tail(s.log, 10))
		}
		return lr, err
	}
	h.account(r, a, b)
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

// warmThenMeasure is the shape of every load workload: an optional
// warm-up run of the client (checked, not measured), then the measured
// run. args builds the client's command for a duration; measured runs get
// -sync when the client supports it. parse checks and decodes a run's
// output.
func warmThenMeasure[T any](h *H, s *server, r *Run, base string, synced bool,
	args func(d time.Duration, measured bool) []string, parse func(loadResult) (T, error)) (T, error) {
	var zero T
	if h.cfg.Warmup > 0 {
		lr, err := h.runLoad(args(h.cfg.Warmup, false), base+".warmup", h.cfg.Warmup+30*time.Second, nil)
		if err != nil {
			return zero, fmt.Errorf("warm-up: %w", err)
		}
		if _, err := parse(lr); err != nil {
			return zero, fmt.Errorf("warm-up: %w (output %s.warmup.out)", err, base)
		}
	}
	lr, err := h.measured(s, r, args(h.cfg.Duration, true), synced, base+".load", h.cfg.Duration+30*time.Second)
	if err != nil {
		return zero, err
	}
	v, err := parse(lr)
	if err != nil {
		return zero, fmt.Errorf("%w (output %s.load.out)", err, base)
	}
	return v, nil
}

func perCPU(n, cpu float64) float64 {
	if cpu <= 0 {
		return 0
	}
	return n / cpu
}

// clientArgs adds the source addresses and, for a measured run, -sync.
func (h *H) clientArgs(a []string, measured bool) []string {
	if len(h.cfg.SrcIPs) > 0 {
		a = append(a, "-src", strings.Join(h.cfg.SrcIPs, ","))
	}
	if measured {
		a = append(a, "-sync")
	}
	return a
}

// decodeJSON decodes a client's JSON report and turns a report that is not
// ok into an error.
func decodeJSON[T any](what string, lr loadResult, ok func(*T) error) (*T, error) {
	v := new(T)
	if err := json.Unmarshal(lr.stdout, v); err != nil {
		return nil, fmt.Errorf("%s output: %w", what, err)
	}
	return v, ok(v)
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
	w, err := warmThenMeasure(h, s, r, base, false, func(d time.Duration, _ bool) []string { return h.wrkArgs(c, s, d) }, parseWrk)
	if err != nil {
		return err
	}
	r.Client = w
	r.Metrics["rps"] = w.RequestsPerSec
	r.Metrics["rps_per_cpu"] = perCPU(float64(w.Requests), r.ServerCPUSeconds)
	r.Metrics["p50_ms"] = w.P50ms
	r.Metrics["p99_ms"] = w.P99ms
	return nil
}

// ---------------------------------------------------------------- echo

func (h *H) echoArgs(c *Cell, s *server, d time.Duration, rate float64, shape string, measured bool) []string {
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
	return h.clientArgs(a, measured)
}

func parseEcho(lr loadResult) (*load.EchoResult, error) {
	return decodeJSON("echo client", lr, func(e *load.EchoResult) error {
		if !e.OK {
			return fmt.Errorf("echo client saw %d errors: %s", e.Errors, strings.Join(e.ErrorSamples, "; "))
		}
		return nil
	})
}

func (h *H) runEcho(c *Cell, s *server, r *Run, base string) error {
	args := func(d time.Duration, measured bool) []string { return h.echoArgs(c, s, d, 0, "", measured) }
	e, err := warmThenMeasure(h, s, r, base, true, args, parseEcho)
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

// runLatency offers the cell's rate in the cell's shape (the warm-up is
// steady at the same rate).
func (h *H) runLatency(c *Cell, s *server, r *Run, base string) error {
	args := func(d time.Duration, measured bool) []string {
		shape := ShapeSteady
		if measured {
			shape = c.Params.Shape
		}
		return h.echoArgs(c, s, d, c.Params.Rate, shape, measured)
	}
	e, err := warmThenMeasure(h, s, r, base, true, args, parseEcho)
	if err != nil {
		return err
	}
	r.Client = e
	setLatencyMetrics(r, c.Params.Rate, e.MessagesPerSec, e.LatencyUS)
	r.Metrics["lag_p99_us"] = e.LagUS.P99
	return nil
}

func setLatencyMetrics(r *Run, rate, achieved float64, l load.Latency) {
	r.Metrics["rate"] = rate
	r.Metrics["achieved"] = achieved
	r.Metrics["p50_us"] = l.P50
	r.Metrics["p95_us"] = l.P95
	r.Metrics["p99_us"] = l.P99
	r.Metrics["p999_us"] = l.P999
}

// ---------------------------------------------------------------- accept

func parseAccept(lr loadResult) (*load.AcceptResult, error) {
	return decodeJSON("accept client", lr, func(a *load.AcceptResult) error {
		if !a.OK {
			return fmt.Errorf("accept storm saw %d errors: %s", a.Errors, strings.Join(a.ErrorSamples, "; "))
		}
		return nil
	})
}

func (h *H) runAccept(c *Cell, s *server, r *Run, base string) error {
	args := func(d time.Duration, measured bool) []string {
		return h.clientArgs([]string{h.bin("gyre-bench"), "accept", "-addr", s.addr, "-workers", strconv.Itoa(c.Params.Workers),
			"-duration", d.String()}, measured)
	}
	a, err := warmThenMeasure(h, s, r, base, true, args, parseAccept)
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
	raw               json.RawMessage
}

func parseIngest(lr loadResult) (*ingestResult, error) {
	in, err := decodeJSON("ingest-load", lr, func(in *ingestResult) error {
		if !in.OK {
			return fmt.Errorf("ingest-load: %d errors, %d unanswered: %s", in.Errors, in.Unanswered, strings.Join(in.ErrorSamples, "; "))
		}
		return nil
	})
	if in != nil {
		in.raw = json.RawMessage(bytes.TrimSpace(lr.stdout))
	}
	return in, err
}

// runIngest: ingest-load cannot signal its phases, so the CPU window is
// its process lifetime; it runs without --warmup, so the messages it
// counts are those of that whole lifetime too.
func (h *H) runIngest(c *Cell, s *server, r *Run, base string) error {
	args := func(d time.Duration, measured bool) []string {
		if measured && c.Workload == WIngestLatency {
			return h.ingestArgs(c, s, d, c.Params.Shape)
		}
		return h.ingestArgs(c, s, d, "")
	}
	in, err := warmThenMeasure(h, s, r, base, false, args, parseIngest)
	if err != nil {
		return err
	}
	r.Client = in.raw
	if c.Workload == WIngestLatency {
		setLatencyMetrics(r, c.Params.Rate, in.MessagesPerSecond, in.LatencyUS)
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
	if _, err := h.runLoad(h.echoArgs(wc, s, time.Second, 0, "", false), base+".warmup", 30*time.Second, nil); err != nil {
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
	need := int64(c.Params.IdleConns + baseFDs + idleFDMargin)
	raiseErr := raiseNoFile(s.pid, need)
	soft, hard, err := procfs.OpenFileLimits(s.pid)
	if err != nil {
		return err
	}
	r.NoFileSoft, r.NoFileHard = soft, hard
	want, short := idleTarget(c.Params.IdleConns, baseFDs, soft, hard, raiseErr)
	if short != "" {
		r.IdleShort = short
		h.logf("  %s: holding %d connections, not %d: %s", s.name, want, c.Params.IdleConns, short)
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
	a, err := h.takeSample(s, 0)
	if err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // the idle CPU window
	b, err := h.takeSample(s, 0)
	if err != nil {
		return err
	}
	r.Window = "2 s with the connections idle"
	h.account(r, a, b)
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

// idleFDMargin is how many descriptors beyond its connections and those
// it already holds a server keeps free during the idle workload (a
// transient descriptor must not turn into a refused connection).
const idleFDMargin = 8

// raiseNoFile makes sure the server's RLIMIT_NOFILE allows need
// descriptors: Go programs raise their soft limit to the hard limit at
// start (and the load clients do so explicitly); raising the hard limit
// needs CAP_SYS_RESOURCE, which this process may not have. The error says
// why it could not.
func raiseNoFile(pid int, need int64) error {
	var rl unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &rl); err != nil {
		return err
	}
	if rl.Cur == unix.RLIM_INFINITY || rl.Cur >= uint64(need) {
		return nil
	}
	nl := unix.Rlimit{Cur: uint64(need), Max: max(rl.Max, uint64(need))}
	if rl.Max == unix.RLIM_INFINITY {
		nl.Max = rl.Max
	}
	return unix.Prlimit(pid, unix.RLIMIT_NOFILE, &nl, nil)
}

// idleTarget is how many idle connections a server can hold: every
// connection costs it a descriptor, within its RLIMIT_NOFILE (soft, hard;
// -1 unlimited) after raiseErr's attempt to raise it. When the target
// falls short of want, short says how many are held and why, for the
// table.
func idleTarget(want, serverFDs int, soft, hard int64, raiseErr error) (n int, short string) {
	if soft < 0 || int64(want+serverFDs+idleFDMargin) <= soft {
		return want, ""
	}
	n = max(int(soft)-serverFDs-idleFDMargin, 0)
	why := fmt.Sprintf("the server's RLIMIT_NOFILE is %s", groupDigits(soft))
	if hard >= 0 && soft < hard {
		why += fmt.Sprintf(" (hard limit %s)", groupDigits(hard))
	} else {
		why += " (the hard limit)"
	}
	if raiseErr != nil {
		why += fmt.Sprintf(", raising it failed: %v", raiseErr)
	}
	return n, fmt.Sprintf("%s held: %s; each connection takes one descriptor and the server has %d of its own plus %d spare",
		groupDigits(int64(n)), why, serverFDs, idleFDMargin)
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
	full := h.onLoadCPU(args)
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
