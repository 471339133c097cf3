package harness

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gyre-io/gyre/bench/internal/stats"
)

func TestQuickPlanCoversTheIssue(t *testing.T) {
	m, err := preset("quick")
	if err != nil {
		t.Fatal(err)
	}
	cells := plan(m, AllWorkloads, []string{SGyre, SGnet, SNet})
	var ids []string
	for _, c := range cells {
		ids = append(ids, c.ID)
	}
	for _, want := range []string{"http-c64", "http-c512", "echo-s64-c64", "echo-s16384-c64", "accept-w32",
		"idle-10000", "latency-steady-50", "ingest-c64-w256", "ingest-latency-steady-50"} {
		if !slices.Contains(ids, want) {
			t.Errorf("quick plan lacks %s: %v", want, ids)
		}
	}
	// Peaks are measured before the latency cells that need them.
	pos := func(id string) int { return slices.Index(ids, id) }
	if pos("echo-s64-c64") > pos("latency-steady-50") || pos("ingest-c64-w256") > pos("ingest-latency-steady-50") {
		t.Errorf("a latency cell runs before its peak: %v", ids)
	}
	for _, c := range cells {
		if strings.HasPrefix(c.ID, "ingest") && slices.Contains(c.Servers, SGnet) {
			t.Errorf("%s includes gnet, which has no ingest server", c.ID)
		}
	}
}

func TestFullPlan(t *testing.T) {
	m, _ := preset("full")
	cells := plan(m, AllWorkloads, []string{SGyre, SGnet, SNet})
	count := map[string]int{}
	for _, c := range cells {
		count[c.Workload]++
	}
	want := map[string]int{WHTTP: 3, WEcho: 9, WAccept: 1, WIdle: 2, WLatency: 9, WIngest: 4, WIngestLatency: 9}
	for w, n := range want {
		if count[w] != n {
			t.Errorf("%s: %d cells, want %d", w, count[w], n)
		}
	}
}

func TestPlanAddsPeakCellForLatencyAlone(t *testing.T) {
	m, _ := preset("quick")
	cells := plan(m, []string{WLatency}, []string{SGyre, SNet})
	if len(cells) != 2 || cells[0].ID != "echo-s64-c64" || cells[1].Workload != WLatency {
		t.Fatalf("latency alone: %v", cells)
	}
}

func TestRotate(t *testing.T) {
	s := []string{"a", "b", "c"}
	if got := rotate(s, 1); !slices.Equal(got, []string{"b", "c", "a"}) {
		t.Fatalf("rotate 1: %v", got)
	}
	if got := rotate(s, 3); !slices.Equal(got, s) {
		t.Fatalf("rotate 3: %v", got)
	}
	if s[0] != "a" {
		t.Fatal("rotate changed its input")
	}
}

func runs(server string, rps ...float64) []*Run {
	var out []*Run
	for _, v := range rps {
		out = append(out, &Run{Server: server, Metrics: map[string]float64{"rps": v, "rps_per_cpu": v / 2, "p99_ms": v}})
	}
	return out
}

func TestSummarizeAndNoisy(t *testing.T) {
	rs := append(runs(SGyre, 100, 110, 105), runs(SNet, 50, 80, 60)...)
	sum := summarize(WHTTP, rs)
	if sum[SGyre]["rps"].Median != 105 || sum[SNet]["rps"].Min != 50 {
		t.Fatalf("summaries: %+v", sum)
	}
	why, peer := noisy(WHTTP, sum, 0.25)
	// net spreads 30/60 = 50% on rps_per_cpu; rps (load-bound) and p99
	// are not checked.
	if len(why) != 1 || !strings.Contains(why[0], "net requests / server CPU-s") || len(peer) != 0 {
		t.Fatalf("noisy: %v; peer %v", why, peer)
	}
	if why, _ := noisy(WHTTP, sum, 0.6); len(why) != 0 {
		t.Fatalf("noisy at 60%%: %v", why)
	}
	// gnet spreading as wide is reported apart and fails nothing.
	sum = summarize(WHTTP, append(runs(SGyre, 100, 110, 105), runs(SGnet, 50, 80, 60)...))
	if why, peer := noisy(WHTTP, sum, 0.25); len(why) != 0 || len(peer) != 1 || !strings.HasPrefix(peer[0], "gnet requests / server CPU-s spread 50%") {
		t.Fatalf("gnet noisy: why %v; peer %v", why, peer)
	}
}

func TestResolveRateUsesSlowestPeak(t *testing.T) {
	peak := &Cell{ID: "echo-s64-c64", Summary: map[string]map[string]stats.Summary{
		SGyre: {"mps": stats.Summarize([]float64{1000})},
		SNet:  {"mps": stats.Summarize([]float64{600})},
	}}
	lat := &Cell{ID: "latency-steady-50", Label: "steady", Servers: []string{SGyre, SNet}, Params: Params{Load: 0.5, PeakCell: peak.ID}}
	h := &H{cells: []*Cell{peak, lat}}
	if err := h.resolveRate(lat); err != nil {
		t.Fatal(err)
	}
	if lat.Params.Rate != 300 || !strings.Contains(lat.Label, "300 msg/s") {
		t.Fatalf("rate %v label %q", lat.Params.Rate, lat.Label)
	}
	missing := &Cell{ID: "x", Servers: []string{SGyre}, Params: Params{PeakCell: "nope"}}
	if err := h.resolveRate(missing); err == nil {
		t.Fatal("missing peak accepted")
	}
}

