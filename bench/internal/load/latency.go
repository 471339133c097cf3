package load

import "github.com/HdrHistogram/hdrhistogram-go"

// Latency is a latency distribution in microseconds.
type Latency struct {
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
	Count int64   `json:"count"`
}

// Histograms count microseconds from 1 µs to 60 s.
const (
	histMinUS = 1
	histMaxUS = 60_000_000
)

// newHist returns a histogram; 3 significant digits cost ~140 KB each, so
// many connections get 2.
func newHist(conns int) *hdrhistogram.Histogram {
	digits := 3
	if conns > 128 {
		digits = 2
	}
	return hdrhistogram.New(histMinUS, histMaxUS, digits)
}

func recordUS(h *hdrhistogram.Histogram, ns int64) {
	us := ns / 1000
	if us < histMinUS {
		us = histMinUS
	}
	if us > histMaxUS {
		us = histMaxUS
	}
	_ = h.RecordValue(us)
}

func summarizeHist(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		P50:   float64(h.ValueAtQuantile(50)),
		P95:   float64(h.ValueAtQuantile(95)),
		P99:   float64(h.ValueAtQuantile(99)),
		P999:  float64(h.ValueAtQuantile(99.9)),
		Max:   float64(h.Max()),
		Mean:  h.Mean(),
		Count: h.TotalCount(),
	}
}
