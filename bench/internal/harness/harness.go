// Package harness runs the benchmark matrix: for every cell (workload and
// parameters) it measures each server in alternating runs on a freshly
// started, CPU-pinned server, checks every run for errors and for other
// work on the two cores, checks the spread of the runs, and writes the
// results as JSON, a markdown table and charts.
package harness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gyre-io/gyre/bench/internal/stats"
	"github.com/schollz/progressbar/v3"
)

// Config is the command line of `gyre-bench run`.
type Config struct {
	Matrix    string
	Workloads []string
	Servers   []string
	// Cells, when set, keeps only the cells whose ID matches one of these
	// path.Match patterns (and the peak cells the kept latency cells need).
	Cells []string
	// Engine is the engine of the "gyre" server (gyre-echo -engine, and
	// ingestd --engine where it has the flag): io_uring, epoll, net or
	// auto. "" is io_uring. gyre-epoll always runs on epoll.
	Engine    string
	Runs      int
	Duration  time.Duration
	Warmup    time.Duration
	CPUServer int
	CPULoad   int
	Port      int // first port of the range servers listen on
	PortSpan  int
	// RootBin holds gyre-echo, ingestd and ingest-load (make build);
	// BenchBin holds gnet-echo and ingest-net; Self is gyre-bench.
	RootBin  string
	BenchBin string
	Self     string
	OutDir   string // results go to OutDir/<matrix>-<stamp>/, logs to OutDir/tmp/
	SrcIPs   []string
	// Noise control.
	QuietBusy    float64 // percent
	QuietTimeout time.Duration
	ContendedPct float64 // percent of a run
	Retries      int
	NoiseBudget  time.Duration
	SpreadMax    float64 // gated (trimmed) spread above which a cell is too noisy: see gateRule
	AllowNoisy   bool    // render tables and charts even with noisy cells (the exit status stays non-zero)
	// Per-workload knobs.
	IdleSettle       time.Duration
	IdlePerHolder    int
	StartTimeout     time.Duration
	ServerGoMaxProcs int
	Args             []string // the command line, for the record
	Progress         bool
}

// H is one harness run.
type H struct {
	ctx        context.Context
	cfg        Config
	stamp      string
	dir        string // results
	raw        string // logs and client outputs
	bins       map[string]string
	portSeq    int
	noiseSpent time.Duration
	cells      []*Cell
	runs       []*Run
	env        Env
	log        io.Writer
	// ingestdHasQUIC: this ingestd has a --quic flag (on by default), which
	// the TCP benchmark turns off. ingestdHasEngine: it has --engine.
	ingestdHasQUIC   bool
	ingestdHasEngine bool
	bar              *progressbar.ProgressBar
}

// ErrNoisy is returned (wrapped) when cells stayed too noisy to report.
var ErrNoisy = errors.New("results too noisy to trust")

func (h *H) logf(format string, args ...any) {
	if h.bar != nil {
		_ = h.bar.Clear()
	}
	fmt.Fprintf(h.log, "gyre-bench: "+format+"\n", args...)
	if h.bar != nil {
		_ = h.bar.RenderBlank()
	}
}

func (h *H) bin(name string) string { return h.bins[name] }

