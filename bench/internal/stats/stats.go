// Package stats summarizes repeated benchmark runs: median, min, max, the
// spread that decides whether a set of runs is too noisy to report, and
// ratios against a baseline.
package stats

import (
	"math"
	"slices"
)

// Summary is the summary of one metric over repeated runs.
type Summary struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// Summarize returns the median, min and max of vs, ignoring NaNs. With no
// values (or only NaNs) every field but N is NaN.
func Summarize(vs []float64) Summary {
	xs := make([]float64, 0, len(vs))
	for _, v := range vs {
		if !math.IsNaN(v) {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return Summary{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	slices.Sort(xs)
	n := len(xs)
	m := xs[n/2]
	if n%2 == 0 {
		m = (xs[n/2-1] + xs[n/2]) / 2
	}
	return Summary{Median: m, Min: xs[0], Max: xs[n-1], N: n}
}

// Spread is (max-min)/median: 0 for identical runs, 0.2 when the runs
// span 20% of their median. It is NaN when the median is 0 or unknown.
func (s Summary) Spread() float64 {
	if s.N == 0 || s.Median == 0 || math.IsNaN(s.Median) {
		return math.NaN()
	}
	return (s.Max - s.Min) / math.Abs(s.Median)
}

// Valid reports whether the summary holds at least one value.
func (s Summary) Valid() bool { return s.N > 0 && !math.IsNaN(s.Median) }

// Ratio is a/b, or NaN when b is 0 or either is NaN.
func Ratio(a, b float64) float64 {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return math.NaN()
	}
	return a / b
}

// TooNoisy reports whether the spread exceeds limit. A summary of fewer
// than two runs has no spread and is never too noisy; an unknown spread
// (median 0) is too noisy unless every run is identical.
func (s Summary) TooNoisy(limit float64) bool {
	if s.N < 2 {
		return false
	}
	sp := s.Spread()
	if math.IsNaN(sp) {
		return s.Max != s.Min
	}
	return sp > limit
}
