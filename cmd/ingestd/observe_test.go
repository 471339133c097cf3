package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// waitMetric polls /metrics until the unlabelled sample name satisfies ok.
func waitMetric(t *testing.T, addr, name string, ok func(float64) bool, timeout time.Duration) float64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_, body := httpGet(t, addr, "/metrics")
		v, found := metricValue(body, name)
		if found && ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v (present %v) after %v", name, v, found, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetricsAndHealthz: /healthz says ok, /metrics serves the Prometheus
// text format with the ingest series, and the counters follow traffic.
func TestMetricsAndHealthz(t *testing.T) {
	d := startServe(t, t.TempDir())

	code, body := httpGet(t, d.metrics, "/healthz")
	if code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q, want 200 \"ok\\n\"", code, body)
	}
	resp, err := httpClient.Get("http://" + d.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("/metrics: %d, Content-Type %q", resp.StatusCode, ct)
	}
	_, text := httpGet(t, d.metrics, "/metrics")
	for _, want := range []string{
		"# TYPE gyre_ingest_messages_total counter",
		"# TYPE gyre_ingest_connections_active gauge",
		"# TYPE gyre_ingest_fsync_seconds histogram",
		"gyre_ingest_fsync_seconds_count ",
		"# TYPE gyre_ingest_acks_total counter",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if v, _ := metricValue(text, "gyre_ingest_messages_total"); v != 0 {
		t.Errorf("gyre_ingest_messages_total = %v before any traffic", v)
	}

	// An open connection is counted while it is open.
	idle, err := net.DialTimeout("tcp", d.tcp, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	waitMetric(t, d.metrics, "gyre_ingest_connections_active", func(v float64) bool { return v == 1 }, 5*time.Second)

	sendAndAck(t, d.tcp, 1, 100)
	_, text = httpGet(t, d.metrics, "/metrics")
	if v, _ := metricValue(text, "gyre_ingest_messages_total"); v != 100 {
		t.Errorf("gyre_ingest_messages_total = %v after 100 acknowledged messages", v)
	}
	if v, _ := metricValue(text, "gyre_ingest_fsync_seconds_count"); v < 1 {
		t.Errorf("gyre_ingest_fsync_seconds_count = %v after acknowledged messages", v)
	}
	if v, _ := metricValue(text, "gyre_ingest_acks_total"); v < 1 {
		t.Errorf("gyre_ingest_acks_total = %v after acknowledged messages", v)
	}
	idle.Close()
	waitMetric(t, d.metrics, "gyre_ingest_connections_active", func(v float64) bool { return v == 0 }, 5*time.Second)
	d.stop(10 * time.Second)
}

// TestMetricsDiscardSink: with --sink discard there is no fsync histogram,
// and messages are still counted.
func TestMetricsDiscardSink(t *testing.T) {
	d := startProcess(t, "--tcp", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--reactors", "1", "--sink", "discard",
		"--data-dir", filepath.Join(t.TempDir(), "unused"))
	d.waitReady(true)
	sendAndAck(t, d.tcp, 1, 10)
	_, text := httpGet(t, d.metrics, "/metrics")
	if strings.Contains(text, "gyre_ingest_fsync_seconds") {
		t.Errorf("/metrics has gyre_ingest_fsync_seconds with the discard sink")
	}
	if v, _ := metricValue(text, "gyre_ingest_messages_total"); v != 10 {
		t.Errorf("gyre_ingest_messages_total = %v, want 10", v)
	}
	d.stop(10 * time.Second)
}

// TestPprof: --pprof serves /debug/pprof/ on the metrics server (heap?gc=1
// is how scripts/bench-quic.sh gets a collected heap); without it there is
// none, and it needs --metrics.
func TestPprof(t *testing.T) {
	d := startProcess(t, "--tcp", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--reactors", "1", "--sink", "discard", "--pprof")
	d.waitReady(true)
	if code, text := httpGet(t, d.metrics, "/debug/pprof/heap?gc=1&debug=1"); code != 200 || !strings.Contains(text, "HeapInuse") {
		t.Errorf("/debug/pprof/heap: %d %.200q", code, text)
	}
	d.stop(10 * time.Second)
	d = startProcess(t, "--tcp", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--reactors", "1", "--sink", "discard")
	d.waitReady(true)
	if code, _ := httpGet(t, d.metrics, "/debug/pprof/heap"); code != 404 {
		t.Errorf("/debug/pprof/heap without --pprof: %d, want 404", code)
	}
	d.stop(10 * time.Second)
	d = startProcess(t, "--tcp", "127.0.0.1:0", "--metrics", "", "--pprof")
	if code := d.wait(10 * time.Second); code != 2 {
		t.Errorf("--pprof without --metrics: exit %d, want 2", code)
	}
}

var reReadLine = regexp.MustCompile(`^(\S+) conn=(\d+) session=(-|[0-9a-f]{32}) seq=(\d+) len=(\d+) (".*")$`)

// TestReadSubcommand: `ingestd read` prints one line per record and a
// count line; --count prints only the count; --limit stops early; a path
// that is not a directory exits 2.
func TestReadSubcommand(t *testing.T) {
	const n = 20
	dir := t.TempDir()
	d := startServe(t, dir)
	before := time.Now()
	sendAndAck(t, d.tcp, 7, n)
	d.stop(10 * time.Second)

	var payloadBytes int
	for seq := uint64(1); seq <= n; seq++ {
		payloadBytes += len(appendPayload(nil, 7, seq))
	}
	countLine := fmt.Sprintf("%d records, %d payload bytes", n, payloadBytes)

	code, out, errOut := runCmd(t, "read", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("read: exit status %d; stderr:\n%s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != n+1 {
		t.Fatalf("read printed %d lines, want %d records and a count:\n%s", len(lines), n, out)
	}
	for i, line := range lines[:n] {
		m := reReadLine.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("line %d %q does not look like a record", i, line)
			continue
		}
		seq := uint64(i + 1)
		p := appendPayload(nil, 7, seq)
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil || ts.Before(before.Add(-time.Minute)) || ts.After(time.Now()) {
			t.Errorf("line %d: timestamp %q (%v)", i, m[1], err)
		}
		if m[3] != "-" || m[4] != strconv.FormatUint(seq, 10) || m[5] != strconv.Itoa(len(p)) {
			t.Errorf("line %d: session=%s seq=%s len=%s, want session=- seq=%d len=%d", i, m[3], m[4], m[5], seq, len(p))
		}
		if want := strconv.Quote(string(p[:min(len(p), 48)])); m[6] != want {
			t.Errorf("line %d: payload %s, want %s", i, m[6], want)
		}
	}
	if lines[n] != countLine {
		t.Errorf("last line %q, want %q", lines[n], countLine)
	}

	code, out, _ = runCmd(t, "read", "--data-dir", dir, "--count")
	if code != 0 || out != countLine+"\n" {
		t.Errorf("read --count: status %d, output %q, want %q", code, out, countLine+"\n")
	}

	code, out, _ = runCmd(t, "read", "--data-dir", dir, "--limit", "3")
	if lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[3], "3 records, ") {
		t.Errorf("read --limit 3: status %d, output:\n%s", code, out)
	}

	code, out, _ = runCmd(t, "read", "--data-dir", t.TempDir(), "--count")
	if code != 0 || out != "0 records, 0 payload bytes\n" {
		t.Errorf("read of an empty directory: status %d, output %q", code, out)
	}

	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, filepath.Join(t.TempDir(), "missing")} {
		code, out, errOut = runCmd(t, "read", "--data-dir", p)
		if code != 2 || !strings.Contains(errOut, "is not a directory") || out != "" {
			t.Errorf("read --data-dir %s: status %d, stdout %q, stderr %q; want status 2 and \"is not a directory\"", p, code, out, errOut)
		}
	}

	code, _, errOut = runCmd(t, "read", "--bogus")
	if code != 2 || !strings.Contains(errOut, "-bogus") {
		t.Errorf("read --bogus: status %d, stderr %q", code, errOut)
	}
}

// TestEngineFlag: --engine picks the reactors' engine; the start-up log
// and the gyre_engine_info metric name it, traffic is acknowledged on it,
// and an unknown engine is a usage error that lists the choices.
func TestEngineFlag(t *testing.T) {
	for _, engine := range []string{"epoll", "net"} {
		t.Run(engine, func(t *testing.T) {
			d := startServe(t, t.TempDir(), "--engine", engine)
			if log := d.stderr.String(); !strings.Contains(log, "engine="+engine) {
				t.Errorf("start-up log does not name engine %s:\n%s", engine, log)
			}
			_, text := httpGet(t, d.metrics, "/metrics")
			if v, ok := metricValue(text, `gyre_engine_info{engine="`+engine+`"}`); !ok || v != 1 {
				t.Errorf("gyre_engine_info{engine=%q} = %v (present %v), want 1", engine, v, ok)
			}
			sendAndAck(t, d.tcp, 1, 50)
			d.stop(10 * time.Second)
		})
	}
	code, _, out := runCmd(t, "--engine", "kqueue", "--sink", "discard")
	if code != 2 || !strings.Contains(out, "--engine") || !strings.Contains(out, "epoll") {
		t.Errorf("--engine kqueue: exit %d, output %q; want exit 2 naming the flag and the choices", code, out)
	}
}

// TestFrameTimeoutFlag: --frame-timeout closes a TCP connection that began
// a frame and did not finish it, counted as cause frame_timeout; a
// negative value is a usage error.
func TestFrameTimeoutFlag(t *testing.T) {
	d := startServe(t, t.TempDir(), "--frame-timeout", "300ms")
	c, err := net.DialTimeout("tcp", d.tcp, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	began := time.Now()
	if _, err := c.Write([]byte{0, 0, 0, 40, 1}); err != nil { // part of a header
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("the connection was not closed: %v", err)
	}
	if el := time.Since(began); el < 300*time.Millisecond {
		t.Errorf("closed after %v, before --frame-timeout 300ms", el)
	}
	waitMetric(t, d.metrics, `gyre_ingest_connections_closed_total{cause="frame_timeout"}`, func(v float64) bool { return v == 1 }, 5*time.Second)
	d.stop(10 * time.Second)

	code, _, out := runCmd(t, "--frame-timeout", "-1s", "--sink", "discard")
	if code != 2 || !strings.Contains(out, "--frame-timeout") {
		t.Errorf("--frame-timeout -1s: exit %d, output %q; want exit 2 naming the flag", code, out)
	}
}

// TestMaxConnsFlag: past --max-conns a TCP connection is closed as soon as
// it is accepted and counted in gyre_ingest_connections_refused_total;
// accept errors have a metric of their own.
func TestMaxConnsFlag(t *testing.T) {
	d := startServe(t, t.TempDir(), "--max-conns", "1")
	first, err := net.DialTimeout("tcp", d.tcp, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	waitMetric(t, d.metrics, "gyre_ingest_connections_active", func(v float64) bool { return v == 1 }, 5*time.Second)
	second, err := net.DialTimeout("tcp", d.tcp, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_ = second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(second); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the connection over --max-conns 1 was left open")
	}
	waitMetric(t, d.metrics, `gyre_ingest_connections_refused_total{reason="max_conns"}`, func(v float64) bool { return v == 1 }, 5*time.Second)
	_, text := httpGet(t, d.metrics, "/metrics")
	if v, ok := metricValue(text, "gyre_ingest_accept_errors_total"); !ok || v != 0 {
		t.Errorf("gyre_ingest_accept_errors_total = %v (present %v), want 0", v, ok)
	}
	// Once the first leaves, a new connection is served.
	first.Close()
	waitMetric(t, d.metrics, "gyre_ingest_connections_active", func(v float64) bool { return v == 0 }, 5*time.Second)
	sendAndAck(t, d.tcp, 1, 10)
	d.stop(10 * time.Second)
}
