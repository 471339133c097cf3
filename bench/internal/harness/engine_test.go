package harness

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// gyre-epoll (gyre-echo on the epoll engine) is measured in the HTTP,
// echo and idle cells of the quick matrix, beside gyre, gnet and net,
// and nowhere else.
func TestQuickPlanGyreEpoll(t *testing.T) {
	m, _ := preset("quick")
	cells := plan(m, AllWorkloads, AllServers)
	with := map[string]bool{}
	for _, c := range cells {
		if slices.Contains(c.Servers, SGyreEpoll) {
			with[c.ID] = true
			if !slices.Equal(c.Servers, AllServers) {
				t.Errorf("%s: servers %v, want %v", c.ID, c.Servers, AllServers)
			}
		} else if c.Workload != WIngest && c.Workload != WIngestLatency && !slices.Equal(c.Servers, []string{SGyre, SGnet, SNet}) {
			t.Errorf("%s: servers %v, want gyre, gnet and net", c.ID, c.Servers)
		}
	}
	want := []string{"http-c64", "http-c512", "echo-s64-c64", "echo-s16384-c64", "idle-10000"}
	for _, id := range want {
		if !with[id] {
			t.Errorf("gyre-epoll not in %s", id)
		}
	}
	if len(with) != len(want) {
		t.Errorf("gyre-epoll in %v, want only %v", with, want)
	}
	// Without gyre-epoll in -servers, the plan is what it was.
	for _, c := range plan(m, AllWorkloads, []string{SGyre, SGnet, SNet}) {
		if slices.Contains(c.Servers, SGyreEpoll) {
			t.Errorf("%s has gyre-epoll, not asked for", c.ID)
		}
	}
}

func TestFilterCells(t *testing.T) {
	m, _ := preset("quick")
	all := plan(m, AllWorkloads, AllServers)
	ids := func(cs []*Cell) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return out
	}
	got, err := filterCells(all, []string{"http-c64", "idle-*"})
	if err != nil || !slices.Equal(ids(got), []string{"http-c64", "idle-10000"}) {
		t.Errorf("http-c64,idle-*: %v (%v)", ids(got), err)
	}
	// A latency cell brings the peak cell its offered load comes from.
	got, _ = filterCells(all, []string{"latency-*"})
	if !slices.Equal(ids(got), []string{"echo-s64-c64", "latency-steady-50"}) {
		t.Errorf("latency-*: %v", ids(got))
	}
	if got, _ := filterCells(all, nil); len(got) != len(all) {
		t.Errorf("no filter: %d of %d cells", len(got), len(all))
	}
	if _, err := filterCells(all, []string{"[http"}); err == nil {
		t.Error("bad glob accepted")
	}
}

func TestServerArgsEngines(t *testing.T) {
	h := &H{bins: map[string]string{"gyre-echo": "gyre-echo", "ingestd": "ingestd"}}
	args := func(srv, workload string) string {
		t.Helper()
		a, err := h.serverArgs(srv, workload, "http", "127.0.0.1:1")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(a, " ")
	}
	if got := args(SGyre, WHTTP); got != "gyre-echo -addr 127.0.0.1:1 -mode http -backend gyre -engine io_uring -reactors 1 -grace 1s" {
		t.Errorf("gyre: %s", got)
	}
	if got := args(SGyreEpoll, WEcho); got != "gyre-echo -addr 127.0.0.1:1 -mode http -backend gyre -engine epoll -reactors 1 -grace 1s" {
		t.Errorf("gyre-epoll: %s", got)
	}
	if got := args(SGyre, WIngest); strings.Contains(got, "--engine") {
		t.Errorf("ingestd without --engine given one: %s", got)
	}
	h.cfg.Engine, h.ingestdHasEngine = EngineNet, true
	if got := args(SGyre, WHTTP); !strings.Contains(got, " -engine net ") {
		t.Errorf("gyre -engine net: %s", got)
	}
	if got := args(SGyreEpoll, WHTTP); !strings.Contains(got, " -engine epoll ") {
		t.Errorf("gyre-epoll follows -engine: %s", got)
	}
	if got := args(SGyre, WIngest); !strings.HasSuffix(got, " --engine net") {
		t.Errorf("ingestd: %s", got)
	}
	if _, err := h.serverArgs(SGyreEpoll, WIngest, "", "127.0.0.1:1"); err == nil {
		t.Error("gyre-epoll has no ingest server, yet got one")
	}
}

