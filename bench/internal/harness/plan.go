package harness

import (
	"github.com/gyre-io/gyre/reactor"

	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/gyre-io/gyre/bench/internal/stats"
)

// Workloads, in the order they run.
const (
	WHTTP          = "http"           // wrk, fixed HTTP/1.1 response
	WEcho          = "echo"           // pipelined echo, gyre-bench echo
	WAccept        = "accept"         // connect, one request, close
	WIdle          = "idle"           // N idle connections, RSS per connection
	WLatency       = "latency"        // echo latency at a fraction of the peak
	WIngest        = "ingest"         // ingest-load against ingestd / ingest-net
	WIngestLatency = "ingest-latency" // ack latency at a fraction of the ingest peak
)

// AllWorkloads is every workload in run order.
var AllWorkloads = []string{WHTTP, WEcho, WAccept, WIdle, WLatency, WIngest, WIngestLatency}

// Servers. The echo/HTTP workloads compare gyre (gyre-echo on the engine
// -engine names, io_uring by default), gnet and net; gyre-epoll (gyre-echo
// on the epoll engine) joins them in the HTTP, echo and idle workloads
// (epollWorkloads); ingest compares ingestd (gyre) with
// bench/cmd/ingest-net (net).
const (
	SGyre      = "gyre"
	SGyreEpoll = "gyre-epoll"
	SGnet      = "gnet"
	SNet       = "net"
)

// AllServers is every server, in column order: gyre's first, net (the
// baseline of every ratio) last.
var AllServers = []string{SGyre, SGyreEpoll, SGnet, SNet}

// epollWorkloads are the workloads gyre-epoll is measured in: throughput
// and work per CPU-second (HTTP, echo) and memory (idle). The accept
// storm and the latency cells leave it out, to keep the quick matrix
// under 10 minutes (and the latency cells' offered load is set from the
// slowest server's peak, which another server would move).
var epollWorkloads = []string{WHTTP, WEcho, WIdle}

// Engines of gyre's servers, as gyre-echo -engine and ingestd --engine
// take them and as the servers log them ("engine=...").
const (
	EngineAuto    = "auto"
	EngineIOUring = "io_uring"
	EngineEpoll   = "epoll"
	EngineNet     = "net"
)

// ParseEngine normalizes an engine name as gyre does (reactor.ParseEngine,
// with its aliases "uring" and "iouring").
func ParseEngine(s string) (string, error) {
	if strings.TrimSpace(s) == "" {
		return "", fmt.Errorf("unknown engine %q (want auto, io_uring, epoll or net)", s)
	}
	e, err := reactor.ParseEngine(s)
	if err != nil {
		return "", err
	}
	return e.String(), nil
}

// Shapes of the latency workloads.
const (
	ShapeSteady = "steady"
	ShapeBursty = "bursty"
	ShapeSlow   = "slow" // steady, 10% slow clients
)

// Params describes one cell: what the load does.
type Params struct {
	Mode      string  `json:"mode,omitempty"` // http or echo (gyre-echo -mode)
	Conns     int     `json:"conns,omitempty"`
	Size      int     `json:"size,omitempty"`
	Window    int     `json:"window,omitempty"`
	Workers   int     `json:"workers,omitempty"`
	IdleConns int     `json:"idle_conns,omitempty"` // requested
	Load      float64 `json:"load,omitempty"`       // fraction of the peak
	Shape     string  `json:"shape,omitempty"`
	PeakCell  string  `json:"peak_cell,omitempty"` // cell whose medians give the peak
	Rate      float64 `json:"rate,omitempty"`      // messages/s, set once the peak is known
}

// Cell is one point of the matrix, measured on every server of the
// workload.
type Cell struct {
	ID       string   `json:"id"`
	Workload string   `json:"workload"`
	Label    string   `json:"label"`
	Group    string   `json:"group"` // chart series group (e.g. message size), "" for none
	X        string   `json:"x"`     // chart category (e.g. "64 conns")
	Params   Params   `json:"params"`
	Servers  []string `json:"servers"`
	Runs     []*Run   `json:"-"` // in results.json's runs list
	// Summary: server -> metric -> summary of the kept runs.
	Summary map[string]map[string]stats.Summary `json:"summary"`
	// Noisy: the gated spread of a checked metric stayed above the limit,
	// or a contended run had to be kept.
	Noisy    bool     `json:"noisy"`
	NoisyWhy []string `json:"noisy_why,omitempty"`
	// PeerNoisy: the gated figures of a server the gate does not judge
	// (gnet, see gatedServers) that spread above the limit: shown, and
	// marked in the table, but the cell is not noisy for them.
	PeerNoisy []string `json:"peer_noisy,omitempty"`
	// Remeasured: the first pass was noisy and the cell was measured
	// again. Pooled: the summary covers both passes' kept runs (always
	// so once re-measured, unless the second pass failed; false in
	// results written when a re-measured cell discarded its first pass).
	Remeasured bool   `json:"remeasured"`
	Pooled     bool   `json:"pooled"`
	Skipped    string `json:"skipped,omitempty"`
}

