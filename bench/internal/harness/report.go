package harness

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/gyre-io/gyre/bench/internal/stats"
)

// workloadTitles head the markdown sections.
var workloadTitles = map[string]string{
	WHTTP:          "HTTP/1.1 fixed response (wrk -t1, keep-alive)",
	WEcho:          "Echo, pipelined (gyre-bench echo, window %d per connection)",
	WAccept:        "Accept storm (connect, one HTTP request, close)",
	WIdle:          "Idle connections (RSS per connection)",
	WLatency:       "Echo latency under load (64 B, 64 connections, open loop)",
	WIngest:        "Ingest over TCP (ingest-load, 64-byte payloads, sink discard)",
	WIngestLatency: "Ingest ack latency under load (64 connections, 64-byte payloads)",
}

// serverOrder is the column order: gyre's servers first, net (the
// baseline) last.
func serverOrder(servers []string) []string {
	var out []string
	for _, s := range AllServers {
		if slices.Contains(servers, s) {
			out = append(out, s)
		}
	}
	return out
}

// serverName is the column head; a gyre server's names the engine it
// ran on, as recorded in e (see engineLabel).
func serverName(e Env, workload, s string) string {
	ingest := workload == WIngest || workload == WIngestLatency
	switch {
	case ingest && s == SGyre:
		if eng := engineLabel(e, "ingestd", ""); eng != "" {
			return "gyre (ingestd, " + eng + ")"
		}
		return "gyre (ingestd)"
	case ingest && s == SNet:
		return "net (ingest-net)"
	case s == SGyre:
		return "gyre (" + engineLabel(e, SGyre, EngineIOUring) + ")"
	case s == SGyreEpoll:
		return "gyre (" + engineLabel(e, SGyreEpoll, EngineEpoll) + ")"
	case s == SGnet:
		return "gnet v2 (epoll)"
	case s == SNet:
		return "net (goroutine/conn)"
	}
	return s
}

// engineLabel is the engine a gyre server ran on: as it logged it, else
// the one asked for if that names an engine (not auto), else def
// (results from before gyre had engines: gyre was io_uring).
func engineLabel(e Env, key, def string) string {
	se, ok := e.Engines[key]
	switch {
	case !ok:
		return def
	case se.Logged != "":
		return se.Logged
	case se.Asked == EngineIOUring || se.Asked == EngineEpoll || se.Asked == EngineNet:
		return se.Asked
	}
	return def
}

// gatedText names the servers the gate judged.
func gatedText(e Env) string {
	if len(e.GatedServers) == 0 { // written before the gate judged some servers only
		return "every server"
	}
	return joinAnd(e.GatedServers)
}

// fmtVal formats a value of a metric compactly: 123456 -> 123.5k.
func fmtVal(m metric, v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	if m.Format == "%d" {
		return groupDigits(int64(math.Round(v)))
	}
	if m.Format == "%.0f" {
		a := math.Abs(v)
		switch {
		case a >= 10e6:
			return fmt.Sprintf("%.1fM", v/1e6)
		case a >= 1e6:
			return fmt.Sprintf("%.2fM", v/1e6)
		case a >= 100e3:
			return fmt.Sprintf("%.0fk", v/1e3)
		case a >= 10e3:
			return fmt.Sprintf("%.1fk", v/1e3)
		}
	}
	return fmt.Sprintf(m.Format, v)
}