func TestConfigCheckEngineAndServers(t *testing.T) {
	ok := Config{Runs: 1, Duration: time.Second, CPUServer: 0, CPULoad: 1, Port: 7600, PortSpan: 10, SpreadMax: 0.25,
		Workloads: []string{WHTTP}, Servers: AllServers, Engine: "uring", Cells: []string{"http-*"}}
	if err := ok.check(); err != nil {
		t.Fatal(err)
	}
	if ok.Engine != EngineIOUring {
		t.Errorf("-engine uring checked into %q", ok.Engine)
	}
	for name, f := range map[string]func(c *Config){
		"unknown engine":           func(c *Config) { c.Engine = "kqueue" },
		"epoll twice":              func(c *Config) { c.Engine = EngineEpoll },
		"server twice":             func(c *Config) { c.Servers = []string{SGyre, SNet, SGyre} },
		"unknown server":           func(c *Config) { c.Servers = []string{"gyre-uring", SNet} },
		"bad cell pattern":         func(c *Config) { c.Cells = []string{"[x"} },
		"gyre-epoll without a net": func(c *Config) { c.Servers = []string{SGyreEpoll} },
	} {
		c := ok
		f(&c)
		if c.check() == nil {
			t.Errorf("%s accepted", name)
		}
	}
	// -engine epoll without gyre-epoll is fine.
	c := ok
	c.Engine, c.Servers = EngineEpoll, []string{SGyre, SNet}
	if err := c.check(); err != nil {
		t.Errorf("-engine epoll, gyre and net: %v", err)
	}
}

func TestLoggedEngine(t *testing.T) {
	for log, want := range map[string]string{
		"time=x level=INFO msg=listening addr=127.0.0.1:7600 backend=gyre engine=io_uring mode=http reactors=1\n": "io_uring",
		// An auto engine that fell back warns first, with its own engine=.
		"time=x level=WARN msg=\"io_uring refused; serving on epoll instead\" engine=epoll cause=EPERM\n" +
			"time=x level=INFO msg=listening addr=127.0.0.1:7600 backend=gyre engine=epoll mode=echo reactors=1\n": "epoll",
		"time=x level=INFO msg=\"ingest listening\" transport=tcp addr=127.0.0.1:7400 reactors=1 engine=io_uring overload=reject\n": "io_uring",
		"time=x level=INFO msg=listening addr=127.0.0.1:7600 backend=net mode=http gomaxprocs=1\n":                                  "",
		"": "",
	} {
		if got := loggedEngine([]byte(log)); got != want {
			t.Errorf("loggedEngine(%q) = %q, want %q", log, got, want)
		}
	}
}

// fakeServerHarness is a harness whose gyre-echo is the test binary's
// fake (fakeGyreEcho), logging the engine FAKE_ENGINE names.
func fakeServerHarness(t *testing.T, fakeEngine string) *H {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	cpu := 0
	for !set.IsSet(cpu) {
		cpu++
	}
	dir := t.TempDir()
	fake := filepath.Join(dir, "gyre-echo")
	script := fmt.Sprintf("#!/bin/sh\nexec env GYRE_HARNESS_HELPER=fake-gyre-echo FAKE_ENGINE=%s %s -test.run='^$' \"$@\"\n", fakeEngine, os.Args[0])
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return &H{ctx: context.Background(), cfg: Config{CPUServer: cpu, PortSpan: 1, StartTimeout: 5 * time.Second},
		bins: map[string]string{"gyre-echo": fake}}
}