// Run is one measured run of one server in one cell.
type Run struct {
	Cell      string `json:"cell"`
	Workload  string `json:"workload"`
	Server    string `json:"server"`
	Run       int    `json:"run"`
	Attempt   int    `json:"attempt"`
	Kept      bool   `json:"kept"`
	Discarded string `json:"discarded,omitempty"` // why not kept
	Contended bool   `json:"contended"`
	Quiet     bool   `json:"quiet_before"`
	Started   string `json:"started"`

	WallSeconds      float64 `json:"wall_seconds"`
	ServerCPUSeconds float64 `json:"server_cpu_seconds"`
	LoadCPUSeconds   float64 `json:"load_cpu_seconds"`
	ServerCoreBusy   float64 `json:"server_core_busy_seconds"`
	ServerCoreOther  float64 `json:"server_core_other_seconds"`
	LoadCoreBusy     float64 `json:"load_core_busy_seconds"`
	LoadCoreOther    float64 `json:"load_core_other_seconds"`
	LoadAvg1         string  `json:"loadavg1"`

	// Window is what the CPU figures cover: the client's measured phase
	// (WindowPhase) or the load process's lifetime (WindowProcess).
	Window string `json:"cpu_window"`

	ServerRSS  int64    `json:"server_rss_bytes"`
	ServerFDs  int      `json:"server_fds"`
	ServerCmd  []string `json:"server_cmd"`
	LoadCmd    []string `json:"load_cmd"`
	ServerLog  string   `json:"server_log"`
	GoMaxProcs string   `json:"server_gomaxprocs,omitempty"` // as the server logged it
	// Engine: the engine one of gyre's servers named in its start-up
	// line (engine=...), "" for the others.
	Engine string `json:"engine,omitempty"`
	// Idle workload: the server's RLIMIT_NOFILE, and why fewer
	// connections than asked for were held ("" when all were).
	NoFileSoft int64  `json:"server_nofile_soft,omitempty"`
	NoFileHard int64  `json:"server_nofile_hard,omitempty"`
	IdleShort  string `json:"idle_short,omitempty"`

	Metrics map[string]float64 `json:"metrics"`
	Client  any                `json:"client"` // the load client's own report
}

// metric describes one reported figure of a workload.
type metric struct {
	Key    string
	Label  string
	Format string // printf verb for the value
	Scale  float64
	// Better: +1 higher is better, -1 lower is better, 0 informational
	// (the ratio column is still shown).
	Better int
	// Check: the noise gate applies to this metric: its spread over the
	// runs of gyre and of net (trimmed from stats.TrimFrom runs, see
	// gateRule) decides whether the cell is too noisy to report; gnet's
	// spread is shown and marked, not gated (see gatedServers).
	// The gated figures are those the comparison rests on: work per
	// server CPU-second and RSS per idle connection. Throughput is not
	// gated: with one load core it is bound by the load client, whose
	// closed-loop batching swings from run to run. Tail percentiles are
	// not gated: a 3-5 s run holds few samples beyond p99, and one
	// scheduling hiccup moves them. Nothing under a fixed offered load
	// (the latency cells) is gated: on a shared 2-vCPU VM the same work
	// cost gyre 0.34 and 0.69 cores of server CPU in two runs, and its
	// p50 doubled with it, with no steal time to tell. Those figures are
	// reported with their min–max and spread, and their ratios are in
	// italics when the ranges overlap, but they cannot decide whether
	// the harness's run is trustworthy.
	Check bool
}

