package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in     string
		lo, hi int
		ok     bool
	}{
		{"128", 128, 128, true},
		{"0", 0, 0, true},
		{" 64 - 1024 ", 64, 1024, true},
		{"10-10", 10, 10, true},
		{"1048576", 1 << 20, 1 << 20, true},
		{"", 0, 0, false},
		{"abc", 0, 0, false},
		{"-5", 0, 0, false},
		{"10-", 0, 0, false},
		{"100-10", 0, 0, false},
		{"1.5", 0, 0, false},
		{"1k", 0, 0, false},
		{"99999999999", 0, 0, false}, // over what a frame can carry
		{"1-2-3", 0, 0, false},
	} {
		lo, hi, err := parseSize(tc.in)
		if tc.ok != (err == nil) || lo != tc.lo || hi != tc.hi {
			t.Errorf("parseSize(%q) = %d, %d, %v; want %d, %d, ok=%v", tc.in, lo, hi, err, tc.lo, tc.hi, tc.ok)
		}
		var ue *usageError
		if err != nil && !errors.As(err, &ue) {
			t.Errorf("parseSize(%q): error %v is not a usage error", tc.in, err)
		}
	}
}

func TestParseBurst(t *testing.T) {
	for _, tc := range []struct {
		in      string
		on, off time.Duration
		ok      bool
	}{
		{"", 0, 0, true},
		{"200ms/800ms", 200 * time.Millisecond, 800 * time.Millisecond, true},
		{"1s/ 1s", time.Second, time.Second, true},
		{"200ms", 0, 0, false},
		{"200ms/", 0, 0, false},
		{"/800ms", 0, 0, false},
		{"0s/1s", 0, 0, false},
		{"1s/0s", 0, 0, false},
		{"-1s/1s", 0, 0, false},
		{"200/800", 0, 0, false},
	} {
		on, off, err := parseBurst(tc.in)
		if tc.ok != (err == nil) || on != tc.on || off != tc.off {
			t.Errorf("parseBurst(%q) = %v, %v, %v; want %v, %v, ok=%v", tc.in, on, off, err, tc.on, tc.off, tc.ok)
		}
	}
}

func TestParseFlagsDefaults(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:7400" || cfg.Conns != 64 || cfg.Duration != 10*time.Second || cfg.Messages != 0 ||
		cfg.Window != 256 || cfg.Rate != 0 || cfg.BurstOn != 0 || cfg.JSON || cfg.Progress ||
		cfg.SizeMin != 128 || cfg.SizeMax != 128 || cfg.ConnectTimeout != 5*time.Second {
		t.Errorf("defaults: %+v", cfg)
	}
	// The progress bar defaults to on with a terminal, but not with --json.
	if cfg, _ := parseFlags(nil, io.Discard, true); !cfg.Progress {
		t.Error("--progress should default to on when stderr is a terminal")
	}
	if cfg, _ := parseFlags([]string{"--json"}, io.Discard, true); cfg.Progress {
		t.Error("--json should turn the progress bar off by default")
	}
	if cfg, _ := parseFlags([]string{"--json", "--progress"}, io.Discard, false); !cfg.Progress {
		t.Error("--json --progress should keep the progress bar")
	}
}

func TestParseFlagsLimits(t *testing.T) {
	// --messages alone: no time limit; both: whichever comes first.
	cfg, err := parseFlags([]string{"--messages", "500"}, io.Discard, false)
	if err != nil || cfg.Messages != 500 || cfg.Duration != 0 {
		t.Errorf("--messages 500: %+v, %v", cfg, err)
	}
	cfg, err = parseFlags([]string{"--messages", "500", "--duration", "3s"}, io.Discard, false)
	if err != nil || cfg.Messages != 500 || cfg.Duration != 3*time.Second {
		t.Errorf("--messages 500 --duration 3s: %+v, %v", cfg, err)
	}
	cfg, err = parseFlags([]string{"--size", "64-1024", "--burst", "200ms/800ms", "--slow-clients", "0.1", "--conns", "20"}, io.Discard, false)
	if err != nil || cfg.SizeSpec != "64-1024" || cfg.burstSpec() != "200ms/800ms" || cfg.slowConns() != 2 {
		t.Errorf("ranges: %+v, %v", cfg, err)
	}
}

