package harness

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/gyre-io/gyre/bench/internal/procfs"
	"github.com/gyre-io/gyre/bench/internal/stats"
	"golang.org/x/sys/unix"
)

// The latency cells are gated on the median latency and the server's CPU
// at the offered load, not on the tails nor on the (scheduled) rate.
func TestLatencyGate(t *testing.T) {
	mk := func(p50, p99, cpu []float64) map[string]stats.Summary {
		return map[string]stats.Summary{"p50_us": stats.Summarize(p50), "p99_us": stats.Summarize(p99),
			"server_cpu": stats.Summarize(cpu), "achieved": stats.Summarize([]float64{1000, 1000, 1000})}
	}
	quiet := map[string]map[string]stats.Summary{SGyre: mk([]float64{100, 110, 105}, []float64{500, 2000, 900}, []float64{0.4, 0.42, 0.41})}
	if why := noisy(WLatency, quiet, 0.25); len(why) != 0 {
		t.Errorf("tail spread gated: %v", why)
	}
	loud := map[string]map[string]stats.Summary{SGyre: mk([]float64{100, 150, 105}, []float64{500, 600, 550}, []float64{0.3, 0.42, 0.41})}
	why := noisy(WLatency, loud, 0.25)
	if len(why) != 2 || !strings.Contains(why[0], "p50") || !strings.Contains(why[1], "server CPU") {
		t.Errorf("noisy: %v", why)
	}
}

func TestNoisyError(t *testing.T) {
	if noisyError(nil, 0.25, "d") != nil {
		t.Fatal("no noisy cells, yet an error")
	}
	err := noisyError([]string{"http-c64: net requests / server CPU-s spread 40% (50k..70k)"}, 0.25, "results/quick-x")
	if !errors.Is(err, ErrNoisy) || !strings.Contains(err.Error(), "over 25%") || !strings.Contains(err.Error(), "http-c64: net") ||
		!strings.Contains(err.Error(), "-spread-max") {
		t.Fatalf("%v", err)
	}
}

func TestIdleTarget(t *testing.T) {
	if n, why := idleTarget(10000, 10, 20000, 20000, nil); n != 10000 || why != "" {
		t.Errorf("10k: %d %q", n, why)
	}
	n, why := idleTarget(20000, 10, 20000, 20000, unix.EPERM)
	if n != 20000-10-idleFDMargin || !strings.Contains(why, "19,982 held") || !strings.Contains(why, "20,000 (the hard limit)") ||
		!strings.Contains(why, "operation not permitted") || !strings.Contains(why, "10 of its own") {
		t.Errorf("20k at a hard limit of 20k: %d %q", n, why)
	}
	if n, why := idleTarget(20000, 10, 1024, 4096, unix.EPERM); n != 1024-10-idleFDMargin || !strings.Contains(why, "hard limit 4,096") {
		t.Errorf("soft below hard: %d %q", n, why)
	}
	if n, why := idleTarget(20000, 10, -1, -1, nil); n != 20000 || why != "" {
		t.Errorf("unlimited: %d %q", n, why)
	}
}

// A Go server runs with its soft RLIMIT_NOFILE at the hard limit, and
// the harness raises a soft limit that is lower.
func TestServerFileLimit(t *testing.T) {
	_, s := testHarness(t)
	soft, hard, err := procfs.OpenFileLimits(s.pid)
	if err != nil {
		t.Fatal(err)
	}
	if soft != hard {
		t.Errorf("Go server's RLIMIT_NOFILE %d/%d: soft not raised to hard", soft, hard)
	}
	if hard >= 0 && hard < 2048 {
		t.Skipf("hard limit %d too low to test raising", hard)
	}
	if err := unix.Prlimit(s.pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 512, Max: uint64(hard)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := raiseNoFile(s.pid, 2048); err != nil {
		t.Fatal(err)
	}
	if soft, _, _ := procfs.OpenFileLimits(s.pid); soft < 2048 {
		t.Errorf("soft limit %d after raising to 2048", soft)
	}
}

func TestIdleShortInTable(t *testing.T) {
	c := &Cell{ID: "idle-20000", Workload: WIdle, Label: "20000 idle connections", Servers: []string{SGyre, SNet},
		Params: Params{IdleConns: 20000}}
	why := "19,982 held: the server's RLIMIT_NOFILE is 20,000 (the hard limit)"
	for _, s := range c.Servers {
		c.Runs = append(c.Runs, &Run{Server: s, Kept: true, IdleShort: why, Metrics: map[string]float64{"conns": 19982, "rss_per_conn": 340}})
	}
	c.Summary = summarize(WIdle, c.Runs)
	var b bytes.Buffer
	res := &Results{Cells: []*Cell{c}, Runs: c.Runs}
	WriteTable(&b, res)
	WriteNotes(&b, res)
	out := b.String()
	if !strings.Contains(out, "| 20000 idle connections (19,982 held: the servers' RLIMIT_NOFILE, see the notes) | connections held | 19,982 | 19,982 |") ||
		!strings.Contains(out, "idle-20000: 20000 connections asked for; gyre: "+why) || !strings.Contains(out, "; net: "+why) {
		t.Errorf("table and notes do not say why:\n%s", out)
	}
}

func TestWriteEnvRecordsBuildAndFewRuns(t *testing.T) {
	var b bytes.Buffer
	WriteEnv(&b, &Results{Env: Env{Runs: 1, GoVersion: "go1.26.8", SpreadMax: 0.25, NoFile: "20000/20000",
		Binaries: map[string]BinInfo{"gyre-echo": {SHA256: "abc", Go: "go1.26.8", Revision: "0123456789abcdef", Modified: "true", LDFlags: "-checklinkname=0"}}}})
	out := b.String()
	for _, want := range []string{"`gyre-echo`: go1.26.8, 0123456789ab+uncommitted, -ldflags=-checklinkname=0, sha256 abc",
		"spreads over 25%", "not results", "RLIMIT_NOFILE 20000/20000 (soft/hard)"} {
		if !strings.Contains(out, want) {
			t.Errorf("env block lacks %q:\n%s", want, out)
		}
	}
}

func TestGroupDigits(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 19982: "19,982", -1234567: "-1,234,567"} {
		if got := groupDigits(n); got != want {
			t.Errorf("groupDigits(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestBinInfo(t *testing.T) {
	bi := binInfo(os.Args[0])
	if !strings.HasPrefix(bi.Go, "go1.") || len(bi.SHA256) != 12 {
		t.Fatalf("%+v", bi)
	}
}

// A run kept although other work disturbed it (retries used up) makes
// its cell noisy: the harness knows it is not clean.
func TestContendedRunsMakeTheCellNoisy(t *testing.T) {
	clean := &Run{Server: SGyre, Run: 1}
	if why := contended([]*Run{clean}); len(why) != 0 {
		t.Fatalf("clean run: %v", why)
	}
	bad := &Run{Server: SNet, Run: 2, Contended: true, ServerCoreOther: 0.4, WallSeconds: 3}
	why := contended([]*Run{clean, bad})
	if len(why) != 1 || !strings.HasPrefix(why[0], "net run 2 contended (server core 0.40s beyond the server") {
		t.Fatalf("%v", why)
	}
}