// Main runs the matrix and writes the results. It returns the results
// directory, and an error when a server failed, a load client saw errors,
// or (ErrNoisy) the runs were too noisy to trust.
func Main(ctx context.Context, cfg Config, log io.Writer) (string, error) {
	if err := cfg.check(); err != nil {
		return "", err
	}
	m, err := preset(cfg.Matrix)
	if err != nil {
		return "", err
	}
	h := &H{ctx: ctx, cfg: cfg, log: log, stamp: time.Now().UTC().Format("20060102T150405Z")}
	h.dir = filepath.Join(cfg.OutDir, cfg.Matrix+"-"+h.stamp)
	h.raw = filepath.Join(cfg.OutDir, "tmp", cfg.Matrix+"-"+h.stamp)
	for _, d := range []string{h.raw, h.dir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	if err := h.copyBinaries(); err != nil {
		return "", err
	}
	out, _ := exec.Command(h.bin("ingestd"), "-h").CombinedOutput()
	h.ingestdHasQUIC = bytes.Contains(out, []byte("-quic "))
	h.ingestdHasEngine = bytes.Contains(out, []byte("-engine "))
	if h.cells, err = filterCells(plan(m, cfg.Workloads, cfg.Servers), cfg.Cells); err != nil {
		return "", err
	}
	if len(h.cells) == 0 {
		return "", errors.New("nothing to run: no cell matches -workloads, -servers and -cells")
	}
	h.env = captureEnv(h)
	// The environment goes first, so a run that fails or is stopped still
	// says where and how it ran.
	if err := writeJSON(filepath.Join(h.dir, "env.json"), h.env); err != nil {
		return "", err
	}
	if cfg.Runs < 3 {
		h.logf("warning: %d run(s) per server: the noise gate needs several runs to mean much; the table is a functional check, not a result", cfg.Runs)
	}
	start := time.Now()
	total := 0
	for _, c := range h.cells {
		total += len(c.Servers) * cfg.Runs
	}
	est := time.Duration(total) * (cfg.Duration + cfg.Warmup + 1500*time.Millisecond)
	h.logf("%s matrix: %d cells, %d measured runs, about %v plus up to %v waiting out other load; logs in %s",
		cfg.Matrix, len(h.cells), total, est.Round(time.Second), cfg.NoiseBudget, h.raw)
	if cfg.Progress {
		h.bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(log), progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(200*time.Millisecond))
	}
	var runErr error
	for _, c := range h.cells {
		if err := ctx.Err(); err != nil {
			runErr = err
			break
		}
		if err := h.measureCell(c); err != nil {
			runErr = fmt.Errorf("%s: %w", c.ID, err)
			break
		}
	}
	if h.bar != nil {
		_ = h.bar.Finish()
	}
	res := &Results{Env: h.env, Cells: h.cells, Runs: h.runs, Started: start.UTC().Format(time.RFC3339),
		Finished: time.Now().UTC().Format(time.RFC3339), WallSeconds: time.Since(start).Seconds(),
		NoiseWaitSeconds: h.noiseSpent.Seconds(), Complete: runErr == nil}
	for _, c := range h.cells {
		if c.Noisy {
			res.Noisy = append(res.Noisy, c.ID+": "+strings.Join(c.NoisyWhy, "; "))
		}
	}
	h.env.ServerGOMAX = serverGoMaxProcs(h.runs, h.env.ServerGOMAX)
	h.env.Engines = loggedEngines(h.runs, h.env.Engines)
	res.Env = h.env
	// env.json again, now with what the servers logged (engines, GOMAXPROCS).
	if err := writeJSON(filepath.Join(h.dir, "env.json"), h.env); err != nil {
		return h.dir, err
	}
	if err := writeJSON(filepath.Join(h.dir, "results.json"), res); err != nil {
		return h.dir, err
	}
	if runErr != nil {
		return h.dir, fmt.Errorf("%w\nno table or charts written (raw runs in %s/results.json, logs in %s)", runErr, h.dir, h.raw)
	}
	noisyErr := noisyError(res.Noisy, cfg.SpreadMax, h.dir)
	if noisyErr != nil && !cfg.AllowNoisy {
		return h.dir, fmt.Errorf("%w\nno table or charts written", noisyErr)
	}
	if err := Render(res, h.dir); err != nil {
		return h.dir, err
	}
	if noisyErr != nil {
		return h.dir, fmt.Errorf("%w\ntable and charts written all the same (-allow-noisy), the noisy cells marked NOISY", noisyErr)
	}
	return h.dir, nil
}

// pct writes a fraction as a percentage without rounding it away: 0.25 is
// 25%, 0.001 is 0.1%.
func pct(f float64) string { return strconv.FormatFloat(100*f, 'f', -1, 64) + "%" }

// noisyError is the verdict on cells that stayed too noisy (nil: none).
func noisyError(noisy []string, spreadMax float64, dir string) error {
	if len(noisy) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d cell(s) failed the noise gate (runs in %s/results.json):\n  %s\n"+
		"the gate: %s\n"+
		"run again on a quieter machine or with more -runs, or accept more noise with -spread-max (it is recorded with the results)",
		ErrNoisy, len(noisy), dir, strings.Join(noisy, "\n  "), gateRule(spreadMax))
}

