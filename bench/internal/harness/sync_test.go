package harness

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as the processes these tests need
// (GYRE_HARNESS_HELPER): a server that only waits, and load clients that
// follow, or break, the -sync protocol.
func TestMain(m *testing.M) {
	switch os.Getenv("GYRE_HARNESS_HELPER") {
	case "":
		os.Exit(m.Run())
	case "server":
		_, _ = io.Copy(io.Discard, os.Stdin) // until the test closes it or kills us
	case "synced-client":
		syncedClient()
	case "failing-client":
		fmt.Fprintln(os.Stderr, "connect: connection refused (12 errors)")
		os.Exit(1)
	case "silent-client":
		fmt.Println(`{"ok":true}`) // exits without signalling its phases
	case "fake-gyre-echo":
		fakeGyreEcho()
	}
	os.Exit(0)
}

// fakeGyreEcho listens on -addr and logs gyre-echo's start-up line,
// naming the -engine it was given, or FAKE_ENGINE when set (a server
// that did not run the engine asked for); FAKE_ENGINE=none leaves the
// engine out. It holds until killed.
func fakeGyreEcho() {
	var addr, engine string
	for i, a := range os.Args[:len(os.Args)-1] {
		switch a {
		case "-addr":
			addr = os.Args[i+1]
		case "-engine":
			engine = os.Args[i+1]
		}
	}
	if e := os.Getenv("FAKE_ENGINE"); e != "" {
		engine = e
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	line := "time=2026-01-01T00:00:00Z level=INFO msg=listening addr=" + addr + " backend=gyre"
	if engine != "none" {
		line += " engine=" + engine
	}
	fmt.Fprintln(os.Stderr, line+" mode=http reactors=1")
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		c.Close()
	}
}

const (
	clientSetup    = 400 * time.Millisecond // before "start": connecting
	clientTeardown = 400 * time.Millisecond // after "end": closing
	clientBurn     = 100 * time.Millisecond // CPU time between the two
)

func syncedClient() {
	out := os.NewFile(3, "sync")
	in := bufio.NewReader(os.Stdin)
	signal := func(p string) {
		fmt.Fprintln(out, p)
		if _, err := in.ReadString('\n'); err != nil {
			os.Exit(3)
		}
	}
	time.Sleep(clientSetup)
	signal("start")
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts)
	for from := ts.Nano(); time.Duration(ts.Nano()-from) < clientBurn; {
		_ = unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts)
	}
	signal("end")
	time.Sleep(clientTeardown)
	fmt.Println(`{"ok":true}`)
}

func helperCmd(t *testing.T, role string) []string {
	t.Helper()
	return []string{"env", "GYRE_HARNESS_HELPER=" + role, os.Args[0], "-test.run=^$"}
}

// testHarness returns a harness pinned to the CPU this test may run on,
// and a running helper server.
func testHarness(t *testing.T) (*H, *server) {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	cpu := 0
	for !set.IsSet(cpu) {
		cpu++
	}
	h := &H{ctx: context.Background(), cfg: Config{CPUServer: cpu, CPULoad: cpu, ContendedPct: 100}}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GYRE_HARNESS_HELPER=server")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{name: "helper", cmd: cmd, pid: cmd.Process.Pid, log: filepath.Join(t.TempDir(), "server.log"), exited: make(chan struct{})}
	go func() { s.err = cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() { stdin.Close(); <-s.exited })
	return h, s
}

// A synced client is sampled at its own phase signals: its connect and
// close time stay outside the window, and its CPU time is the window's.
func TestMeasuredWindowIsTheClientsPhase(t *testing.T) {
	h, s := testHarness(t)
	r := &Run{Metrics: map[string]float64{}}
	t0 := time.Now()
	if _, err := h.measured(s, r, helperCmd(t, "synced-client"), true, filepath.Join(t.TempDir(), "load"), time.Minute); err != nil {
		t.Fatal(err)
	}
	total := time.Since(t0)
	if r.Window != WindowPhase {
		t.Errorf("window %q", r.Window)
	}
	outside := (clientSetup + clientTeardown).Seconds()
	if r.WallSeconds < clientBurn.Seconds()-0.02 || r.WallSeconds > total.Seconds()-outside+0.05 {
		t.Errorf("window %.3fs of a %.3fs client run; want the burn (%v) without setup and teardown (%.1fs)",
			r.WallSeconds, total.Seconds(), clientBurn, outside)
	}
	if r.LoadCPUSeconds < clientBurn.Seconds()-0.02 || r.LoadCPUSeconds > clientBurn.Seconds()+0.1 {
		t.Errorf("load client CPU %.3fs in the window, want about %v", r.LoadCPUSeconds, clientBurn)
	}
	if r.ServerCPUSeconds > 0.05 {
		t.Errorf("an idle server used %.3fs", r.ServerCPUSeconds)
	}
}

// A load client that fails, or breaks the protocol, fails the run with
// its own words.
func TestLoadClientErrorsFailLoudly(t *testing.T) {
	h, s := testHarness(t)
	dir := t.TempDir()
	_, err := h.measured(s, &Run{Metrics: map[string]float64{}}, helperCmd(t, "failing-client"), false, filepath.Join(dir, "a"), time.Minute)
	if err == nil || !strings.Contains(err.Error(), "connection refused (12 errors)") {
		t.Errorf("failing client: %v", err)
	}
	_, err = h.measured(s, &Run{Metrics: map[string]float64{}}, helperCmd(t, "silent-client"), true, filepath.Join(dir, "b"), time.Minute)
	if err == nil || !strings.Contains(err.Error(), "phases") {
		t.Errorf("client that never signalled: %v", err)
	}
}