// metrics lists, per workload, the figures in table order.
var metrics = map[string][]metric{
	WHTTP: {
		{"rps", "requests/s", "%.0f", 1, 1, false},
		{"rps_per_cpu", "requests / server CPU-s", "%.0f", 1, 1, true},
		{"p50_ms", "p50 latency (ms)", "%.3f", 1, -1, false},
		{"p99_ms", "p99 latency (ms)", "%.3f", 1, -1, false},
		{"server_cpu", "server CPU (cores)", "%.2f", 1, 0, false},
		{"load_cpu", "load client CPU (cores)", "%.2f", 1, 0, false},
		{"rss_mib", "server RSS (MiB)", "%.1f", 1, -1, false},
	},
	WEcho: {
		{"mps", "messages/s", "%.0f", 1, 1, false},
		{"mbps", "MB/s (one way)", "%.1f", 1, 1, false},
		{"mps_per_cpu", "messages / server CPU-s", "%.0f", 1, 1, true},
		{"p50_us", "p50 latency (µs)", "%.0f", 1, -1, false},
		{"p99_us", "p99 latency (µs)", "%.0f", 1, -1, false},
		{"server_cpu", "server CPU (cores)", "%.2f", 1, 0, false},
		{"load_cpu", "load client CPU (cores)", "%.2f", 1, 0, false},
		{"rss_mib", "server RSS (MiB)", "%.1f", 1, -1, false},
	},
	WAccept: {
		{"cps", "connections/s", "%.0f", 1, 1, false},
		{"cps_per_cpu", "connections / server CPU-s", "%.0f", 1, 1, true},
		{"p50_us", "p50 cycle (µs)", "%.0f", 1, -1, false},
		{"p99_us", "p99 cycle (µs)", "%.0f", 1, -1, false},
		{"server_cpu", "server CPU (cores)", "%.2f", 1, 0, false},
		{"load_cpu", "load client CPU (cores)", "%.2f", 1, 0, false},
	},
	WIdle: {
		{"conns", "connections held", "%d", 1, 0, false},
		{"rss_per_conn", "RSS per connection (bytes)", "%.0f", 1, -1, true},
		{"rss_mib", "server RSS (MiB)", "%.1f", 1, -1, false},
		{"base_rss_mib", "RSS before connecting (MiB)", "%.1f", 1, -1, false},
		{"fds", "server descriptors", "%d", 1, 0, false},
		{"idle_cpu_pct", "server CPU while idle (%)", "%.2f", 1, -1, false},
	},
	WLatency: latencyFigures("echoed messages/s", true),
	WIngest: {
		{"mps", "messages/s", "%.0f", 1, 1, false},
		{"mps_per_cpu", "messages / server CPU-s", "%.0f", 1, 1, true},
		{"p50_us", "p50 ack latency (µs)", "%.0f", 1, -1, false},
		{"p99_us", "p99 ack latency (µs)", "%.0f", 1, -1, false},
		{"server_cpu", "server CPU (cores)", "%.2f", 1, 0, false},
		{"load_cpu", "load client CPU (cores)", "%.2f", 1, 0, false},
		{"rss_mib", "server RSS (MiB)", "%.1f", 1, -1, false},
	},
	WIngestLatency: latencyFigures("acked messages/s", false),
}

// latencyFigures are the figures of a latency-under-load workload;
// achieved names what the client counts back, withLag adds the client's
// own send lag (the echo client measures it, ingest-load does not).
func latencyFigures(achieved string, withLag bool) []metric {
	ms := []metric{
		{"rate", "offered messages/s", "%.0f", 1, 0, false},
		{"achieved", achieved, "%.0f", 1, 0, false},
		{"p50_us", "p50 (µs)", "%.0f", 1, -1, false},
		{"p95_us", "p95 (µs)", "%.0f", 1, -1, false},
		{"p99_us", "p99 (µs)", "%.0f", 1, -1, false},
		{"p999_us", "p99.9 (µs)", "%.0f", 1, -1, false},
	}
	if withLag {
		ms = append(ms, metric{"lag_p99_us", "client send lag p99 (µs)", "%.0f", 1, 0, false})
	}
	return append(ms,
		metric{"server_cpu", "server CPU (cores)", "%.3f", 1, -1, false},
		metric{"load_cpu", "load client CPU (cores)", "%.2f", 1, 0, false},
		metric{"rss_mib", "server RSS (MiB)", "%.1f", 1, -1, false})
}

