package stats

import (
	"math"
	"testing"
)

func TestSummarize(t *testing.T) {
	cases := []struct {
		in            []float64
		med, min, max float64
		n             int
	}{
		{[]float64{3, 1, 2}, 2, 1, 3, 3},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4, 4},
		{[]float64{5}, 5, 5, 5, 1},
		{[]float64{math.NaN(), 7, 9}, 8, 7, 9, 2},
	}
	for _, c := range cases {
		s := Summarize(c.in)
		if s.Median != c.med || s.Min != c.min || s.Max != c.max || s.N != c.n {
			t.Errorf("Summarize(%v) = %+v, want median %v min %v max %v n %d", c.in, s, c.med, c.min, c.max, c.n)
		}
	}
	if s := Summarize(nil); s.Valid() || !math.IsNaN(s.Median) {
		t.Errorf("Summarize(nil) = %+v, want invalid", s)
	}
}

func TestSummarizeDoesNotReorderInput(t *testing.T) {
	in := []float64{3, 1, 2}
	Summarize(in)
	if in[0] != 3 || in[1] != 1 || in[2] != 2 {
		t.Fatalf("input reordered: %v", in)
	}
}

func TestSpreadAndNoise(t *testing.T) {
	s := Summarize([]float64{90, 100, 110})
	if got := s.Spread(); math.Abs(got-0.2) > 1e-12 {
		t.Fatalf("spread = %v, want 0.2", got)
	}
	if s.TooNoisy(0.25) {
		t.Error("0.2 spread reported too noisy at limit 0.25")
	}
	if !s.TooNoisy(0.1) {
		t.Error("0.2 spread not too noisy at limit 0.1")
	}
	if Summarize([]float64{1}).TooNoisy(0) {
		t.Error("a single run cannot be noisy")
	}
	if !Summarize([]float64{-1, 0, 1}).TooNoisy(1) {
		t.Error("median 0 with differing runs must be too noisy")
	}
	if Summarize([]float64{0, 0, 0}).TooNoisy(0.1) {
		t.Error("identical zeros are not noisy")
	}
}

func TestRatio(t *testing.T) {
	if Ratio(3, 2) != 1.5 {
		t.Error("Ratio(3,2)")
	}
	if !math.IsNaN(Ratio(1, 0)) || !math.IsNaN(Ratio(math.NaN(), 1)) {
		t.Error("Ratio with 0 or NaN must be NaN")
	}
}

// One outlying run among six (a scheduling hiccup) is left out of the
// trimmed spread, so the figure passes though its full range is wide.
func TestTrimmedSpreadToleratesOneOutlier(t *testing.T) {
	s := Summarize([]float64{1.20, 0.80, 1.25, 1.22, 1.18, 1.24})
	if !s.Trimmed || s.TrimMin != 1.18 || s.TrimMax != 1.24 || s.Min != 0.80 || s.Max != 1.25 {
		t.Fatalf("%+v: want trimmed range 1.18..1.24 within 0.80..1.25", s)
	}
	if got, want := s.TrimmedSpread(), 0.06/1.21; math.Abs(got-want) > 1e-12 {
		t.Errorf("trimmed spread = %v, want %v", got, want)
	}
	if s.Spread() <= 0.25 {
		t.Errorf("full spread %v: the test wants it over the limit", s.Spread())
	}
	if s.TooNoisy(0.25) {
		t.Error("one outlier among 6 runs made the figure too noisy")
	}
	// One outlier at each end is tolerated too.
	if Summarize([]float64{0.7, 1.0, 1.02, 0.98, 1.01, 1.5}).TooNoisy(0.25) {
		t.Error("one low and one high outlier among 6 runs made the figure too noisy")
	}
}

// Runs that split into two groups, three on each mode, keep both modes
// inside the trimmed range: the figure stays too noisy.
func TestTrimmedSpreadFailsBimodal(t *testing.T) {
	s := Summarize([]float64{1.0, 1.4, 1.01, 1.39, 0.99, 1.41})
	if s.TrimMin != 1.0 || s.TrimMax != 1.4 {
		t.Fatalf("%+v: want trimmed range 1.0..1.4", s)
	}
	if got, want := s.TrimmedSpread(), 0.4/1.2; math.Abs(got-want) > 1e-12 {
		t.Errorf("trimmed spread = %v, want %v", got, want)
	}
	if !s.TooNoisy(0.25) {
		t.Error("bimodal 3+3 runs passed the gate")
	}
	// Four on one mode and two on the other: still two groups.
	if !Summarize([]float64{1.0, 1.01, 0.99, 1.0, 1.4, 1.41}).TooNoisy(0.25) {
		t.Error("bimodal 4+2 runs passed the gate")
	}
}

// Under TrimFrom values nothing is dropped: the gate is the plain spread.
func TestTrimmedSpreadFallsBackUnderFive(t *testing.T) {
	for _, vs := range [][]float64{{1.0, 1.4, 1.2}, {1.0, 1.4, 1.2, 1.21}} {
		s := Summarize(vs)
		if s.Trimmed {
			t.Errorf("%v: trimmed with %d values", vs, s.N)
		}
		if s.TrimmedSpread() != s.Spread() {
			t.Errorf("%v: trimmed spread %v, plain %v", vs, s.TrimmedSpread(), s.Spread())
		}
		if !s.TooNoisy(0.25) {
			t.Errorf("%v: an outlier among %d runs passed the gate", vs, s.N)
		}
	}
	if s := Summarize([]float64{1.0, 1.4, 1.2, 1.21, 1.19}); !s.Trimmed || s.TooNoisy(0.25) {
		t.Errorf("5 values, one outlier: %+v", s)
	}
}

// A median of 0 has no spread: trimmed, the figure is too noisy unless
// the values left after trimming are identical.
func TestTrimmedSpreadMedianZero(t *testing.T) {
	if Summarize([]float64{-5, 0, 0, 0, 0, 7}).TooNoisy(0.25) {
		t.Error("zeros but for two trimmed outliers: too noisy")
	}
	if !Summarize([]float64{-5, -1, 0, 0, 1, 7}).TooNoisy(0.25) {
		t.Error("differing values around a median of 0: not too noisy")
	}
}
