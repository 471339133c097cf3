package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
)

// startServer runs an in-process ingest server on a loopback port and shuts
// it down when the test ends.
func startServer(t *testing.T, cfg ingest.ServerConfig) *ingest.Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.Reactors == 0 {
		cfg.Reactors = 1
	}
	if cfg.Sink == nil {
		cfg.Sink = &ingest.DiscardSink{}
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := ingest.NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s
}

// runJSON runs the command in-process with --json and returns its exit
// status and the parsed result (also as a generic map, to check the field
// names scripts rely on).
func runJSON(t *testing.T, args ...string) (int, result, map[string]any, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), append(args, "--json"), &stdout, &stderr)
	var res result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	var m map[string]any
	dec := json.NewDecoder(&stdout)
	if err := dec.Decode(&m); err != nil || dec.More() {
		t.Fatalf("stdout holds more than one JSON object: %v", err)
	}
	return code, res, m, stderr.String()
}

// The fields scripts parse.
var requiredFields = []string{
	"messages_sent", "messages_acked", "nacks", "unanswered", "errors", "elapsed_seconds",
	"messages_per_second", "mb_per_second", "latency_us", "conns", "size", "window", "slow_disconnected",
}

func checkClean(t *testing.T, code int, res result, m map[string]any, stderr string) {
	t.Helper()
	for _, f := range requiredFields {
		if _, ok := m[f]; !ok {
			t.Errorf("JSON lacks %q", f)
		}
	}
	lat, _ := m["latency_us"].(map[string]any)
	for _, f := range []string{"p50", "p95", "p99", "p999", "max"} {
		if _, ok := lat[f]; !ok {
			t.Errorf("latency_us lacks %q", f)
		}
	}
	if code != exitOK || res.Errors != 0 || res.Unanswered != 0 || !res.OK {
		t.Fatalf("exit %d, %d errors %v, %d unanswered; stderr: %s", code, res.Errors, res.ErrorSamples, res.Unanswered, stderr)
	}
	if res.MessagesSent == 0 || res.MessagesAcked != res.MessagesSent {
		t.Fatalf("sent %d, acked %d: want equal and > 0", res.MessagesSent, res.MessagesAcked)
	}
	if res.LatencyUS.Count == 0 || res.LatencyUS.P50 > res.LatencyUS.P99 || res.LatencyUS.P99 > res.LatencyUS.Max {
		t.Errorf("implausible latencies %+v", res.LatencyUS)
	}
	if res.ElapsedSeconds <= 0 || res.MessagesPerSecond <= 0 || res.MBPerSecond <= 0 {
		t.Errorf("elapsed %v s, %v msgs/s, %v MB/s", res.ElapsedSeconds, res.MessagesPerSecond, res.MBPerSecond)
	}
}

func TestLoadPipelined(t *testing.T) {
	s := startServer(t, ingest.ServerConfig{})
	code, res, m, stderr := runJSON(t, "--addr", s.Addr(), "--conns", "4", "--duration", "1s", "--size", "16-512")
	checkClean(t, code, res, m, stderr)
	if res.Conns != 4 || res.Size != "16-512" || res.Window != 256 {
		t.Errorf("echoed settings: %+v", res)
	}
	t.Logf("pipelined: %d msgs, %.0f msgs/s, p50 %d µs, p99 %d µs", res.MessagesSent, res.MessagesPerSecond, res.LatencyUS.P50, res.LatencyUS.P99)
}

func TestLoadWindow1(t *testing.T) {
	s := startServer(t, ingest.ServerConfig{})
	code, res, m, stderr := runJSON(t, "--addr", s.Addr(), "--conns", "4", "--duration", "1s", "--window", "1")
	checkClean(t, code, res, m, stderr)
	t.Logf("window 1: %d msgs, %.0f msgs/s, p50 %d µs, p99 %d µs", res.MessagesSent, res.MessagesPerSecond, res.LatencyUS.P50, res.LatencyUS.P99)
}

