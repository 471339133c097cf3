package harness

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gyre-io/gyre/bench/internal/stats"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

var serverColor = map[string]color.RGBA{
	SGyre:      {R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // blue
	SGyreEpoll: {R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, // green
	SGnet:      {R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, // orange
	SNet:       {R: 0x55, G: 0x55, B: 0x55, A: 0xff}, // grey
}

var serverGlyph = map[string]draw.GlyphDrawer{
	SGyre: draw.CircleGlyph{}, SGyreEpoll: draw.RingGlyph{}, SGnet: draw.TriangleGlyph{}, SNet: draw.SquareGlyph{},
}

// chartSpec is one throughput-style chart: a metric by cell.
type chartSpec struct {
	workload, metric, file, title, ylabel, xlabel string
	log                                           bool
}

var chartSpecs = []chartSpec{
	{WHTTP, "rps", "http-throughput", "HTTP fixed response: throughput", "requests/s", "connections", false},
	{WHTTP, "rps_per_cpu", "http-efficiency", "HTTP fixed response: CPU efficiency", "requests per server CPU-second", "connections", false},
	{WEcho, "mps", "echo-throughput", "Echo: throughput", "messages/s", "connections", false},
	{WEcho, "mps_per_cpu", "echo-efficiency", "Echo: CPU efficiency", "messages per server CPU-second", "connections", false},
	{WAccept, "cps", "accept-throughput", "Accept storm: connections/s", "connections/s", "concurrent clients", false},
	{WAccept, "cps_per_cpu", "accept-efficiency", "Accept storm: CPU efficiency", "connections per server CPU-second", "concurrent clients", false},
	{WIdle, "rss_per_conn", "idle-rss", "Idle connections: server RSS per connection", "bytes per connection (log)", "idle connections", true},
	{WIngest, "mps", "ingest-throughput", "Ingest (TCP): throughput", "messages/s", "connections", false},
	{WIngest, "mps_per_cpu", "ingest-efficiency", "Ingest (TCP): CPU efficiency", "messages per server CPU-second", "connections", false},
}

type chartFile struct{ file, title string }

// WriteCharts draws every chart the results allow, as PNG and SVG.
func WriteCharts(res *Results, dir string) ([]chartFile, error) {
	var out []chartFile
	for _, sp := range chartSpecs {
		// One chart per group (message size, window): lines join cells of
		// the same group only.
		order, groups := cellGroups(res, sp.workload)
		for _, g := range order {
			sg := sp
			if g != "" {
				sg.file += "-" + slug(g)
				sg.title += ", " + g
			}
			p, err := metricChart(res.Env, sg, groups[g])
			if err != nil {
				return nil, fmt.Errorf("chart %s: %w", sg.file, err)
			}
			if err := save(p, filepath.Join(dir, sg.file)); err != nil {
				return nil, err
			}
			out = append(out, chartFile{sg.file, sg.title})
		}
	}
	for _, wl := range []string{WLatency, WIngestLatency} {
		order, groups := cellGroups(res, wl)
		for _, g := range order {
			file := wl + "-" + g
			title := fmt.Sprintf("%s latency, %s arrivals", map[string]string{WLatency: "Echo", WIngestLatency: "Ingest ack"}[wl], g)
			if g == ShapeSlow {
				title = fmt.Sprintf("%s latency, steady, 10%% slow clients", map[string]string{WLatency: "Echo", WIngestLatency: "Ingest ack"}[wl])
			}
			p, err := latencyChart(res.Env, title, groups[g])
			if err != nil {
				return nil, fmt.Errorf("chart %s: %w", file, err)
			}
			if err := save(p, filepath.Join(dir, file)); err != nil {
				return nil, err
			}
			out = append(out, chartFile{file, title})
		}
	}
	return out, nil
}

// cellGroups returns the measured cells of a workload by group, and the
// groups in the order they first appear.
func cellGroups(res *Results, workload string) ([]string, map[string][]*Cell) {
	groups := map[string][]*Cell{}
	var order []string
	for _, c := range res.Cells {
		if c.Workload == workload && c.Summary != nil {
			if _, ok := groups[c.Group]; !ok {
				order = append(order, c.Group)
			}
			groups[c.Group] = append(groups[c.Group], c)
		}
	}
	return order, groups
}

// serverOffset shifts server k of n a little along x, so that the error
// bars of servers with close values do not hide each other.
func serverOffset(k, n int) float64 { return (float64(k) - float64(n-1)/2) * 0.08 }

// seriesRange is one server's medians with their min–max ranges.
type seriesRange struct {
	pts    plotter.XYs
	errs   plotter.YErrors
	lo, hi float64 // lowest min, highest max
}

func (r *seriesRange) add(x float64, s stats.Summary) {
	if len(r.pts) == 0 {
		r.lo, r.hi = s.Min, s.Max
	}
	r.pts = append(r.pts, plotter.XY{X: x, Y: s.Median})
	r.errs = append(r.errs, struct{ Low, High float64 }{s.Median - s.Min, s.Max - s.Median})
	r.lo, r.hi = min(r.lo, s.Min), max(r.hi, s.Max)
}

// addRangeSeries draws one server's medians joined by a line, with
// min–max error bars, and adds it to the legend.
func addRangeSeries(p *plot.Plot, e Env, workload, srv string, r seriesRange) error {
	pts, errs := r.pts, r.errs
	line, points, err := plotter.NewLinePoints(pts)
	if err != nil {
		return err
	}
	col := serverColor[srv]
	line.Color, line.Width = col, vg.Points(1.5)
	points.Color, points.Shape, points.Radius = col, serverGlyph[srv], vg.Points(3.5)
	if len(pts) == 1 {
		line.Width = 0
	}
	eb, err := plotter.NewYErrorBars(struct {
		plotter.XYs
		plotter.YErrors
	}{pts, errs})
	if err != nil {
		return err
	}
	eb.Color, eb.CapWidth = col, vg.Points(6)
	p.Add(line, points, eb)
	p.Legend.Add(serverName(e, workload, srv), line, points)
	return nil
}

// logY puts the y axis on a log scale from the decade below lo to the
// decade above hi*headroom (room for the legend).
func logY(p *plot.Plot, lo, hi, headroom float64) {
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi*headroom)))
}

