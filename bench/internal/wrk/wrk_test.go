package wrk

import (
	"strings"
	"testing"
)

const sample = `Running 5s test @ http://127.0.0.1:7480/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.21ms    3.06ms  45.80ms   94.38%
    Req/Sec    37.66k    17.98k   91.86k    80.00%
  Latency Distribution
     50%  177.00us
     75%    1.21ms
     90%    3.13ms
     99%   14.61ms
  187684 requests in 5.02s, 13.96MB read
Requests/sec:  37375.17
Transfer/sec:      2.78MB
`

func TestParse(t *testing.T) {
	r, err := Parse(sample)
	if err != nil {
		t.Fatal(err)
	}
	if r.RequestsPerSec != 37375.17 || r.Requests != 187684 || r.Seconds != 5.02 {
		t.Fatalf("totals: %+v", r)
	}
	if r.P50ms != 0.177 || r.P75ms != 1.21 || r.P90ms != 3.13 || r.P99ms != 14.61 {
		t.Fatalf("latency: %+v", r)
	}
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestParseErrors(t *testing.T) {
	bad := strings.Replace(sample, "Transfer/sec", "  Socket errors: connect 0, read 3, write 0, timeout 0\n  Non-2xx or 3xx responses: 7\nTransfer/sec", 1)
	r, err := Parse(bad)
	if err != nil {
		t.Fatal(err)
	}
	if r.SocketErrors == "" || r.Non2xx != 7 {
		t.Fatalf("errors not parsed: %+v", r)
	}
	if r.Check() == nil {
		t.Fatal("Check passed a run with socket errors")
	}
	if _, err := Parse("unable to connect to 127.0.0.1:7480 Connection refused\n"); err == nil {
		t.Fatal("Parse accepted output without results")
	}
}

func TestDuration(t *testing.T) {
	for in, want := range map[string]float64{"250.00us": 0.25, "3ms": 3, "1.5s": 1500, "2.00m": 120000} {
		got, err := Duration(in)
		if err != nil || got != want {
			t.Errorf("Duration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := Duration("12"); err == nil {
		t.Error("no unit accepted")
	}
}