// --messages alone ends the run when every connection has sent its share;
// warmup messages are verified but not measured.
func TestLoadMessages(t *testing.T) {
	s := startServer(t, ingest.ServerConfig{})
	code, res, m, stderr := runJSON(t, "--addr", s.Addr(), "--conns", "3", "--messages", "2000", "--window", "16",
		"--rate", "6000", "--warmup", "200ms")
	checkClean(t, code, res, m, stderr)
	if res.MessagesSent != 6000 {
		t.Errorf("sent %d, want 3 x 2000", res.MessagesSent)
	}
	// 6000 msgs at 6000/s: about 1 s, of which 200 ms warmup are not measured.
	if res.MeasuredMessages >= 6000 || res.MeasuredMessages < 3000 {
		t.Errorf("measured %d messages, want about 4800 (the warmup excluded)", res.MeasuredMessages)
	}
	if res.ElapsedSeconds < 0.6 || res.ElapsedSeconds > 1.5 {
		t.Errorf("elapsed %.3f s, want about 0.8 s at the target rate", res.ElapsedSeconds)
	}
}

// slowSink makes every batch take a while, so that a tiny queue fills.
type slowSink struct {
	ingest.DiscardSink
	delay time.Duration
}

func (s *slowSink) Write(b []ingest.Record) error {
	time.Sleep(s.delay)
	return s.DiscardSink.Write(b)
}

// Under the reject policy a full queue answers NACK 3: reported, not an
// error, and every DATA frame still gets an answer.
func TestLoadOverloadReject(t *testing.T) {
	s := startServer(t, ingest.ServerConfig{
		Sink:          &slowSink{delay: 2 * time.Millisecond},
		Overload:      ingest.OverloadReject,
		QueueMessages: 8,
		QueueBytes:    64 << 10,
		MaxPayload:    4096,
	})
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--addr", s.Addr(), "--conns", "4", "--duration", "1s", "--json"}, &stdout, &stderr)
	var res result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("JSON: %v: %s", err, stdout.String())
	}
	if code != exitOK || res.Errors != 0 || res.Unanswered != 0 {
		t.Fatalf("exit %d, %d errors %v, %d unanswered; stderr: %s", code, res.Errors, res.ErrorSamples, res.Unanswered, stderr.String())
	}
	if res.Nacks["3"] == 0 {
		t.Fatalf("no NACK 3 counted: %+v", res)
	}
	if res.MessagesAcked+res.Nacks["3"] != res.MessagesSent {
		t.Errorf("acked %d + NACK 3 %d != sent %d", res.MessagesAcked, res.Nacks["3"], res.MessagesSent)
	}
	t.Logf("reject: sent %d, acked %d, NACK 3 %d", res.MessagesSent, res.MessagesAcked, res.Nacks["3"])
}

// Slow clients are reported apart and are not errors, whatever the server
// does with them.
func TestLoadSlowClients(t *testing.T) {
	s := startServer(t, ingest.ServerConfig{OutputCap: 64 << 10})
	code, res, m, stderr := runJSON(t, "--addr", s.Addr(), "--conns", "4", "--duration", "1s", "--slow-clients", "0.5", "--slow-after", "100ms")
	checkClean(t, code, res, m, stderr)
	if res.SlowConns != 2 || res.SlowDisconnected+res.SlowStalled+res.SlowConnected != 2 {
		t.Errorf("slow clients: %d, disconnected %d, stalled %d, connected %d", res.SlowConns, res.SlowDisconnected, res.SlowStalled, res.SlowConnected)
	}
	if res.SlowMessagesSent == 0 {
		t.Error("slow clients sent nothing")
	}
	t.Logf("slow: %d sent, disconnected %d, stalled %d, connected %d", res.SlowMessagesSent, res.SlowDisconnected, res.SlowStalled, res.SlowConnected)
}