func save(p *plot.Plot, base string) error {
	for _, ext := range []string{".png", ".svg"} {
		if err := p.Save(18*vg.Centimeter, 11*vg.Centimeter, base+ext); err != nil {
			return fmt.Errorf("saving %s%s: %w", base, ext, err)
		}
	}
	return nil
}

// humanTicks labels linear ticks compactly (1.5M, 250k).
type humanTicks struct{}

func (humanTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label == "" {
			continue
		}
		v := ts[i].Value
		switch a := math.Abs(v); {
		case a >= 1e6:
			ts[i].Label = strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
		case a >= 1e3:
			ts[i].Label = strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
		}
	}
	return ts
}

// slug makes a file name part: "16 KiB" -> "16kib".
func slug(s string) string {
	return strings.ToLower(strings.NewReplacer(" ", "", "/", "-", "%", "").Replace(s))
}

// metricChart: x = the cells (categories), one line per server with
// min–max error bars, y from 0 (or log).
func metricChart(e Env, sp chartSpec, cells []*Cell) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = sp.title
	p.Y.Label.Text = sp.ylabel
	p.X.Label.Text = sp.xlabel
	p.Legend.Top = true
	var ticks []plot.Tick
	for i, c := range cells {
		ticks = append(ticks, plot.Tick{Value: float64(i), Label: c.X})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.X.Min, p.X.Max = -0.5, float64(len(cells))-0.5
	srvs := serverOrder(cells[0].Servers)
	lo, hi := math.Inf(1), 0.0
	for k, s := range srvs {
		var r seriesRange
		for i, c := range cells {
			sum, ok := c.Summary[s][sp.metric]
			if ok && sum.Valid() {
				r.add(float64(i)+serverOffset(k, len(srvs)), sum)
			}
		}
		if len(r.pts) == 0 {
			continue
		}
		lo, hi = min(lo, r.lo), max(hi, r.hi)
		if err := addRangeSeries(p, e, cells[0].Workload, s, r); err != nil {
			return nil, err
		}
	}
	if sp.log {
		logY(p, lo, hi, 3)
	} else {
		p.Y.Min, p.Y.Max = 0, hi*1.35 // room for the legend
		p.Y.Tick.Marker = humanTicks{}
	}
	p.Add(plotter.NewGrid())
	return p, nil
}