// gateRule states the noise gate in full, for the error, env.json and
// the environment block of summary.md alike, so they cannot drift apart.
func gateRule(spreadMax float64) string {
	return fmt.Sprintf("a gated figure (†) may spread over at most %[1]s for %[3]s, the servers the comparison is about (gyre on each engine, and net: every ratio is to net), "+
		"and a cell may keep no contended run; gnet's gated figures are shown with their spread, marked (noisy) when over %[1]s, but do not fail a cell; "+
		"the latency-under-load cells have no gated figure (at a fixed offered load on a shared VM a server's CPU and p50 can double from run to run), "+
		"so only a contended run fails them; "+
		"the spread is (max-min)/median of a server's kept runs, from %[2]d runs without its lowest and its highest run (the median still of all runs), "+
		"so one outlying run per server (one low and one high at most: a scheduling hiccup on a shared VM) passes, "+
		"while runs split into two groups of two or more each stay in the trimmed range and fail when the groups lie more than %[1]s of the median apart; "+
		"a cell that fails is measured again once (while the noise budget lasts) and judged on both passes pooled "+
		"(twice -runs runs per server, trimmed; contended runs of the first pass left out), then fails the harness if it still fails",
		pct(spreadMax), stats.TrimFrom, joinAnd(gatedServers))
}

// joinAnd lists names as prose: "a", "a and b", "a, b and c".
func joinAnd(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

func (c *Config) check() error {
	switch {
	case c.Runs < 1:
		return errors.New("-runs must be >= 1")
	case c.Duration < time.Second || c.Warmup < 0:
		return errors.New("-duration must be >= 1s and -warmup >= 0")
	case c.Duration%time.Second != 0 || c.Warmup%time.Second != 0:
		return errors.New("-duration and -warmup must be whole seconds (wrk's unit)")
	case c.CPUServer == c.CPULoad:
		return fmt.Errorf("-cpu-server and -cpu-load must differ (both %d)", c.CPUServer)
	case c.Port < 1024 || c.Port+c.PortSpan > 65535 || c.PortSpan < 1:
		return errors.New("-port range must lie in 1024..65535")
	case c.SpreadMax <= 0:
		return errors.New("-spread-max must be > 0")
	}
	for _, w := range c.Workloads {
		if !slices.Contains(AllWorkloads, w) {
			return fmt.Errorf("unknown workload %q (want %s)", w, strings.Join(AllWorkloads, ","))
		}
	}
	for i, s := range c.Servers {
		if !slices.Contains(AllServers, s) {
			return fmt.Errorf("unknown server %q (want %s)", s, strings.Join(AllServers, ","))
		}
		if slices.Contains(c.Servers[:i], s) {
			return fmt.Errorf("-servers names %s twice", s)
		}
	}
	if !slices.Contains(c.Servers, SNet) {
		return errors.New("-servers must include net: every figure is reported as a ratio to it")
	}
	if c.Engine != "" {
		e, err := ParseEngine(c.Engine)
		if err != nil {
			return fmt.Errorf("-engine: %w", err)
		}
		c.Engine = e
	}
	if c.Engine == EngineEpoll && slices.Contains(c.Servers, SGyre) && slices.Contains(c.Servers, SGyreEpoll) {
		return errors.New("-engine epoll makes gyre the same server as gyre-epoll: drop gyre-epoll from -servers, or pick another -engine")
	}
	for _, p := range c.Cells {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("-cells %q: %w", p, err)
		}
	}
	return nil
}

