// Package wrk parses the output of `wrk --latency`.
package wrk

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// Result is what the harness takes from one wrk run.
type Result struct {
	RequestsPerSec float64 `json:"requests_per_sec"`
	Requests       int64   `json:"requests"`
	Seconds        float64 `json:"seconds"`
	// Latency percentiles in milliseconds (wrk prints 50, 75, 90, 99).
	P50ms float64 `json:"p50_ms"`
	P75ms float64 `json:"p75_ms"`
	P90ms float64 `json:"p90_ms"`
	P99ms float64 `json:"p99_ms"`
	// SocketErrors is the "Socket errors:" line, "" when there was none.
	SocketErrors string `json:"socket_errors,omitempty"`
	// Non2xx counts responses that were not 2xx or 3xx.
	Non2xx int64 `json:"non_2xx"`
}

// Parse reads wrk --latency output. It fails when the summary lines are
// missing (wrk could not run the test).
func Parse(out string) (Result, error) {
	var r Result
	var haveReq, haveTotal, inDist bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "Requests/sec:") && len(f) == 2:
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return r, fmt.Errorf("wrk: Requests/sec %q: %w", f[1], err)
			}
			r.RequestsPerSec, haveReq = v, true
		case strings.Contains(line, " requests in ") && len(f) >= 4:
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk: request count %q: %w", f[0], err)
			}
			d, err := Duration(strings.TrimSuffix(f[3], ","))
			if err != nil {
				return r, err
			}
			r.Requests, r.Seconds, haveTotal = n, d/1000, true
		case strings.HasPrefix(line, "Latency Distribution"):
			inDist = true
		case inDist && len(f) == 2 && strings.HasSuffix(f[0], "%"):
			ms, err := Duration(f[1])
			if err != nil {
				return r, err
			}
			switch f[0] {
			case "50%":
				r.P50ms = ms
			case "75%":
				r.P75ms = ms
			case "90%":
				r.P90ms = ms
			case "99%":
				r.P99ms = ms
			}
		case strings.HasPrefix(line, "Socket errors:"):
			r.SocketErrors = line
			inDist = false
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:") && len(f) == 5:
			n, err := strconv.ParseInt(f[4], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk: Non-2xx %q: %w", f[4], err)
			}
			r.Non2xx = n
		default:
			if inDist && len(f) != 2 {
				inDist = false
			}
		}
	}
	if !haveReq || !haveTotal {
		return r, fmt.Errorf("wrk: no Requests/sec or request count in the output")
	}
	return r, nil
}

// Duration converts a wrk duration ("177.00us", "1.21ms", "2.00s",
// "1.50m") to milliseconds.
func Duration(s string) (float64, error) {
	units := []struct {
		suffix string
		ms     float64
	}{{"us", 1e-3}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("wrk: duration %q: %w", s, err)
			}
			return x * u.ms, nil
		}
	}
	return 0, fmt.Errorf("wrk: duration %q has no unit", s)
}

// Check returns an error when the run saw socket errors or bad responses.
func (r Result) Check() error {
	if r.SocketErrors != "" {
		return fmt.Errorf("wrk: %s", r.SocketErrors)
	}
	if r.Non2xx > 0 {
		return fmt.Errorf("wrk: %d non-2xx/3xx responses", r.Non2xx)
	}
	if r.Requests == 0 {
		return fmt.Errorf("wrk: no request completed")
	}
	return nil
}
