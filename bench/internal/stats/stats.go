// Package stats summarizes repeated benchmark runs: median, min, max, the
// spread that decides whether a set of runs is too noisy to report, and
// ratios against a baseline.
package stats

import (
	"math"
	"slices"
)

// TrimFrom is the fewest values from which the noise gate trims: it
// leaves out the lowest and the highest value before measuring the
// spread. From 5 values, at least 3 remain, as many as one pass of the
// quick matrix gates untrimmed; with 3 or 4, trimming would leave too
// few to spread at all.
const TrimFrom = 5

// Summary is the summary of one metric over repeated runs.
type Summary struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
	// Trimmed: N >= TrimFrom, and TrimMin and TrimMax are the
	// second-lowest and the second-highest value, the range left once
	// the lowest and the highest are dropped. It is false under TrimFrom
	// values, and in results written before the gate trimmed.
	Trimmed bool    `json:"trimmed,omitempty"`
	TrimMin float64 `json:"trim_min,omitempty"`
	TrimMax float64 `json:"trim_max,omitempty"`
}

// Summarize returns the median, min and max of vs, and from TrimFrom
// values their range without the lowest and the highest, ignoring NaNs.
// With no values (or only NaNs) every field but N is NaN.
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
	s := Summary{Median: m, Min: xs[0], Max: xs[n-1], N: n}
	if n >= TrimFrom {
		s.Trimmed, s.TrimMin, s.TrimMax = true, xs[1], xs[n-2]
	}
	return s
}

// spread is (hi-lo)/|median|, NaN when the median is 0 or unknown.
func spread(lo, hi, median float64) float64 {
	if median == 0 || math.IsNaN(median) {
		return math.NaN()
	}
	return (hi - lo) / math.Abs(median)
}

// Spread is (max-min)/median: 0 for identical runs, 0.2 when the runs
// span 20% of their median. It is NaN when the median is 0 or unknown.
func (s Summary) Spread() float64 {
	if s.N == 0 {
		return math.NaN()
	}
	return spread(s.Min, s.Max, s.Median)
}

// TrimmedSpread is the spread the noise gate checks: from TrimFrom
// values, (TrimMax-TrimMin)/median, the spread without the lowest and
// the highest value (the median is still that of all values); under
// TrimFrom values (or for a summary without the trimmed range) it is
// the plain Spread.
//
// Trimming makes the gate tolerate one outlying run per server, one too
// low and one too high at most: on a shared VM one scheduling hiccup
// moves a run by 20-40% without moving the median of the others, and
// such a run says nothing about the figure. Values that split into two
// groups, each of two or more, keep both groups inside the trimmed
// range, so a bimodal figure still spreads as far as the groups lie
// apart.
func (s Summary) TrimmedSpread() float64 {
	if !s.Trimmed {
		return s.Spread()
	}
	return spread(s.TrimMin, s.TrimMax, s.Median)
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

// TooNoisy reports whether the trimmed spread (the plain spread under
// TrimFrom values) exceeds limit. A summary of fewer than two runs has
// no spread and is never too noisy; an unknown spread (median 0) is too
// noisy unless every value it covers is identical.
func (s Summary) TooNoisy(limit float64) bool {
	if s.N < 2 {
		return false
	}
	sp := s.TrimmedSpread()
	if math.IsNaN(sp) {
		if s.Trimmed {
			return s.TrimMax != s.TrimMin
		}
		return s.Max != s.Min
	}
	return sp > limit
}
