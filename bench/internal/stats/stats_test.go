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
