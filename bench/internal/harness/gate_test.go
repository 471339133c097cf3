package harness

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gyre-io/gyre/bench/internal/procfs"
	"github.com/gyre-io/gyre/bench/internal/stats"
	"golang.org/x/sys/unix"
)

// The latency-under-load cells have no gated figure: at a fixed offered
// load the server's CPU and the p50 swing up to 2x between runs on a
// shared VM (gyre 0.337..0.692 cores, p50 451..1017 µs), so no spread
// fails them, whichever server's. A contended run they had to keep
// still does.
func TestLatencyCellsNeverNoisyFromSpread(t *testing.T) {
	for _, wl := range []string{WLatency, WIngestLatency} {
		for _, m := range metrics[wl] {
			if m.Check {
				t.Errorf("%s: %s is gated", wl, m.Key)
			}
		}
	}
	mk := func(p50, cpu []float64) map[string]stats.Summary {
		return map[string]stats.Summary{"p50_us": stats.Summarize(p50), "p99_us": stats.Summarize([]float64{500, 2000, 900}),
			"server_cpu": stats.Summarize(cpu), "achieved": stats.Summarize([]float64{1000, 1000, 1000})}
	}
	loud := map[string]map[string]stats.Summary{
		SGyre: mk([]float64{451, 1017, 460}, []float64{0.337, 0.692, 0.34}),
		SGnet: mk([]float64{100, 150, 105}, []float64{0.363, 0.556, 0.4}),
		SNet:  mk([]float64{500, 1060, 510}, []float64{0.5, 0.9, 0.52}),
	}
	for _, wl := range []string{WLatency, WIngestLatency} {
		if why, peer := noisy(wl, loud, 0.25); len(why) != 0 || len(peer) != 0 {
			t.Errorf("%s noisy from spread: %v; peer %v", wl, why, peer)
		}
	}

	h := gateHarness(time.Hour)
	c := &Cell{ID: "latency-steady-50", Workload: WLatency, Servers: []string{SGyre, SGnet, SNet}}
	var kept []*Run
	for _, srv := range c.Servers {
		for i, v := range []float64{451, 1017, 460} {
			kept = append(kept, &Run{Server: srv, Run: i + 1, Kept: true, Contended: srv == SGyre && i == 1,
				Metrics: map[string]float64{"p50_us": v, "server_cpu": v / 1000}})
		}
	}
	why := h.judge(c, kept)
	if !c.Noisy || len(why) != 1 || !strings.HasPrefix(why[0], "gyre run 2 contended") {
		t.Errorf("kept contended run: noisy %v (%v)", c.Noisy, why)
	}
}