// Matrix is the set of cells for a preset.
type Matrix struct {
	HTTPConns   []int
	EchoSizes   []int
	EchoConns   []int
	EchoPairs   [][2]int // size, conns; used instead of the cross product when set
	EchoWindow  int
	AcceptWork  []int
	IdleConns   []int
	LatLoads    []float64
	LatShapes   []string
	LatConns    int
	LatSize     int
	IngestConns []int
	IngestWin   []int
	IngestSize  int
}

// Presets: quick is the subset `make bench` runs in under 10 minutes on 2
// cores; full is everything.
func preset(name string) (Matrix, error) {
	switch name {
	case "quick":
		return Matrix{
			HTTPConns:   []int{64, 512},
			EchoPairs:   [][2]int{{64, 64}, {16 << 10, 64}},
			EchoWindow:  16,
			AcceptWork:  []int{32},
			IdleConns:   []int{10000},
			LatLoads:    []float64{0.5},
			LatShapes:   []string{ShapeSteady},
			LatConns:    64,
			LatSize:     64,
			IngestConns: []int{64},
			IngestWin:   []int{256},
			IngestSize:  64,
		}, nil
	case "full":
		return Matrix{
			HTTPConns:   []int{16, 64, 512},
			EchoSizes:   []int{64, 1 << 10, 16 << 10},
			EchoConns:   []int{16, 64, 512},
			EchoWindow:  16,
			AcceptWork:  []int{32},
			IdleConns:   []int{10000, 20000},
			LatLoads:    []float64{0.25, 0.5, 0.75},
			LatShapes:   []string{ShapeSteady, ShapeBursty, ShapeSlow},
			LatConns:    64,
			LatSize:     64,
			IngestConns: []int{16, 64, 512},
			IngestWin:   []int{256, 1},
			IngestSize:  64,
		}, nil
	}
	return Matrix{}, fmt.Errorf("unknown matrix %q (want quick or full)", name)
}