func TestSlowConns(t *testing.T) {
	for _, tc := range []struct {
		f     float64
		conns int
		want  int
	}{{0, 64, 0}, {0.1, 64, 6}, {0.01, 10, 1}, {0.5, 2, 1}, {0.9, 1, 0}, {0.99, 10, 9}} {
		cfg := config{SlowFraction: tc.f, Conns: tc.conns}
		if got := cfg.slowConns(); got != tc.want {
			t.Errorf("slowConns(%v of %d) = %d, want %d", tc.f, tc.conns, got, tc.want)
		}
	}
}

// Bad flags exit with status 2 and say what is wrong, before any dialing.
func TestBadFlagsExit2(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--conns", "0"}, "--conns"},
		{[]string{"--window", "0"}, "--window"},
		{[]string{"--size", "big"}, "--size"},
		{[]string{"--size", "100-10"}, "MIN 100 is above MAX 10"},
		{[]string{"--burst", "200ms"}, "--burst"},
		{[]string{"--rate", "-1"}, "--rate"},
		{[]string{"--slow-clients", "1"}, "--slow-clients"},
		{[]string{"--slow-clients", "-0.1"}, "--slow-clients"},
		{[]string{"--duration", "0s"}, "--duration"},
		{[]string{"--messages", "0"}, "--messages"},
		{[]string{"--addr", "nohostport"}, "--addr"},
		{[]string{"--transport", "udp"}, "--transport"},
		{[]string{"--warmup", "-1s"}, "--warmup"},
		{[]string{"--connect-timeout", "0s"}, "--connect-timeout"},
		{[]string{"--quic-keepalive", "0s"}, "--quic-keepalive"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"--conns", "x"}, "conns"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, &stdout, &stderr)
		if code != exitUsage {
			t.Errorf("%q: exit %d, want 2", tc.args, code)
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: stderr %q does not mention %q", tc.args, stderr.String(), tc.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("%q: wrote to stdout: %q", tc.args, stdout.String())
		}
	}
}

func TestHelpExit0(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, io.Discard, &stderr); code != exitOK {
		t.Errorf("--help: exit %d, want 0", code)
	}
	if !strings.Contains(stderr.String(), "--slow-clients") && !strings.Contains(stderr.String(), "-slow-clients") {
		t.Errorf("--help does not list the flags: %s", stderr.String())
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard, false); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestScheduleAllowance(t *testing.T) {
	ms := int64(time.Millisecond)
	// 1000/s over 2 connections: 500/s each, one message every 2 ms.
	s := newSchedule(config{Rate: 1000, Conns: 2})
	if n, _ := s.allowance(0, 0); n != 1 {
		t.Errorf("t=0: %d allowed, want the first message at once", n)
	}
	if n, w := s.allowance(ms, 1); n != 0 || w != time.Millisecond {
		t.Errorf("t=1ms sent 1: %d allowed, wait %v; want 0, 1ms", n, w)
	}
	if n, _ := s.allowance(100*ms, 1); n != 50 {
		t.Errorf("t=100ms sent 1: %d allowed, want 50 (catch up)", n)
	}
	// Bursts 10ms on / 30ms off, no rate: free while on, wait while off.
	b := newSchedule(config{Conns: 1, BurstOn: 10 * time.Millisecond, BurstOff: 30 * time.Millisecond})
	if n, _ := b.allowance(5*ms, 0); n <= 0 {
		t.Error("ON phase: nothing allowed")
	}
	if n, w := b.allowance(15*ms, 0); n != 0 || w != 25*time.Millisecond {
		t.Errorf("OFF phase: %d allowed, wait %v; want 0, 25ms", n, w)
	}
	if act, _ := b.active(85 * ms); act != 25*ms {
		t.Errorf("active time at 85ms = %v, want 25ms (two full ON phases and 5ms)", time.Duration(act))
	}
	// Rate with bursts: the rate applies during ON time only.
	rb := newSchedule(config{Rate: 1000, Conns: 1, BurstOn: 10 * time.Millisecond, BurstOff: 10 * time.Millisecond})
	if n, _ := rb.allowance(25*ms, 0); n != 16 { // 15 ms of ON time by t=25ms, +1 for the first at 0
		t.Errorf("rate+burst at 25ms: %d allowed, want 16", n)
	}
	if n, w := rb.allowance(35*ms, 16); n != 0 || w != 5*time.Millisecond {
		t.Errorf("rate+burst at 35ms (OFF): %d allowed, wait %v; want 0, 5ms", n, w)
	}
}