// startFake starts a server of h on a port free right now (a fixed one
// may be some other test's ephemeral port on a busy machine).
func startFake(t *testing.T, h *H, srv string) (*server, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.cfg.Port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return h.startServer(srv, WHTTP, "http", filepath.Join(t.TempDir(), "server.log"))
}

// The harness records the engine each gyre server logged, and fails a
// server that runs on another engine than the one asked for (the table
// would name the wrong one) or names none.
func TestStartServerChecksEngine(t *testing.T) {
	h := fakeServerHarness(t, "")
	for srv, want := range map[string]string{SGyre: EngineIOUring, SGyreEpoll: EngineEpoll} {
		s, err := startFake(t, h, srv)
		if err != nil {
			t.Fatalf("%s: %v", srv, err)
		}
		s.stop()
		if s.engine != want {
			t.Errorf("%s logged engine %q, want %q", srv, s.engine, want)
		}
	}

	h = fakeServerHarness(t, "epoll") // asked io_uring, runs on epoll
	_, err := startFake(t, h, SGyre)
	if err == nil || !strings.Contains(err.Error(), "gyre server runs on the epoll engine, not the io_uring engine it was asked for") {
		t.Errorf("engine mismatch: %v", err)
	}
	// -engine auto takes whatever the server settled on, and records it.
	h.cfg.Engine = EngineAuto
	s, err := startFake(t, h, SGyre)
	if err != nil {
		t.Fatalf("auto: %v", err)
	}
	s.stop()
	if s.engine != EngineEpoll {
		t.Errorf("auto: engine %q, want epoll", s.engine)
	}

	h = fakeServerHarness(t, "none")
	_, err = startFake(t, h, SGyreEpoll)
	if err == nil || !strings.Contains(err.Error(), "logged no engine=") {
		t.Errorf("no engine logged: %v", err)
	}
}