// A server that drains mid-run sends GOAWAY: the client stops, collects
// the last ACKs, and what the GOAWAY did not cover is not unanswered.
func TestLoadServerGoaway(t *testing.T) {
	s := startServer(t, ingest.ServerConfig{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(300 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	}()
	code, res, _, stderr := runJSON(t, "--addr", s.Addr(), "--conns", "4", "--duration", "3s")
	wg.Wait()
	if code != exitOK || res.Errors != 0 || res.Unanswered != 0 {
		t.Fatalf("exit %d, %d errors %v, %d unanswered; stderr: %s", code, res.Errors, res.ErrorSamples, res.Unanswered, stderr)
	}
	if res.Goaways != 4 {
		t.Errorf("GOAWAY on %d connections, want 4", res.Goaways)
	}
	if res.ElapsedSeconds > 2 {
		t.Errorf("run took %.1f s: it should end when every connection got GOAWAY", res.ElapsedSeconds)
	}
	t.Logf("goaway: sent %d, acked %d, not accepted %d, NACK 4 %d", res.MessagesSent, res.MessagesAcked, res.GoawayUnaccepted, res.Nacks["4"])
}

// Connection failures are errors: exit 1 with the reason on stderr.
func TestLoadConnectRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	code, res, _, stderr := runJSON(t, "--addr", addr, "--conns", "2", "--duration", "200ms")
	if code != exitFail || res.Errors != 2 || len(res.ErrorSamples) != 2 || res.OK {
		t.Fatalf("exit %d, errors %d %v", code, res.Errors, res.ErrorSamples)
	}
	if !strings.Contains(stderr, "FAILED") || !strings.Contains(stderr, "refused") {
		t.Errorf("stderr does not say why: %s", stderr)
	}
}

// A server that closes connections without answering: errors and
// unanswered messages, exit 1.
func TestLoadServerHangsUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 1024)
				_, _ = io.ReadAtLeast(c, buf, 100)
				c.Close()
			}()
		}
	}()
	code, res, _, stderr := runJSON(t, "--addr", ln.Addr().String(), "--conns", "2", "--duration", "300ms", "--drain-timeout", "200ms")
	if code != exitFail || res.Errors != 2 || res.Unanswered == 0 {
		t.Fatalf("exit %d, errors %d %v, unanswered %d; stderr %s", code, res.Errors, res.ErrorSamples, res.Unanswered, stderr)
	}
}

// The text report goes to stdout and names every figure.
func TestTextReport(t *testing.T) {
	s := startServer(t, ingest.ServerConfig{})
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--addr", s.Addr(), "--conns", "2", "--messages", "100"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"sent 200, acked 200, unanswered 0", "nacks", "errors      0", "msgs/s", "MB/s", "p99.9", "OK"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, stdout.String())
		}
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr not empty: %s", stderr.String())
	}
}

// NACK 2 (too large) is an error, counted by code, with the reason.
func TestLoadTooLarge(t *testing.T) {
	s := startServer(t, ingest.ServerConfig{MaxPayload: 1024})
	code, res, _, stderr := runJSON(t, "--addr", s.Addr(), "--conns", "2", "--duration", "300ms", "--size", "2000")
	if code != exitFail || res.Nacks["2"] != 2 || res.Errors != 2 {
		t.Fatalf("exit %d, nacks %v, errors %d %v", code, res.Nacks, res.Errors, res.ErrorSamples)
	}
	if !strings.Contains(stderr, "too large") {
		t.Errorf("stderr does not say why: %s", stderr)
	}
}

// TestCPUProfile: --cpuprofile leaves a CPU profile of the run that go tool
// pprof can read (it starts with a gzip header), and a path that cannot be
// created is a usage error before any connection is made.
func TestCPUProfile(t *testing.T) {
	s := startServer(t, ingest.ServerConfig{Sink: &ingest.DiscardSink{}})
	path := filepath.Join(t.TempDir(), "load.prof")
	code, res, m, stderr := runJSON(t, "--addr", s.Addr(), "--conns", "2", "--messages", "2000", "--cpuprofile", path)
	checkClean(t, code, res, m, stderr)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("the profile is not a gzipped pprof file (%d bytes)", len(b))
	}
	var stdout, stderrBuf bytes.Buffer
	code = run(context.Background(), []string{"--addr", s.Addr(), "--cpuprofile", filepath.Join(t.TempDir(), "no", "such", "dir", "p")}, &stdout, &stderrBuf)
	if code != exitUsage || !strings.Contains(stderrBuf.String(), "--cpuprofile") {
		t.Fatalf("exit %d, stderr %q; want a usage error naming --cpuprofile", code, stderrBuf.String())
	}
}