func sizeLabel(n int) string {
	switch {
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// plan builds the cells of the chosen workloads.
func plan(m Matrix, workloads, servers []string) []*Cell {
	want := func(w string) bool { return slices.Contains(workloads, w) }
	// Servers run in the order -servers gives (rotated from run to run).
	var echoServers, ingestServers []string
	for _, s := range servers {
		if s != SGyreEpoll {
			echoServers = append(echoServers, s)
		}
		if s == SGyre || s == SNet {
			ingestServers = append(ingestServers, s)
		}
	}
	serversOf := func(workload string) []string {
		if slices.Contains(epollWorkloads, workload) {
			return servers
		}
		return echoServers
	}
	var cells []*Cell
	add := func(c *Cell) { cells = append(cells, c) }
	if want(WHTTP) {
		for _, n := range m.HTTPConns {
			add(&Cell{ID: fmt.Sprintf("http-c%d", n), Workload: WHTTP, Label: fmt.Sprintf("%d conns", n),
				X: fmt.Sprintf("%d", n), Params: Params{Mode: "http", Conns: n}, Servers: serversOf(WHTTP)})
		}
	}
	pairs := m.EchoPairs
	if pairs == nil {
		for _, s := range m.EchoSizes {
			for _, n := range m.EchoConns {
				pairs = append(pairs, [2]int{s, n})
			}
		}
	}
	peakEcho := fmt.Sprintf("echo-s%d-c%d", m.LatSize, m.LatConns)
	if want(WLatency) && !slices.ContainsFunc(pairs, func(p [2]int) bool { return p[0] == m.LatSize && p[1] == m.LatConns }) {
		pairs = append(pairs, [2]int{m.LatSize, m.LatConns}) // the latency workload needs this peak
	}
	if want(WEcho) || want(WLatency) {
		for _, p := range pairs {
			if !want(WEcho) && (p[0] != m.LatSize || p[1] != m.LatConns) {
				continue
			}
			add(&Cell{ID: fmt.Sprintf("echo-s%d-c%d", p[0], p[1]), Workload: WEcho,
				Label: fmt.Sprintf("%s, %d conns", sizeLabel(p[0]), p[1]), Group: sizeLabel(p[0]),
				X: fmt.Sprintf("%d", p[1]), Params: Params{Mode: "echo", Conns: p[1], Size: p[0], Window: m.EchoWindow},
				Servers: serversOf(WEcho)})
		}
	}
	if want(WAccept) {
		for _, w := range m.AcceptWork {
			add(&Cell{ID: fmt.Sprintf("accept-w%d", w), Workload: WAccept, Label: fmt.Sprintf("%d concurrent clients", w),
				X: fmt.Sprintf("%d", w), Params: Params{Mode: "http", Workers: w}, Servers: serversOf(WAccept)})
		}
	}
	if want(WIdle) {
		for _, n := range m.IdleConns {
			add(&Cell{ID: fmt.Sprintf("idle-%d", n), Workload: WIdle, Label: fmt.Sprintf("%d idle connections", n),
				X: fmt.Sprintf("%dk", n/1000), Params: Params{Mode: "echo", IdleConns: n}, Servers: serversOf(WIdle)})
		}
	}
	// latency adds a workload's cells at every load and shape.
	latency := func(workload string, p Params, servers []string) {
		for _, shape := range m.LatShapes {
			for _, l := range m.LatLoads {
				q := p
				q.Load, q.Shape = l, shape
				add(&Cell{ID: fmt.Sprintf("%s-%s-%02.0f", workload, shape, l*100), Workload: workload,
					Label: fmt.Sprintf("%s, %.0f%% of peak", shape, l*100), Group: shape, X: fmt.Sprintf("%.0f%%", l*100),
					Params: q, Servers: servers})
			}
		}
	}
	if want(WLatency) {
		// The window only bounds memory: the rate paces the client.
		latency(WLatency, Params{Mode: "echo", Conns: m.LatConns, Size: m.LatSize, Window: 1024, PeakCell: peakEcho}, serversOf(WLatency))
	}
	peakIngest := fmt.Sprintf("ingest-c%d-w%d", m.LatConns, 256)
	if (want(WIngest) || want(WIngestLatency)) && len(ingestServers) > 0 {
		type iw struct{ c, w int }
		var ingestCells []iw
		for _, w := range m.IngestWin {
			for _, c := range m.IngestConns {
				if w == 1 && c != 64 {
					continue // ack-by-ack clients: one connection count is enough
				}
				ingestCells = append(ingestCells, iw{c, w})
			}
		}
		if want(WIngestLatency) && !slices.Contains(ingestCells, iw{m.LatConns, 256}) {
			ingestCells = append(ingestCells, iw{m.LatConns, 256})
		}
		for _, x := range ingestCells {
			if !want(WIngest) && fmt.Sprintf("ingest-c%d-w%d", x.c, x.w) != peakIngest {
				continue
			}
			add(&Cell{ID: fmt.Sprintf("ingest-c%d-w%d", x.c, x.w), Workload: WIngest,
				Label: fmt.Sprintf("%d conns, window %d", x.c, x.w), Group: fmt.Sprintf("window %d", x.w), X: fmt.Sprintf("%d", x.c),
				Params: Params{Conns: x.c, Window: x.w, Size: m.IngestSize}, Servers: ingestServers})
		}
		if want(WIngestLatency) {
			latency(WIngestLatency, Params{Conns: m.LatConns, Size: m.IngestSize, Window: 256, PeakCell: peakIngest}, ingestServers)
		}
	}
	return cells
}

// filterCells keeps the cells whose ID matches one of the patterns
// (path.Match globs: "http-c64", "echo-*"), and the peak cells the kept
// latency cells take their offered load from. No patterns: all cells.
func filterCells(cells []*Cell, patterns []string) ([]*Cell, error) {
	if len(patterns) == 0 {
		return cells, nil
	}
	keep := map[string]bool{}
	for _, c := range cells {
		for _, p := range patterns {
			ok, err := path.Match(p, c.ID)
			if err != nil {
				return nil, fmt.Errorf("-cells %q: %w", p, err)
			}
			if ok {
				keep[c.ID] = true
				if c.Params.PeakCell != "" {
					keep[c.Params.PeakCell] = true
				}
			}
		}
	}
	var out []*Cell
	for _, c := range cells {
		if keep[c.ID] {
			out = append(out, c)
		}
	}
	return out, nil
}

// burst is the ON/OFF pattern of the bursty shape: the average rate is the
// target; while ON the rate is twice that.
const (
	burstOn  = 100 * time.Millisecond
	burstOff = 100 * time.Millisecond
	// slowFraction of the connections stop reading in the slow shape,
	// slowAfter the start of the run.
	slowFraction = 0.1
	slowAfter    = 200 * time.Millisecond
)