func TestNoisyError(t *testing.T) {
	if noisyError(nil, 0.25, "d") != nil {
		t.Fatal("no noisy cells, yet an error")
	}
	err := noisyError([]string{"http-c64: net requests / server CPU-s spread 40% (50k..70k)"}, 0.25, "results/quick-x")
	if !errors.Is(err, ErrNoisy) || !strings.Contains(err.Error(), "http-c64: net") || !strings.Contains(err.Error(), "-spread-max") {
		t.Fatalf("%v", err)
	}
	// The error states the whole gate: the limit, the trimming, what it
	// tolerates and what it does not, and the pooled second pass.
	for _, want := range []string{"at most 25% for gyre, gyre-epoll and net", "every ratio is to net", "no contended run",
		"gnet's gated figures are shown with their spread, marked (noisy) when over 25%, but do not fail a cell",
		"latency-under-load cells have no gated figure", "only a contended run fails them", "from 5 runs without its lowest and its highest run",
		"one outlying run per server", "two groups of two or more", "more than 25% of the median apart", "both passes pooled"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestIdleTarget(t *testing.T) {
	if n, why := idleTarget(10000, 10, 20000, 20000, nil); n != 10000 || why != "" {
		t.Errorf("10k: %d %q", n, why)
	}
	n, why := idleTarget(20000, 10, 20000, 20000, unix.EPERM)
	if n != 20000-10-idleFDMargin || !strings.Contains(why, "19,982 held") || !strings.Contains(why, "20,000 (the hard limit)") ||
		!strings.Contains(why, "operation not permitted") || !strings.Contains(why, "10 of its own") {
		t.Errorf("20k at a hard limit of 20k: %d %q", n, why)
	}
	if n, why := idleTarget(20000, 10, 1024, 4096, unix.EPERM); n != 1024-10-idleFDMargin || !strings.Contains(why, "hard limit 4,096") {
		t.Errorf("soft below hard: %d %q", n, why)
	}
	if n, why := idleTarget(20000, 10, -1, -1, nil); n != 20000 || why != "" {
		t.Errorf("unlimited: %d %q", n, why)
	}
}

// A Go server runs with its soft RLIMIT_NOFILE at the hard limit, and
// the harness raises a soft limit that is lower.
func TestServerFileLimit(t *testing.T) {
	_, s := testHarness(t)
	soft, hard, err := procfs.OpenFileLimits(s.pid)
	if err != nil {
		t.Fatal(err)
	}
	if soft != hard {
		t.Errorf("Go server's RLIMIT_NOFILE %d/%d: soft not raised to hard", soft, hard)
	}
	if hard >= 0 && hard < 2048 {
		t.Skipf("hard limit %d too low to test raising", hard)
	}
	if err := unix.Prlimit(s.pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 512, Max: uint64(hard)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := raiseNoFile(s.pid, 2048); err != nil {
		t.Fatal(err)
	}
	if soft, _, _ := procfs.OpenFileLimits(s.pid); soft < 2048 {
		t.Errorf("soft limit %d after raising to 2048", soft)
	}
}

func TestIdleShortInTable(t *testing.T) {
	c := &Cell{ID: "idle-20000", Workload: WIdle, Label: "20000 idle connections", Servers: []string{SGyre, SNet},
		Params: Params{IdleConns: 20000}}
	why := "19,982 held: the server's RLIMIT_NOFILE is 20,000 (the hard limit)"
	for _, s := range c.Servers {
		c.Runs = append(c.Runs, &Run{Server: s, Kept: true, IdleShort: why, Metrics: map[string]float64{"conns": 19982, "rss_per_conn": 340}})
	}
	c.Summary = summarize(WIdle, c.Runs)
	var b bytes.Buffer
	res := &Results{Cells: []*Cell{c}, Runs: c.Runs}
	WriteTable(&b, res)
	WriteNotes(&b, res)
	out := b.String()
	if !strings.Contains(out, "| 20000 idle connections (19,982 held: the servers' RLIMIT_NOFILE, see the notes) | connections held | 19,982 | 19,982 |") ||
		!strings.Contains(out, "idle-20000: 20000 connections asked for; gyre: "+why) || !strings.Contains(out, "; net: "+why) {
		t.Errorf("table and notes do not say why:\n%s", out)
	}
}

func TestWriteEnvRecordsBuildAndFewRuns(t *testing.T) {
	var b bytes.Buffer
	WriteEnv(&b, &Results{Env: Env{Runs: 1, GoVersion: "go1.26.8", SpreadMax: 0.25, NoiseGate: gateRule(0.25), NoFile: "20000/20000",
		Binaries: map[string]BinInfo{"gyre-echo": {SHA256: "abc", Go: "go1.26.8", Revision: "0123456789abcdef", Modified: "true", LDFlags: "-s -w"}}}})
	out := b.String()
	for _, want := range []string{"`gyre-echo`: go1.26.8, 0123456789ab+uncommitted, -ldflags=-s -w, sha256 abc",
		"- noise: a run is repeated when either core spent over 0% of it on other work; " + gateRule(0.25) + "\n",
		"not results", "RLIMIT_NOFILE 20000/20000 (soft/hard)"} {
		if !strings.Contains(out, want) {
			t.Errorf("env block lacks %q:\n%s", want, out)
		}
	}
}

// Results written before the gate trimmed and pooled have no NoiseGate:
// re-rendered, they state the gate they were judged by.
func TestWriteEnvOldGate(t *testing.T) {
	var b bytes.Buffer
	WriteEnv(&b, &Results{Env: Env{Runs: 3, SpreadMax: 0.25}})
	if out := b.String(); !strings.Contains(out, "spreads over 25%") || !strings.Contains(out, "its first runs discarded") || strings.Contains(out, "pooled") {
		t.Errorf("old results' env block:\n%s", out)
	}
}

func TestGroupDigits(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 19982: "19,982", -1234567: "-1,234,567"} {
		if got := groupDigits(n); got != want {
			t.Errorf("groupDigits(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestBinInfo(t *testing.T) {
	bi := binInfo(os.Args[0])
	if !strings.HasPrefix(bi.Go, "go1.") || len(bi.SHA256) != 12 {
		t.Fatalf("%+v", bi)
	}
}

// A run kept although other work disturbed it (retries used up) makes
// its cell noisy: the harness knows it is not clean.
func TestContendedRunsMakeTheCellNoisy(t *testing.T) {
	clean := &Run{Server: SGyre, Run: 1}
	if why := contended([]*Run{clean}); len(why) != 0 {
		t.Fatalf("clean run: %v", why)
	}
	bad := &Run{Server: SNet, Run: 2, Contended: true, ServerCoreOther: 0.4, WallSeconds: 3}
	why := contended([]*Run{clean, bad})
	if len(why) != 1 || !strings.HasPrefix(why[0], "net run 2 contended (server core 0.40s beyond the server") {
		t.Fatalf("%v", why)
	}
}

// fakePasses stands in for measurePass: pass i gives every server the
// gated echo figure (messages per server CPU-second) from passes[i], so
// gateCell runs without servers. It records the first run number of
// each pass.
type fakePasses struct {
	passes    []map[string][]float64
	contended map[string]bool // "server/run" kept although contended
	firsts    []int
}

func (f *fakePasses) pass(c *Cell, first int) ([]*Run, error) {
	vals := f.passes[len(f.firsts)]
	f.firsts = append(f.firsts, first)
	var kept []*Run
	for i := range len(vals[SNet]) {
		for _, srv := range c.Servers {
			n := first + i
			r := &Run{Cell: c.ID, Workload: c.Workload, Server: srv, Run: n, Attempt: 1, Kept: true,
				Contended: f.contended[fmt.Sprintf("%s/%d", srv, n)],
				Metrics:   map[string]float64{"mps_per_cpu": vals[srv][i], "mps": 100e3}}
			c.Runs = append(c.Runs, r)
			kept = append(kept, r)
		}
	}
	return kept, nil
}

func gateHarness(budget time.Duration) *H {
	return &H{cfg: Config{Runs: 3, SpreadMax: 0.25, NoiseBudget: budget}, log: io.Discard}
}

func echoCell() *Cell {
	return &Cell{ID: "echo-s64-c64", Workload: WEcho, Label: "64 B, 64 conns", Servers: []string{SGyre, SGnet, SNet}}
}

// steady is a quiet server's figure over one pass.
var steady = []float64{1.00e6, 1.02e6, 0.99e6}

// The quiet-run failure this gate was made for: one run of the first
// pass fell 25% short (949k..1.33M, a 30% spread; gnet's then, net's
// here, as gnet is no longer gated). Measured again,
// the cell is judged on both passes pooled, six runs per server; the
// trimmed spread leaves the outlier out and the cell passes, with every
// run of both passes kept and shown in min–max.
func TestPooledCellPassesTrimmedGate(t *testing.T) {
	h, c := gateHarness(time.Hour), echoCell()
	f := &fakePasses{passes: []map[string][]float64{
		{SGyre: steady, SGnet: steady, SNet: {0.949e6, 1.33e6, 1.25e6}},
		{SGyre: steady, SGnet: steady, SNet: {1.26e6, 1.22e6, 1.28e6}},
	}}
	if err := h.gateCell(c, f.pass); err != nil {
		t.Fatal(err)
	}
	if c.Noisy || len(c.NoisyWhy) != 0 || !c.Remeasured || !c.Pooled {
		t.Fatalf("noisy %v (%v), remeasured %v, pooled %v: want a pooled cell that passes", c.Noisy, c.NoisyWhy, c.Remeasured, c.Pooled)
	}
	if len(f.firsts) != 2 || f.firsts[1] != 4 {
		t.Errorf("passes started at runs %v, want [1 4]", f.firsts)
	}
	if len(c.Runs) != 18 {
		t.Fatalf("%d runs, want 18", len(c.Runs))
	}
	for _, r := range c.Runs {
		if !r.Kept || r.Discarded != "" {
			t.Errorf("%s run %d: kept %v, discarded %q", r.Server, r.Run, r.Kept, r.Discarded)
		}
	}
	s := c.Summary[SNet]["mps_per_cpu"]
	if s.N != 6 || s.Min != 0.949e6 || s.Max != 1.33e6 || !s.Trimmed || s.TrimMin != 1.22e6 || s.TrimMax != 1.28e6 {
		t.Errorf("net summary %+v: want all 6 runs, 949k..1.33M, trimmed 1.22M..1.28M", s)
	}
	if got := spreadText(c, metricByKey(t, WEcho, "mps_per_cpu")); got != "30% net; gated 5% net" {
		t.Errorf("spread column %q", got)
	}
	var b bytes.Buffer
	WriteNotes(&b, &Results{Cells: []*Cell{c}, Runs: c.Runs})
	if !strings.Contains(b.String(), "echo-s64-c64 was measured again, its first pass too noisy; its figures pool both passes (6 kept runs per server)") {
		t.Errorf("notes:\n%s", b.String())
	}
}

// Runs that split into two groups, three runs on each, are not one
// outlier: pooled and trimmed, the cell still fails, and the reason
// names the trimmed spread and both ranges. net is gated: its noise
// fails the cell.
func TestPooledBimodalCellFails(t *testing.T) {
	h, c := gateHarness(time.Hour), echoCell()
	f := &fakePasses{passes: []map[string][]float64{
		{SGyre: steady, SGnet: steady, SNet: {1.0e6, 1.4e6, 1.0e6}},
		{SGyre: steady, SGnet: steady, SNet: {1.4e6, 1.01e6, 1.41e6}},
	}}
	if err := h.gateCell(c, f.pass); err != nil {
		t.Fatal(err)
	}
	if !c.Noisy || !c.Pooled || len(c.NoisyWhy) != 1 {
		t.Fatalf("noisy %v (%v), pooled %v: want a pooled cell that fails on net", c.Noisy, c.NoisyWhy, c.Pooled)
	}
	want := "net messages / server CPU-s spread 33% over 6 runs without the lowest and the highest (1.00M..1.40M; all 1.00M..1.41M)"
	if c.NoisyWhy[0] != want {
		t.Errorf("why %q\nwant %q", c.NoisyWhy[0], want)
	}
	for _, r := range c.Runs {
		if !r.Kept {
			t.Errorf("%s run %d not kept: the noisy cell's table shows every run", r.Server, r.Run)
		}
	}
}

// A quiet first pass is not measured again; nor is a noisy one once the
// noise budget is spent: it fails on its own runs, untrimmed.
func TestGateCellSinglePass(t *testing.T) {
	h, c := gateHarness(time.Hour), echoCell()
	f := &fakePasses{passes: []map[string][]float64{{SGyre: steady, SNet: steady, SGnet: steady}}}
	if err := h.gateCell(c, f.pass); err != nil {
		t.Fatal(err)
	}
	if c.Noisy || c.Remeasured || c.Pooled || len(f.firsts) != 1 {
		t.Errorf("quiet cell: noisy %v, remeasured %v, pooled %v, %d passes", c.Noisy, c.Remeasured, c.Pooled, len(f.firsts))
	}
	h, c = gateHarness(0), echoCell()
	f = &fakePasses{passes: []map[string][]float64{{SGyre: {0.949e6, 1.33e6, 1.25e6}, SNet: steady, SGnet: steady}}}
	if err := h.gateCell(c, f.pass); err != nil {
		t.Fatal(err)
	}
	if !c.Noisy || c.Remeasured || c.Pooled || len(f.firsts) != 1 || len(c.NoisyWhy) != 1 ||
		c.NoisyWhy[0] != "gyre messages / server CPU-s spread 30% (949k..1.33M)" {
		t.Errorf("no budget: noisy %v (%q), remeasured %v, pooled %v, %d passes", c.Noisy, c.NoisyWhy, c.Remeasured, c.Pooled, len(f.firsts))
	}
}

// A contended run the first pass had to keep makes the cell noisy; it
// is left out of the pool (a contended run fails any cell it is in), so
// a clean second pass clears the cell as re-measuring did before it
// pooled. A contended run kept in the pooled passes still fails it.
func TestContendedRunLeftOutOfThePool(t *testing.T) {
	h, c := gateHarness(time.Hour), echoCell()
	f := &fakePasses{passes: []map[string][]float64{
		{SGyre: steady, SNet: steady, SGnet: steady},
		{SGyre: steady, SNet: steady, SGnet: steady},
	}, contended: map[string]bool{SNet + "/2": true}}
	if err := h.gateCell(c, f.pass); err != nil {
		t.Fatal(err)
	}
	if c.Noisy || !c.Pooled {
		t.Fatalf("noisy %v (%v), pooled %v", c.Noisy, c.NoisyWhy, c.Pooled)
	}
	for _, r := range c.Runs {
		if contended := r.Server == SNet && r.Run == 2; r.Kept == contended || (r.Discarded != "") != contended {
			t.Errorf("%s run %d: kept %v, discarded %q", r.Server, r.Run, r.Kept, r.Discarded)
		}
	}
	if n := c.Summary[SNet]["mps_per_cpu"].N; n != 5 {
		t.Errorf("net has %d pooled runs, want 5", n)
	}
	if got := runsPerServer(c); got != "gyre 6, gnet 6, net 5 kept runs" {
		t.Errorf("runsPerServer = %q", got)
	}

	h, c = gateHarness(time.Hour), echoCell()
	f.firsts, f.contended = nil, map[string]bool{SNet + "/2": true, SNet + "/5": true}
	if err := h.gateCell(c, f.pass); err != nil {
		t.Fatal(err)
	}
	if !c.Noisy || len(c.NoisyWhy) != 1 || !strings.HasPrefix(c.NoisyWhy[0], "net run 5 contended") {
		t.Errorf("contended run in the second pass: noisy %v (%v)", c.Noisy, c.NoisyWhy)
	}
}

func metricByKey(t *testing.T, workload, key string) metric {
	t.Helper()
	for _, m := range metrics[workload] {
		if m.Key == key {
			return m
		}
	}
	t.Fatalf("no metric %s in %s", key, workload)
	return metric{}
}

// A cell where only gnet spreads over the limit passes: gnet is not
// gated (the comparison is gyre vs net). It is not measured again, its
// figure is listed in PeerNoisy (peer_noisy in results.json), and the
// table marks gnet's value "(noisy)" and the notes list it.
func TestOnlyGnetNoisyPasses(t *testing.T) {
	h, c := gateHarness(time.Hour), echoCell()
	f := &fakePasses{passes: []map[string][]float64{{SGyre: steady, SNet: steady, SGnet: {76.6e3, 198e3, 150e3}}}}
	if err := h.gateCell(c, f.pass); err != nil {
		t.Fatal(err)
	}
	if c.Noisy || c.Remeasured || len(c.NoisyWhy) != 0 || len(f.firsts) != 1 {
		t.Fatalf("noisy %v (%v), remeasured %v, %d passes: want a cell that passes on its first pass", c.Noisy, c.NoisyWhy, c.Remeasured, len(f.firsts))
	}
	want := "gnet messages / server CPU-s spread 81% (76.6k..198k)"
	if len(c.PeerNoisy) != 1 || c.PeerNoisy[0] != want {
		t.Fatalf("peer noisy %q, want [%q]", c.PeerNoisy, want)
	}
	if b, err := json.Marshal(c); err != nil || !strings.Contains(string(b), `"peer_noisy":["`+want+`"]`) {
		t.Errorf("results.json cell: %s (%v)", b, err)
	}
	var b bytes.Buffer
	res := &Results{Env: Env{SpreadMax: 0.25, NoiseGate: gateRule(0.25), GatedServers: gatedServers}, Cells: []*Cell{c}, Runs: c.Runs}
	WriteTable(&b, res)
	WriteNotes(&b, res)
	out := b.String()
	row := "| messages / server CPU-s † | 1.00M (990k–1.02M) | 150k (76.6k–198k) (noisy) | 1.00M (990k–1.02M) | 1.00× | 0.15× | 81% gnet |"
	if !strings.Contains(out, row) || strings.Count(out, "(noisy)") != 2 || strings.Contains(out, "NOISY") {
		t.Errorf("table lacks %q, or marks more:\n%s", row, out)
	}
	if !strings.Contains(out, "- echo-s64-c64: over the gate's limit, marked (noisy), not gated (the gate judges gyre, gyre-epoll and net): "+want+"\n") {
		t.Errorf("notes do not list gnet's figure:\n%s", out)
	}
	// Results from before the gate judged only gyre and net (no
	// GatedServers) mark nothing: a noisy gnet figure failed its cell.
	b.Reset()
	res.Env.GatedServers = nil
	WriteTable(&b, res)
	if strings.Contains(b.String(), "(noisy)") {
		t.Errorf("older results marked:\n%s", b.String())
	}
}

// The legend states the gate the results were judged by: gyre and net,
// trimmed from stats.TrimFrom runs; or (results from before) every
// server, or the plain spread.
func TestLegendStatesTheGate(t *testing.T) {
	var b bytes.Buffer
	writeLegend(&b, &Results{Env: Env{SpreadMax: 0.25, NoiseGate: gateRule(0.25), GatedServers: gatedServers}})
	for _, want := range []string{"may not exceed 25% for gyre, gyre-epoll and net", "marked (noisy) when over the limit, but does not fail the cell",
		"latency-under-load tables have no gated figure", "From 5 runs", "lowest and its highest run out of max−min", "\"gated\"",
		"min–max shown is still that of all kept runs", "one outlying run per server", "two groups"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("legend lacks %q:\n%s", want, b.String())
		}
	}
	// Results from before gyre-epoll name the two servers they gated.
	b.Reset()
	writeLegend(&b, &Results{Env: Env{SpreadMax: 0.25, NoiseGate: gateRule(0.25), GatedServers: []string{SGyre, SNet}}})
	if out := b.String(); !strings.Contains(out, "may not exceed 25% for gyre and net (the comparison") {
		t.Errorf("legend of results gated on gyre and net:\n%s", out)
	}
	b.Reset()
	writeLegend(&b, &Results{Env: Env{SpreadMax: 0.25, NoiseGate: "pooled and trimmed, every server"}})
	if out := b.String(); !strings.Contains(out, "may not exceed 25% for any server; from 5 runs") || strings.Contains(out, "(noisy)") {
		t.Errorf("legend of results gated on every server:\n%s", out)
	}
	b.Reset()
	writeLegend(&b, &Results{Env: Env{SpreadMax: 0.5}})
	if out := b.String(); !strings.Contains(out, "whose spread may not exceed 50%.\n") || strings.Contains(out, `"gated"`) {
		t.Errorf("old results' legend:\n%s", out)
	}
}