func TestLoggedEnginesInEnv(t *testing.T) {
	h := &H{cfg: Config{Engine: EngineAuto}, cells: []*Cell{
		{Workload: WHTTP, Servers: AllServers},
		{Workload: WIngest, Servers: []string{SGyre, SNet}},
	}}
	asked := askedEngines(h)
	want := map[string]ServerEngine{SGyre: {Asked: "auto"}, SGyreEpoll: {Asked: "epoll"}, "ingestd": {Asked: "auto (no --engine flag)"}}
	if fmt.Sprint(asked) != fmt.Sprint(want) {
		t.Errorf("asked %v, want %v", asked, want)
	}
	var runs []*Run
	add := func(wl, srv, engine string, n int) {
		for range n {
			runs = append(runs, &Run{Workload: wl, Server: srv, Engine: engine})
		}
	}
	add(WHTTP, SGyre, "io_uring", 5)
	add(WHTTP, SGyre, "epoll", 1)
	add(WHTTP, SGyreEpoll, "epoll", 6)
	add(WHTTP, SNet, "", 6)
	add(WIngest, SGyre, "io_uring", 3)
	got := loggedEngines(runs, asked)
	want = map[string]ServerEngine{
		SGyre:      {Asked: "auto", Logged: "io_uring (5 runs), epoll (1 run)"},
		SGyreEpoll: {Asked: "epoll", Logged: "epoll"},
		"ingestd":  {Asked: "auto (no --engine flag)", Logged: "io_uring"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("logged %v\nwant %v", got, want)
	}
	var b bytes.Buffer
	WriteEnv(&b, &Results{Env: Env{Runs: 3, Engines: got}})
	line := "- gyre's engines, as each server named it on its start-up line: gyre io_uring (5 runs), epoll (1 run) (asked: auto); " +
		"gyre-epoll epoll (asked: epoll); ingestd io_uring (asked: auto (no --engine flag))\n"
	if !strings.Contains(b.String(), line) {
		t.Errorf("env block lacks %q:\n%s", line, b.String())
	}
}

// The table has a gyre-epoll column and its ratio to net, the heads name
// the engines the servers logged, and results from before gyre had
// engines keep their heads.
func TestTableShowsGyreEpoll(t *testing.T) {
	c := &Cell{ID: "http-c64", Workload: WHTTP, Label: "64 conns", Servers: AllServers}
	c.Summary = summarize(WHTTP, slices.Concat(runs(SGyre, 150, 150), runs(SGyreEpoll, 130, 130), runs(SGnet, 120, 120), runs(SNet, 100, 100)))
	env := Env{Engines: map[string]ServerEngine{SGyre: {Asked: "io_uring", Logged: "io_uring"}, SGyreEpoll: {Asked: "epoll", Logged: "epoll"}}}
	var b bytes.Buffer
	WriteTable(&b, &Results{Env: env, Cells: []*Cell{c}})
	for _, want := range []string{
		"| cell | metric | gyre (io_uring) | gyre (epoll) | gnet v2 (epoll) | net (goroutine/conn) | gyre/net | gyre-epoll/net | gnet/net | spread |",
		"| 64 conns | requests/s | 150 | 130 | 120 | 100 | 1.50× | 1.30× | 1.20× | 0% |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	// gyre run on -engine auto that fell back: the head says so.
	env.Engines[SGyre] = ServerEngine{Asked: "auto", Logged: "epoll"}
	if got := serverName(env, WHTTP, SGyre); got != "gyre (epoll)" {
		t.Errorf("fallen-back gyre: %q", got)
	}
	if got := serverName(Env{}, WHTTP, SGyre); got != "gyre (io_uring)" {
		t.Errorf("old results: %q", got)
	}
	if got := serverName(Env{}, WIngest, SGyre); got != "gyre (ingestd)" {
		t.Errorf("old ingest results: %q", got)
	}
	env.Engines["ingestd"] = ServerEngine{Asked: "io_uring", Logged: "io_uring"}
	if got := serverName(env, WIngest, SGyre); got != "gyre (ingestd, io_uring)" {
		t.Errorf("ingestd: %q", got)
	}
}

// gyre-epoll is ours: its gated figures fail the cell as gyre's do.
func TestGyreEpollIsGated(t *testing.T) {
	sum := summarize(WHTTP, slices.Concat(runs(SGyre, 100, 110, 105), runs(SGyreEpoll, 50, 80, 60), runs(SNet, 100, 101, 102)))
	why, peer := noisy(WHTTP, sum, 0.25)
	if len(why) != 1 || !strings.HasPrefix(why[0], "gyre-epoll requests / server CPU-s spread 50%") || len(peer) != 0 {
		t.Errorf("why %v; peer %v", why, peer)
	}
	if !slices.Contains(gatedServers, SGyreEpoll) || slices.Contains(gatedServers, SGnet) {
		t.Errorf("gated servers %v", gatedServers)
	}
}

// gyre raises GOMAXPROCS on one pinned CPU (reactors blocked in the
// kernel keep their Ps): the record says what it ran with.
func TestLoggedGoMaxProcs(t *testing.T) {
	for log, want := range map[string]string{
		"time=x level=INFO msg=\"raised GOMAXPROCS so waiting reactors keep their Ps\" from=1 to=3\n" +
			"time=x level=INFO msg=listening addr=127.0.0.1:7600 backend=gyre engine=io_uring mode=http reactors=1\n": "3",
		"time=x level=INFO msg=listening addr=127.0.0.1:7600 backend=net mode=http gomaxprocs=1\n": "1",
		"2026/01/01 gnet listening\n": "",
	} {
		if got := loggedGoMaxProcs([]byte(log)); got != want {
			t.Errorf("loggedGoMaxProcs(%q) = %q, want %q", log, got, want)
		}
	}
	runs := []*Run{{Server: SGyre, GoMaxProcs: "3"}, {Server: SGyreEpoll, GoMaxProcs: "3"}, {Server: SNet, GoMaxProcs: "1"}, {Server: SGnet, GoMaxProcs: "1"}}
	if got := serverGoMaxProcs(runs, "?"); got != "1 (as logged by gnet, net); 3 (as logged by gyre, gyre-epoll); gyre: 1 reactor thread" {
		t.Errorf("serverGoMaxProcs = %q", got)
	}
}