// copyBinaries runs private copies, so a concurrent `make build` cannot
// swap a server between runs.
func (h *H) copyBinaries() error {
	h.bins = map[string]string{}
	dst := filepath.Join(h.raw, "bin")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	want := map[string]string{
		"gyre-echo": h.cfg.RootBin, "ingestd": h.cfg.RootBin, "ingest-load": h.cfg.RootBin,
		"gnet-echo": h.cfg.BenchBin, "ingest-net": h.cfg.BenchBin,
	}
	for name, dir := range want {
		if err := copyExec(filepath.Join(dir, name), filepath.Join(dst, name)); err != nil {
			return fmt.Errorf("%w (run `make build` and `cd bench && go build -o bin/ ./cmd/...`, or `make bench`)", err)
		}
		h.bins[name] = filepath.Join(dst, name)
	}
	if err := copyExec(h.cfg.Self, filepath.Join(dst, "gyre-bench")); err != nil {
		return err
	}
	h.bins["gyre-bench"] = filepath.Join(dst, "gyre-bench")
	return nil
}

func copyExec(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("binary %s: %w", src, err)
	}
	return os.WriteFile(dst, b, 0o755)
}

func sha12(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:6])
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// serverGoMaxProcs describes the GOMAXPROCS the Go servers logged.
func serverGoMaxProcs(runs []*Run, fallback string) string {
	seen := map[string][]string{}
	for _, r := range runs {
		if r.GoMaxProcs != "" && !slices.Contains(seen[r.GoMaxProcs], r.Server) {
			seen[r.GoMaxProcs] = append(seen[r.GoMaxProcs], r.Server)
		}
	}
	if len(seen) == 0 {
		return fallback
	}
	var parts []string
	for v, srvs := range seen {
		slices.Sort(srvs)
		parts = append(parts, fmt.Sprintf("%s (as logged by %s)", v, strings.Join(srvs, ", ")))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ") + "; gyre: 1 reactor thread"
}

// rotate returns s rotated left by k: run k starts with a different server,
// so no server always runs first (or right after another).
func rotate(s []string, k int) []string {
	if len(s) == 0 {
		return nil
	}
	k %= len(s)
	return append(slices.Clone(s[k:]), s[:k]...)
}

// measureCell runs every server of a cell Runs times, alternating, then
// gates the cell on the spread of its runs (gateCell).
func (h *H) measureCell(c *Cell) error {
	if err := h.resolveRate(c); err != nil {
		return err
	}
	h.logf("%s (%s): %s", c.ID, c.Workload, c.Label)
	return h.gateCell(c, h.measurePass)
}

// passFunc measures one pass of a cell: Runs runs of every server,
// numbered from first on, and returns the runs it kept.
type passFunc func(c *Cell, first int) ([]*Run, error)

// gateCell measures a first pass of c and gates it. A noisy cell is
// measured once more (while the noise budget lasts) and judged on both
// passes pooled, not on the second alone: on a shared VM a single run
// swings by 20-40%, and discarding a pass for one such run only draws
// as many runs again, with the same odds of a swing. Pooled, a server has
// 2×Runs runs, enough for the gate to trim its lowest and highest one
// (stats.Summary.TrimmedSpread), which tolerates one outlying run but
// not runs that split into two groups. The first pass's runs stay kept,
// except contended ones (see poolable): the table's median and min–max
// cover every kept run of both passes.
func (h *H) gateCell(c *Cell, pass passFunc) error {
	kept, err := pass(c, 1)
	if err != nil {
		return err
	}
	why := h.judge(c, kept)
	if len(why) == 0 {
		return nil
	}
	if h.budgetLeft() {
		h.logf("  %s too noisy (%s); measuring it again, to judge both passes pooled", c.ID, strings.Join(why, "; "))
		c.Remeasured = true
		start := time.Now()
		more, err := pass(c, h.cfg.Runs+1)
		h.noiseSpent += time.Since(start) // re-measuring is spent on noise too
		if err != nil {
			return err
		}
		kept = append(poolable(kept), more...)
		c.Pooled = true
		if why = h.judge(c, kept); len(why) == 0 {
			return nil
		}
	}
	h.logf("  %s still too noisy: %s", c.ID, strings.Join(why, "; "))
	return nil
}

// judge summarizes the kept runs of a cell into c.Summary and returns
// why the cell is too noisy (nil: it is not).
func (h *H) judge(c *Cell, kept []*Run) []string {
	c.Summary = summarize(c.Workload, kept)
	why, peer := noisy(c.Workload, c.Summary, h.cfg.SpreadMax)
	why = append(why, contended(kept)...)
	c.Noisy, c.NoisyWhy, c.PeerNoisy = len(why) > 0, why, peer
	return why
}

// poolable returns the first pass's kept runs that join the second
// pass's: all but the contended ones, which were kept only for want of
// retries or budget. A contended kept run makes a cell noisy however
// many runs it is pooled with, so pooling it would fail a cell the
// second pass could clear, as re-measuring did before it pooled; it is
// marked discarded instead.
func poolable(first []*Run) []*Run {
	var out []*Run
	for _, r := range first {
		if r.Contended {
			r.Kept = false
			r.Discarded = "left out of the pool when the cell was measured again: contended, kept for want of retries or budget"
			continue
		}
		out = append(out, r)
	}
	return out
}

// measurePass runs every server of a cell Runs times, alternating, the
// runs numbered from first on (a second pass continues the numbering,
// so its logs and notes do not collide with the first's). A contended
// run is repeated while the retries and the noise budget last.
func (h *H) measurePass(c *Cell, first int) ([]*Run, error) {
	var kept []*Run
	for r := first; r < first+h.cfg.Runs; r++ {
		for _, srv := range rotate(c.Servers, r-1) {
			for attempt := 1; ; attempt++ {
				run, err := h.measureOnce(c, srv, r, attempt)
				if run != nil {
					h.runs = append(h.runs, run)
					c.Runs = append(c.Runs, run)
					h.appendRun(run)
				}
				if err != nil {
					return nil, fmt.Errorf("%s run %d: %w", srv, r, err)
				}
				h.logRun(c, run)
				if run.Contended && attempt <= h.cfg.Retries && h.budgetLeft() {
					run.Discarded = "contended: " + run.contentionNote()
					h.logf("  %s run %d: other work on the cores (%s); repeating it", srv, r, run.contentionNote())
					h.noiseSpent += time.Duration(run.WallSeconds * float64(time.Second))
					continue
				}
				if run.Contended {
					h.logf("  warning: %s run %d contended, and the retries or the noise budget are used up: the cell will count as noisy", srv, r)
				}
				run.Kept = true
				kept = append(kept, run)
				break
			}
			if h.bar != nil {
				_ = h.bar.Add(1)
			}
		}
	}
	return kept, nil
}

// appendRun adds a run to runs.jsonl as soon as it is measured (one JSON
// object per line), so a harness that fails or is stopped still leaves
// every run it measured.
func (h *H) appendRun(r *Run) {
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	f, err := os.OpenFile(filepath.Join(h.dir, "runs.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.Write(append(b, '\n'))
}

// summarize computes the per-server summaries of the kept runs.
func summarize(workload string, runs []*Run) map[string]map[string]stats.Summary {
	out := map[string]map[string]stats.Summary{}
	vals := map[string]map[string][]float64{}
	for _, r := range runs {
		if vals[r.Server] == nil {
			vals[r.Server] = map[string][]float64{}
		}
		for k, v := range r.Metrics {
			vals[r.Server][k] = append(vals[r.Server][k], v)
		}
	}
	for srv, m := range vals {
		out[srv] = map[string]stats.Summary{}
		for k, vs := range m {
			out[srv][k] = stats.Summarize(vs)
		}
	}
	return out
}

// gatedServers are the servers the noise gate judges: the comparison is
// gyre (on each of its engines) against the net package (every ratio is
// to net), so a noisy gnet figure is reported (Cell.PeerNoisy, marked in
// the table) but does not fail its cell.
var gatedServers = []string{SGyre, SGyreEpoll, SNet}

// noisy lists the checked metrics whose gated spread is above the limit:
// (max-min)/median of one server's runs, and from stats.TrimFrom runs
// (a pooled cell) the same without its lowest and highest run. why
// covers the gated servers and fails the cell; peer covers the others
// (gnet), shown but not failing it.
func noisy(workload string, sum map[string]map[string]stats.Summary, limit float64) (why, peer []string) {
	srvs := make([]string, 0, len(sum))
	for s := range sum {
		srvs = append(srvs, s)
	}
	slices.Sort(srvs)
	for _, srv := range srvs {
		for _, m := range metrics[workload] {
			s, ok := sum[srv][m.Key]
			if !m.Check || !ok || !s.TooNoisy(limit) {
				continue
			}
			if txt := srv + " " + m.Label + " " + spreadWhy(m, s); slices.Contains(gatedServers, srv) {
				why = append(why, txt)
			} else {
				peer = append(peer, txt)
			}
		}
	}
	return why, peer
}

// spreadWhy says how far a gated figure spread, over which runs: the
// plain spread and its range, or the trimmed spread, its range and the
// full one.
func spreadWhy(m metric, s stats.Summary) string {
	if !s.Trimmed {
		return fmt.Sprintf("spread %.0f%% (%s..%s)", 100*s.Spread(), fmtVal(m, s.Min), fmtVal(m, s.Max))
	}
	return fmt.Sprintf("spread %.0f%% over %d runs without the lowest and the highest (%s..%s; all %s..%s)",
		100*s.TrimmedSpread(), s.N, fmtVal(m, s.TrimMin), fmtVal(m, s.TrimMax), fmtVal(m, s.Min), fmtVal(m, s.Max))
}

// contended lists the kept runs that other work disturbed (they were kept
// because the retries or the noise budget ran out): the harness knows
// they are not clean, so they make the cell noisy like a wide spread.
func contended(kept []*Run) []string {
	var why []string
	for _, r := range kept {
		if r.Contended {
			why = append(why, fmt.Sprintf("%s run %d contended (%s)", r.Server, r.Run, r.contentionNote()))
		}
	}
	return why
}

// resolveRate sets the rate of a latency cell from its peak cell.
func (h *H) resolveRate(c *Cell) error {
	if c.Params.PeakCell == "" {
		return nil
	}
	var peak *Cell
	for _, p := range h.cells {
		if p.ID == c.Params.PeakCell {
			peak = p
		}
	}
	if peak == nil || peak.Summary == nil {
		return fmt.Errorf("the peak cell %s was not measured before %s", c.Params.PeakCell, c.ID)
	}
	lowest := math.Inf(1)
	for _, srv := range c.Servers {
		s, ok := peak.Summary[srv]["mps"]
		if !ok || !s.Valid() {
			return fmt.Errorf("no peak for %s in %s", srv, peak.ID)
		}
		lowest = min(lowest, s.Median)
	}
	c.Params.Rate = math.Round(c.Params.Load * lowest)
	c.Label += fmt.Sprintf(" (%.0f msg/s)", c.Params.Rate)
	return nil
}

func (h *H) logRun(c *Cell, r *Run) {
	var parts []string
	for _, m := range metrics[c.Workload] {
		if v, ok := r.Metrics[m.Key]; ok && (m.Check || strings.HasPrefix(m.Key, "p50") || strings.HasPrefix(m.Key, "p99")) {
			parts = append(parts, fmt.Sprintf("%s %s", m.Label, fmtVal(m, v)))
		}
	}
	flag := ""
	if r.Contended {
		flag = " [contended]"
	}
	h.logf("  %-4s run %d.%d: %s; server %.2f CPU-s in %.2fs%s", r.Server, r.Run, r.Attempt, strings.Join(parts, ", "),
		r.ServerCPUSeconds, r.WallSeconds, flag)
}

// Results is results.json.
type Results struct {
	Env              Env      `json:"env"`
	Started          string   `json:"started"`
	Finished         string   `json:"finished"`
	WallSeconds      float64  `json:"wall_seconds"`
	NoiseWaitSeconds float64  `json:"noise_wait_seconds"`
	Complete         bool     `json:"complete"`
	Noisy            []string `json:"noisy,omitempty"`
	Cells            []*Cell  `json:"cells"`
	Runs             []*Run   `json:"runs"`
}

// LoadResults reads a results.json and links the runs to their cells.
func LoadResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	byID := map[string]*Cell{}
	for _, c := range r.Cells {
		byID[c.ID] = c
	}
	for _, run := range r.Runs {
		if c := byID[run.Cell]; c != nil {
			c.Runs = append(c.Runs, run)
		}
	}
	return &r, nil
}