// cellText is "median (min–max)", or just the median for one run.
func cellText(m metric, s stats.Summary) string {
	if !s.Valid() {
		return "–"
	}
	if s.N == 1 || s.Min == s.Max {
		return fmtVal(m, s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", fmtVal(m, s.Median), fmtVal(m, s.Min), fmtVal(m, s.Max))
}

// groupDigits writes 19974 as 19,974: counts that must be read exactly.
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// spreadOf is a summary's full spread, or with gated the spread the
// noise gate checks (trimmed from stats.TrimFrom runs); an unknown
// spread (median 0) is 0 when the values it covers are identical and
// infinite otherwise.
func spreadOf(s stats.Summary, gated bool) float64 {
	sp, lo, hi := s.Spread(), s.Min, s.Max
	if gated && s.Trimmed {
		sp, lo, hi = s.TrimmedSpread(), s.TrimMin, s.TrimMax
	}
	if math.IsNaN(sp) {
		if lo == hi {
			return 0
		}
		return math.Inf(1)
	}
	return sp
}

// maxSpread is the largest spread (gated or full, see spreadOf) of a
// metric over the servers of a cell, and the server it belongs to; ok
// is false when no server has two runs.
func maxSpread(c *Cell, key string, gated bool) (spread float64, srv string, ok bool) {
	for _, s := range serverOrder(c.Servers) {
		sum, have := c.Summary[s][key]
		if !have || sum.N < 2 {
			continue
		}
		if sp := spreadOf(sum, gated); !ok || sp > spread {
			spread, srv, ok = sp, s, true
		}
	}
	return spread, srv, ok
}

// trimmedIn reports whether the gate trimmed a metric for any server of
// a cell.
func trimmedIn(c *Cell, key string) bool {
	for _, s := range c.Servers {
		if c.Summary[s][key].Trimmed {
			return true
		}
	}
	return false
}

// spreadText is the spread column: the largest full spread of the row
// and whose it is; for a gated figure that the gate trimmed, then also
// the largest spread the gate checked ("gated").
func spreadText(c *Cell, m metric) string {
	sp, srv, ok := maxSpread(c, m.Key, false)
	if !ok {
		return "–"
	}
	txt := percentOf(sp, srv)
	if m.Check && trimmedIn(c, m.Key) {
		g, gsrv, _ := maxSpread(c, m.Key, true)
		txt += "; gated " + percentOf(g, gsrv)
	}
	return txt
}

// percentOf writes a spread as "12% net", "0%" or "∞ net".
func percentOf(sp float64, srv string) string {
	txt := fmt.Sprintf("%.0f%%", 100*sp)
	if math.IsInf(sp, 0) {
		txt = "∞"
	}
	if sp > 0 {
		txt += " " + srv
	}
	return txt
}

// cellLabel is the first column of a cell's rows: its label, how many
// idle connections were held when fewer than asked for (the notes say
// why), and whether it is noisy.
func cellLabel(c *Cell) string {
	label := c.Label
	if len(idleShort(c)) > 0 {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, s := range c.Servers {
			if n := c.Summary[s]["conns"]; n.Valid() {
				lo, hi = min(lo, n.Min), max(hi, n.Max)
			}
		}
		held := groupDigits(int64(lo))
		if hi != lo {
			held += "–" + groupDigits(int64(hi))
		}
		label += fmt.Sprintf(" (%s held: the servers' RLIMIT_NOFILE, see the notes)", held)
	}
	if c.Noisy {
		label += " **(NOISY)**"
	}
	return label
}

// idleShort lists, per server, why the kept runs of an idle cell held
// fewer connections than asked for.
func idleShort(c *Cell) []string {
	var why []string
	for _, r := range c.Runs {
		if w := r.Server + ": " + r.IdleShort; r.Kept && r.IdleShort != "" && !slices.Contains(why, w) {
			why = append(why, w)
		}
	}
	return why
}

// peerNoisy reports whether a server's gated figure spread over the
// limit although the gate did not judge that server (gnet): the table
// marks it "(noisy)". Results from before the gate judged only some
// servers (no Env.GatedServers) have none: their noisy cells failed.
func peerNoisy(e Env, srv string, m metric, s stats.Summary) bool {
	return m.Check && len(e.GatedServers) > 0 && !slices.Contains(e.GatedServers, srv) && s.TooNoisy(e.SpreadMax)
}

func ratioText(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", r)
}

// overlap reports whether two min–max ranges overlap: the difference of
// the medians is then within the run-to-run variation.
func overlap(a, b stats.Summary) bool {
	return a.Valid() && b.Valid() && a.Min <= b.Max && b.Min <= a.Max
}

// WriteTable writes the markdown tables of every workload.
func WriteTable(w io.Writer, res *Results) {
	byWorkload := map[string][]*Cell{}
	for _, c := range res.Cells {
		if c.Summary != nil {
			byWorkload[c.Workload] = append(byWorkload[c.Workload], c)
		}
	}
	for _, wl := range AllWorkloads {
		cells := byWorkload[wl]
		if len(cells) == 0 {
			continue
		}
		title := workloadTitles[wl]
		if wl == WEcho {
			title = fmt.Sprintf(title, cells[0].Params.Window)
		}
		fmt.Fprintf(w, "### %s\n\n", title)
		srvs := serverOrder(cells[0].Servers)
		head := []string{"cell", "metric"}
		align := []string{"---", "---"}
		for _, s := range srvs {
			head = append(head, serverName(res.Env, wl, s))
			align = append(align, "---:")
		}
		for _, s := range srvs {
			if s != SNet {
				head = append(head, s+"/net")
				align = append(align, "---:")
			}
		}
		head = append(head, "spread")
		align = append(align, "---:")
		fmt.Fprintf(w, "| %s |\n|%s|\n", strings.Join(head, " | "), strings.Join(align, "|"))
		for _, c := range cells {
			label := cellLabel(c)
			first := true
			for _, m := range metrics[wl] {
				name := m.Label
				if m.Check {
					name += " †"
				}
				row := []string{"", name}
				if first {
					row[0] = label
				}
				present := false
				for _, s := range srvs {
					sum, ok := c.Summary[s][m.Key]
					if ok {
						present = true
					}
					txt := cellText(m, sum)
					if ok && peerNoisy(res.Env, s, m, sum) {
						txt += " (noisy)"
					}
					row = append(row, txt)
				}
				if !present {
					continue
				}
				first = false
				base := c.Summary[SNet][m.Key]
				for _, s := range srvs {
					if s != SNet {
						sum := c.Summary[s][m.Key]
						txt := ratioText(stats.Ratio(sum.Median, base.Median))
						if txt != "–" && overlap(sum, base) && sum.Median != base.Median {
							txt = "_" + txt + "_" // within run-to-run variation
						}
						row = append(row, txt)
					}
				}
				row = append(row, spreadText(c, m))
				fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
			}
		}
		fmt.Fprintln(w)
	}
}

// WriteEnv writes the environment block.
func WriteEnv(w io.Writer, res *Results) {
	e := res.Env
	fmt.Fprintf(w, "- command: `%s`", e.Command)
	if e.Invocation != "" {
		fmt.Fprintf(w, " (run by `%s`)", e.Invocation)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "- machine: %s, %d online CPUs; kernel %s\n", e.CPUModel, e.CPUsOnline, e.Kernel)
	fmt.Fprintf(w, "- Go %s (harness); GOMAXPROCS: servers %s, load clients %s; GOFLAGS %q; %s\n", e.GoVersion, e.ServerGOMAX, e.LoadGOMAX, e.GoFlags, e.Wrk)
	names := make([]string, 0, len(e.Binaries))
	for n := range e.Binaries {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(w, "  - `%s`: %s\n", n, e.Binaries[n])
	}
	fmt.Fprintf(w, "- pinning: servers on CPU %d, load (wrk -t1, gyre-bench clients, ingest-load) on CPU %d; gyre with 1 reactor, gnet with 1 event loop\n", e.CPUServer, e.CPULoad)
	if len(e.Engines) > 0 {
		keys := make([]string, 0, len(e.Engines))
		for k := range e.Engines {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b string) int { return engineRank(a) - engineRank(b) })
		var parts []string
		for _, k := range keys {
			se := e.Engines[k]
			logged := se.Logged
			if logged == "" {
				logged = "not logged"
			}
			parts = append(parts, fmt.Sprintf("%s %s (asked: %s)", k, logged, se.Asked))
		}
		fmt.Fprintf(w, "- gyre's engines, as each server named it on its start-up line: %s\n", strings.Join(parts, "; "))
	}
	fmt.Fprintf(w, "- runs: %d per server and cell, alternating servers, each on a fresh server; %s warm-up, %s measured\n", e.Runs, e.Warmup, e.Duration)
	gate := e.NoiseGate
	if gate == "" { // written before the gate trimmed and pooled
		gate = fmt.Sprintf("a cell whose gated figure (†) spreads over %s ((max−min)/median over one server's runs), or that kept a contended run, is measured again once (its first runs discarded), then fails the harness", pct(e.SpreadMax))
	}
	fmt.Fprintf(w, "- noise: a run is repeated when either core spent over %.0f%% of it on other work; %s\n", e.ContendedPct, gate)
	if e.Runs < 3 {
		fmt.Fprintf(w, "- **%d run(s) per server: too few for the spread to mean much (1 run: none at all); these figures are a functional check, not results**\n", e.Runs)
	}
	fmt.Fprintf(w, "- limits: RLIMIT_NOFILE %s (soft/hard), ip_local_port_range %s, tcp_tw_reuse %s, somaxconn %s, client source addresses %s\n",
		e.NoFile, e.PortRange, e.TWReuse, e.Somaxconn, strings.Join(e.SrcIPs, " "))
	fmt.Fprintf(w, "- tree: %s with %d uncommitted paths; started %s (load average %s); took %.0fs, %.0fs of it waiting out other load\n",
		e.GitRev, e.GitDirty, res.Started, e.LoadAvgBefore, res.WallSeconds, res.NoiseWaitSeconds)
}

// WriteNotes lists what a reader must know about individual runs.
func WriteNotes(w io.Writer, res *Results) {
	var notes []string
	nContended, repeated := 0, 0
	windows := map[string][]string{}
	for _, r := range res.Runs {
		if r.Kept && r.Contended {
			nContended++
		}
		if !r.Kept && strings.HasPrefix(r.Discarded, "contended") {
			repeated++
		}
		if r.Kept && r.Window != "" && !slices.Contains(windows[r.Window], r.Workload) {
			windows[r.Window] = append(windows[r.Window], r.Workload)
		}
	}
	notes = append(notes, fmt.Sprintf("runs repeated because other work used the cores: %d; contended runs kept (retries or budget used up, so the cell failed unless -allow-noisy): %d", repeated, nContended))
	for _, win := range []string{WindowPhase, WindowProcess} {
		if wls := windows[win]; len(wls) > 0 {
			notes = append(notes, fmt.Sprintf("CPU window of %s: %s", strings.Join(wls, ", "), win))
		}
	}
	for _, c := range res.Cells {
		switch {
		case c.Pooled:
			notes = append(notes, fmt.Sprintf("%s was measured again, its first pass too noisy; its figures pool both passes (%s)", c.ID, runsPerServer(c)))
		case c.Remeasured:
			notes = append(notes, fmt.Sprintf("%s was re-measured: the first set of runs spread too much", c.ID))
		}
		if c.Noisy {
			notes = append(notes, fmt.Sprintf("%s is NOISY: %s", c.ID, strings.Join(c.NoisyWhy, "; ")))
		}
		if len(c.PeerNoisy) > 0 {
			notes = append(notes, fmt.Sprintf("%s: over the gate's limit, marked (noisy), not gated (the gate judges %s): %s",
				c.ID, gatedText(res.Env), strings.Join(c.PeerNoisy, "; ")))
		}
		for _, why := range idleShort(c) {
			notes = append(notes, fmt.Sprintf("%s: %d connections asked for; %s", c.ID, c.Params.IdleConns, why))
		}
		if c.Workload == WLatency || c.Workload == WIngestLatency {
			for _, s := range serverOrder(c.Servers) {
				a, r := c.Summary[s]["achieved"], c.Summary[s]["rate"]
				expect := r.Median
				if c.Params.Shape == ShapeSlow {
					expect *= 1 - slowFraction
				}
				if a.Valid() && expect > 0 && a.Median < 0.9*expect {
					notes = append(notes, fmt.Sprintf("%s on %s: only %.0f of %.0f messages/s answered: the offered load was not sustained, so its latency includes queueing",
						c.ID, s, a.Median, expect))
				}
			}
		}
	}
	for _, n := range notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
}

// engineRank orders the Env.Engines keys: gyre, gyre-epoll, ingestd.
func engineRank(k string) int {
	switch k {
	case SGyre:
		return 0
	case SGyreEpoll:
		return 1
	}
	return 2
}

// writeLegend explains the table's columns and the noise gate.
func writeLegend(w io.Writer, res *Results) {
	fmt.Fprintln(w, "Each cell: median (min–max) of the kept runs per server; X/net is the ratio of the medians to the net package's,")
	fmt.Fprintln(w, "in _italics_ when the two min–max ranges overlap (the difference is within the run-to-run variation).")
	fmt.Fprintln(w, "spread: the largest (max−min)/median of the row over the servers, and whose it is; † marks the gated figures,")
	switch {
	case res.Env.NoiseGate == "": // written before the gate trimmed and pooled
		fmt.Fprintf(w, "whose spread may not exceed %s.\n", pct(res.Env.SpreadMax))
		return
	case len(res.Env.GatedServers) == 0: // written before the gate judged only gyre and net
		fmt.Fprintf(w, "whose spread may not exceed %s for any server; from %d runs of a server (a cell measured twice pools both passes) the gate\n", pct(res.Env.SpreadMax), stats.TrimFrom)
	default:
		fmt.Fprintf(w, "whose spread may not exceed %s for %s (the comparison: every ratio is to net); another server's (gnet's) is shown,\n",
			pct(res.Env.SpreadMax), joinAnd(res.Env.GatedServers))
		fmt.Fprintln(w, "its value marked (noisy) when over the limit, but does not fail the cell. The latency-under-load tables have no gated figure")
		fmt.Fprintln(w, "(at a fixed offered load a server's CPU and p50 can double from run to run on a shared VM): only a contended run fails them.")
		fmt.Fprintf(w, "From %d runs of a server (a cell measured twice pools both passes) the gate\n", stats.TrimFrom)
	}
	fmt.Fprintln(w, "leaves its lowest and its highest run out of max−min, and the row also shows \"gated\": the largest spread the gate checked.")
	fmt.Fprintln(w, "The min–max shown is still that of all kept runs: the gate lets one outlying run per server pass (a scheduling hiccup on a")
	fmt.Fprintln(w, "shared VM), not runs that split into two groups.")
}

// Render writes summary.md and the charts into dir.
func Render(res *Results, dir string) error {
	charts, err := WriteCharts(res, dir)
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "summary.md"))
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "## gyre-bench, %s matrix, %s\n\n", res.Env.Matrix, res.Started)
	WriteEnv(f, res)
	fmt.Fprintln(f)
	writeLegend(f, res)
	fmt.Fprintln(f, "CPU figures are the server process's utime+stime (all threads) from /proc/PID/stat over the measured window; RSS is VmRSS at its end.")
	fmt.Fprintln(f)
	WriteTable(f, res)
	fmt.Fprintln(f, "Notes:")
	fmt.Fprintln(f)
	WriteNotes(f, res)
	fmt.Fprintln(f)
	if len(charts) > 0 {
		fmt.Fprintln(f, "Charts (PNG, and SVG beside each):")
		fmt.Fprintln(f)
		for _, c := range charts {
			fmt.Fprintf(f, "![%s](%s)\n", c.title, c.file+".png")
		}
	}
	return f.Close()
}

// runsPerServer counts the kept runs of a cell per server: "6 kept runs
// per server", or "gyre 6, gnet 5, net 6 kept runs" when they differ (a
// contended run of the first pass left out of the pool).
func runsPerServer(c *Cell) string {
	n := map[string]int{}
	for _, r := range c.Runs {
		if r.Kept {
			n[r.Server]++
		}
	}
	srvs := serverOrder(c.Servers)
	same := true
	parts := make([]string, 0, len(srvs))
	for _, s := range srvs {
		same = same && n[s] == n[srvs[0]]
		parts = append(parts, fmt.Sprintf("%s %d", s, n[s]))
	}
	if same && len(srvs) > 0 {
		return fmt.Sprintf("%d kept runs per server", n[srvs[0]])
	}
	return strings.Join(parts, ", ") + " kept runs"
}