func TestFmtVal(t *testing.T) {
	m := metric{Format: "%.0f"}
	for v, want := range map[float64]string{950: "950", 12345: "12.3k", 123456: "123k", 1234567: "1.23M", 12345678: "12.3M"} {
		if got := fmtVal(m, v); got != want {
			t.Errorf("fmtVal(%v) = %q, want %q", v, got, want)
		}
	}
	if fmtVal(metric{Format: "%.3f"}, 0.1234) != "0.123" || fmtVal(m, math.NaN()) != "–" {
		t.Error("fmtVal of a non-count or NaN")
	}
	if got := cellText(m, stats.Summarize([]float64{100, 90, 120})); got != "100 (90–120)" {
		t.Errorf("cellText = %q", got)
	}
	if !overlap(stats.Summarize([]float64{1, 3}), stats.Summarize([]float64{2, 5})) || overlap(stats.Summarize([]float64{1, 2}), stats.Summarize([]float64{3, 4})) {
		t.Error("overlap")
	}
}

func TestWriteTable(t *testing.T) {
	c := &Cell{ID: "http-c64", Workload: WHTTP, Label: "64 conns", Servers: []string{SGyre, SGnet, SNet}}
	c.Summary = summarize(WHTTP, append(append(runs(SGyre, 150, 150), runs(SGnet, 120, 120)...), runs(SNet, 100, 100)...))
	noisyCell := &Cell{ID: "http-c512", Workload: WHTTP, Label: "512 conns", Servers: []string{SGyre, SGnet, SNet}, Noisy: true}
	noisyCell.Summary = summarize(WHTTP, append(append(runs(SGyre, 100, 150), runs(SGnet, 120, 120)...), runs(SNet, 90, 110)...))
	var b bytes.Buffer
	WriteTable(&b, &Results{Cells: []*Cell{c, noisyCell}})
	out := b.String()
	for _, want := range []string{
		"| cell | metric | gyre (io_uring) | gnet v2 (epoll) | net (goroutine/conn) | gyre/net | gnet/net | spread |",
		"| 64 conns | requests/s | 150 | 120 | 100 | 1.50× | 1.20× | 0% |",
		"|  | requests / server CPU-s † | 75 | 60 | 50 | 1.50× | 1.20× | 0% |",
		// 100..150 around 125 is 40%, more than net's 20/100.
		"512 conns **(NOISY)** | requests/s | 125 (100–150) | 120 | 100 (90–110) | _1.25×_ | 1.20× | 40% gyre |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// Metrics no run reported (server_cpu here) are left out.
	if strings.Contains(out, "server CPU (cores)") {
		t.Errorf("row without values:\n%s", out)
	}
}

func TestRenderWritesChartsAndSummary(t *testing.T) {
	dir := t.TempDir()
	mk := func(id, wl, x, group string, vals map[string][]float64) *Cell {
		c := &Cell{ID: id, Workload: wl, Label: id, X: x, Group: group, Servers: AllServers, Summary: map[string]map[string]stats.Summary{}}
		for s, vs := range vals {
			c.Summary[s] = map[string]stats.Summary{}
			for _, m := range metrics[wl] {
				c.Summary[s][m.Key] = stats.Summarize(vs)
			}
		}
		return c
	}
	v := map[string][]float64{SGyre: {300, 320}, SGyreEpoll: {280, 290}, SGnet: {250, 260}, SNet: {100, 130}}
	res := &Results{Env: Env{Matrix: "quick"}, Cells: []*Cell{
		mk("http-c64", WHTTP, "64", "", v), mk("http-c512", WHTTP, "512", "", v),
		mk("idle-10000", WIdle, "10k", "", v),
		mk("latency-steady-50", WLatency, "50%", ShapeSteady, v),
	}}
	if err := Render(res, dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"summary.md", "http-throughput.png", "http-throughput.svg", "http-efficiency.png", "idle-rss.svg", "latency-steady.png"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "summary.md"))
	if !strings.Contains(string(b), "![HTTP fixed response: throughput](http-throughput.png)") || !strings.Contains(string(b), "| gyre-epoll/net |") {
		t.Errorf("summary does not link the charts:\n%s", b)
	}
}

// A server that exits at once must fail the harness with its log, not
// hang or report numbers.
func TestStartServerFailsLoudly(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "gyre-echo")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'io_uring is not permitted' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := &H{ctx: context.Background(), cfg: Config{CPUServer: 0, Port: 39100, PortSpan: 10, StartTimeout: 5 * time.Second},
		bins: map[string]string{"gyre-echo": fake}}
	_, err := h.startServer(SGyre, WHTTP, "http", filepath.Join(dir, "server.log"))
	if err == nil || !strings.Contains(err.Error(), "exited before listening") || !strings.Contains(err.Error(), "io_uring is not permitted") {
		t.Fatalf("err = %v", err)
	}
}

func TestConfigCheck(t *testing.T) {
	ok := Config{Runs: 1, Duration: time.Second, CPUServer: 0, CPULoad: 1, Port: 7600, PortSpan: 10, SpreadMax: 0.25,
		Workloads: []string{WHTTP}, Servers: []string{SGyre, SNet}}
	if err := ok.check(); err != nil {
		t.Fatal(err)
	}
	bad := []func(c *Config){
		func(c *Config) { c.CPULoad = 0 },
		func(c *Config) { c.Duration = 1500 * time.Millisecond },
		func(c *Config) { c.Servers = []string{SGyre} },
		func(c *Config) { c.Workloads = []string{"nope"} },
		func(c *Config) { c.Runs = 0 },
	}
	for i, f := range bad {
		c := ok
		f(&c)
		if c.check() == nil {
			t.Errorf("bad config %d accepted", i)
		}
	}
}