var percentileDash = map[string][]vg.Length{
	"p50_us":  nil,
	"p99_us":  {vg.Points(6), vg.Points(3)},
	"p999_us": {vg.Points(2), vg.Points(2)},
}

// latencyChart: x = load (categories), log y, one line per server and
// percentile (p50 solid, p99 dashed, p99.9 dotted). With one load level,
// x = the percentiles instead, one line per server with min–max bars.
func latencyChart(e Env, title string, cells []*Cell) (*plot.Plot, error) {
	if len(cells) == 1 {
		return percentileChart(e, title, cells[0])
	}
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = "latency, µs (log)"
	p.X.Label.Text = "offered load, % of the slowest server's peak"
	p.Legend.Top = true
	p.Legend.Left = true
	var ticks []plot.Tick
	for i, c := range cells {
		ticks = append(ticks, plot.Tick{Value: float64(i), Label: fmt.Sprintf("%s\n%.0f/s", c.X, c.Params.Rate)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.X.Min, p.X.Max = -0.5, float64(len(cells))-0.5
	lo, hi := math.Inf(1), 0.0
	srvs := serverOrder(cells[0].Servers)
	for k, s := range srvs {
		off := serverOffset(k, len(srvs))
		for _, pc := range []struct{ key, name string }{{"p50_us", "p50"}, {"p99_us", "p99"}, {"p999_us", "p99.9"}} {
			var pts plotter.XYs
			for i, c := range cells {
				sum, ok := c.Summary[s][pc.key]
				if !ok || !sum.Valid() || sum.Median <= 0 {
					continue
				}
				pts = append(pts, plotter.XY{X: float64(i) + off, Y: sum.Median})
				lo, hi = min(lo, sum.Median), max(hi, sum.Median)
			}
			if len(pts) == 0 {
				continue
			}
			line, points, err := plotter.NewLinePoints(pts)
			if err != nil {
				return nil, err
			}
			col := serverColor[s]
			line.Color, line.Width, line.Dashes = col, vg.Points(1.3), percentileDash[pc.key]
			if len(pts) == 1 {
				line.Width = 0
			}
			points.Color, points.Shape, points.Radius = col, serverGlyph[s], vg.Points(3)
			p.Add(line, points)
			p.Legend.Add(fmt.Sprintf("%s %s", s, pc.name), line, points)
		}
	}
	if hi == 0 {
		return nil, fmt.Errorf("no latency values")
	}
	logY(p, lo, hi, 8)
	p.Add(plotter.NewGrid())
	return p, nil
}

// percentileChart draws the latency percentiles of one cell.
func percentileChart(e Env, title string, c *Cell) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s, %s of the slowest server's peak (%.0f msg/s)", title, c.X, c.Params.Rate)
	p.Y.Label.Text = "latency, µs (log)"
	p.X.Label.Text = "percentile"
	p.Legend.Top = true
	p.Legend.Left = true
	pcs := []struct{ key, name string }{{"p50_us", "p50"}, {"p95_us", "p95"}, {"p99_us", "p99"}, {"p999_us", "p99.9"}}
	var ticks []plot.Tick
	for i, pc := range pcs {
		ticks = append(ticks, plot.Tick{Value: float64(i), Label: pc.name})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.X.Min, p.X.Max = -0.5, float64(len(pcs))-0.5
	lo, hi := math.Inf(1), 0.0
	srvs := serverOrder(c.Servers)
	for k, s := range srvs {
		var r seriesRange
		for i, pc := range pcs {
			sum, ok := c.Summary[s][pc.key]
			if ok && sum.Valid() && sum.Min > 0 {
				r.add(float64(i)+serverOffset(k, len(srvs)), sum)
			}
		}
		if len(r.pts) == 0 {
			continue
		}
		lo, hi = min(lo, r.lo), max(hi, r.hi)
		if err := addRangeSeries(p, e, c.Workload, s, r); err != nil {
			return nil, err
		}
	}
	if hi == 0 {
		return nil, fmt.Errorf("no latency values")
	}
	logY(p, lo, hi, 3)
	p.Add(plotter.NewGrid())
	return p, nil
}
