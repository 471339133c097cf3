// Command gyre-bench is gyre's benchmark harness: it compares gyre
// (gyre-echo -backend gyre -engine io_uring, or the engine -engine names;
// ingestd), gyre on its epoll engine (gyre-echo -backend gyre -engine
// epoll: the server "gyre-epoll", in the HTTP, echo and idle cells), the
// net package (gyre-echo -backend net, ingest-net) and gnet v2 (gnet-echo)
// on the same machine, in the same run, with the server pinned to one CPU
// and the load to another.
//
//	gyre-bench run -matrix quick|full [flags]   the harness (make bench / make bench-full)
//	gyre-bench report DIR                       re-render summary.md and charts from DIR/results.json
//	gyre-bench echo -addr A -conns N -size B -window W -duration D [-rate R -burst ON/OFF -slow-clients F]
//	gyre-bench accept -addr A -workers N -duration D
//	gyre-bench idle -addr A -conns N
//
// The load subcommands print one JSON object on stdout (idle: two lines)
// and exit 1 when they saw errors. `run` exits 1 when a server fails, a
// load client sees errors, or the results are too noisy to trust; then no
// table or charts are written.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gyre-io/gyre/bench/internal/harness"
	"github.com/gyre-io/gyre/bench/internal/load"
	"golang.org/x/sys/unix"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: gyre-bench run|report|echo|accept|idle [flags]  (gyre-bench CMD -h for flags)`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr)
	case "report":
		return cmdReport(args[1:], stdout, stderr)
	case "echo":
		return cmdEcho(ctx, args[1:], stdout, stderr)
	case "accept":
		return cmdAccept(ctx, args[1:], stdout, stderr)
	case "idle":
		return cmdIdle(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "gyre-bench: unknown command %q\n%s\n", args[0], usage)
	return 2
}

func list(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, code := runConfig(args, stderr)
	if code != 0 {
		return code
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "gyre-bench: %v\n", err)
		return 1
	}
	cfg.Self = self
	// Servers and clients inherit it; Go programs raise it again themselves.
	if _, err := load.RaiseFileLimit(); err != nil {
		fmt.Fprintf(stderr, "gyre-bench: warning: raising RLIMIT_NOFILE: %v\n", err)
	}
	if err := pinSelf(cfg.CPULoad); err != nil {
		fmt.Fprintf(stderr, "gyre-bench: FAIL: pinning to CPU %d: %v\n", cfg.CPULoad, err)
		return 1
	}
	dir, err := harness.Main(ctx, cfg, stderr)
	if errors.Is(err, harness.ErrNoisy) && cfg.AllowNoisy {
		// The table was written, marked: show it, then fail all the same.
		if b, rerr := os.ReadFile(filepath.Join(dir, "summary.md")); rerr == nil {
			_, _ = stdout.Write(b)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "gyre-bench: FAIL: %v\n", err)
		return 1
	}
	b, err := os.ReadFile(filepath.Join(dir, "summary.md"))
	if err != nil {
		fmt.Fprintf(stderr, "gyre-bench: FAIL: %v\n", err)
		return 1
	}
	_, _ = stdout.Write(b)
	fmt.Fprintf(stderr, "gyre-bench: results, table and charts in %s\n", dir)
	return 0
}

// runConfig parses the flags of `gyre-bench run` and fills in the
// matrix's defaults; a non-zero code is the exit status of a usage error.
func runConfig(args []string, stderr io.Writer) (harness.Config, int) {
	fs := flag.NewFlagSet("gyre-bench run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg harness.Config
	fs.StringVar(&cfg.Matrix, "matrix", "quick", "quick (make bench, < 10 min on 2 cores) or full (make bench-full)")
	workloads := fs.String("workloads", strings.Join(harness.AllWorkloads, ","), "comma-separated subset of the workloads")
	servers := fs.String("servers", strings.Join(harness.AllServers, ","), "comma-separated servers (net is required: the baseline of every ratio); gyre-epoll joins the http, echo and idle cells only")
	fs.StringVar(&cfg.Engine, "engine", harness.EngineIOUring, "engine of the gyre server (gyre-echo -engine, and ingestd --engine if it has the flag): io_uring, epoll, net or auto; a server that logs another engine than the one asked for fails the run (auto excepted: the one it settled on is recorded)")
	cells := fs.String("cells", "", "comma-separated cell IDs or globs (e.g. http-c64,echo-*,idle-*) to run only those, plus the peak cells the latency cells need; empty: every cell of -workloads")
	fs.IntVar(&cfg.Runs, "runs", 0, "measured runs per server and cell (default: quick 3, full 5)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "measured load per run, whole seconds (default: quick 3s, full 5s)")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "warm-up load before each measured run, whole seconds")
	fs.IntVar(&cfg.CPUServer, "cpu-server", 0, "CPU the servers are pinned to")
	fs.IntVar(&cfg.CPULoad, "cpu-load", 1, "CPU the load clients (and this harness) are pinned to")
	fs.IntVar(&cfg.Port, "port", 7600, "first 127.0.0.1 port of the range the servers listen on")
	fs.IntVar(&cfg.PortSpan, "port-span", 200, "size of that port range (each server start takes the next port)")
	fs.StringVar(&cfg.RootBin, "root-bin", "../bin", "directory with gyre-echo, ingestd, ingest-load (make build)")
	fs.StringVar(&cfg.BenchBin, "bench-bin", "bin", "directory with gnet-echo, ingest-net (bench module)")
	fs.StringVar(&cfg.OutDir, "out", "results", "results directory (a subdirectory per run; logs under tmp/)")
	src := fs.String("src", "127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5", "loopback source addresses the load clients spread connections over (each has its own ~28k ephemeral ports)")
	fs.Float64Var(&cfg.QuietBusy, "quiet-busy", 10, "before each run, wait until both CPUs are below this busy percentage")
	fs.DurationVar(&cfg.QuietTimeout, "quiet-timeout", 20*time.Second, "longest wait for quiet CPUs before a run")
	fs.Float64Var(&cfg.ContendedPct, "contended-pct", 8, "a run is contended when a CPU spent more than this percentage of it on other work")
	fs.IntVar(&cfg.Retries, "retries", 2, "repeat a contended run up to this many times")
	fs.DurationVar(&cfg.NoiseBudget, "noise-budget", 0, "total time for waiting out other load and repeating runs or cells (default: quick 150s, full 15m)")
	fs.Float64Var(&cfg.SpreadMax, "spread-max", 0.25, "noise gate: the largest spread of a gated figure (marked † in the table) over the runs of gyre, of gyre-epoll or of net (gnet's is shown and marked (noisy) when over it, not gated; latency-under-load cells have no gated figure), (max-min)/median, from 5 runs without the server's lowest and highest run (one outlying run passes, two groups of runs do not); a cell over it is measured again and judged on both passes pooled, then the harness fails")
	fs.BoolVar(&cfg.AllowNoisy, "allow-noisy", false, "write tables and charts even when cells stayed noisy (they are marked NOISY; the exit status is still 1)")
	fs.DurationVar(&cfg.IdleSettle, "idle-settle", 2*time.Second, "idle workload: wait after the connections are open before sampling RSS")
	fs.IntVar(&cfg.IdlePerHolder, "idle-per-holder", 10000, "idle workload: connections per holder process")
	fs.DurationVar(&cfg.StartTimeout, "start-timeout", 10*time.Second, "longest wait for a server to listen")
	fs.IntVar(&cfg.ServerGoMaxProcs, "server-gomaxprocs", 0, "GOMAXPROCS for the servers (0: Go's default, 1 on one pinned CPU)")
	progress := fs.String("progress", "auto", "progress bar on stderr: auto (when stderr is a terminal), on, off")
	if err := fs.Parse(args); err != nil {
		return cfg, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gyre-bench run: unexpected arguments %q\n", fs.Args())
		return cfg, 2
	}
	engine, err := harness.ParseEngine(cfg.Engine)
	if err != nil {
		fmt.Fprintf(stderr, "gyre-bench run: -engine: %v\n", err)
		return cfg, 2
	}
	cfg.Engine = engine
	cfg.Workloads, cfg.Servers, cfg.SrcIPs, cfg.Cells = list(*workloads), list(*servers), list(*src), list(*cells)
	full := cfg.Matrix == "full"
	if cfg.Runs == 0 {
		cfg.Runs = map[bool]int{false: 3, true: 5}[full]
	}
	if cfg.Duration == 0 {
		cfg.Duration = map[bool]time.Duration{false: 3 * time.Second, true: 5 * time.Second}[full]
	}
	if cfg.NoiseBudget == 0 {
		cfg.NoiseBudget = map[bool]time.Duration{false: 150 * time.Second, true: 15 * time.Minute}[full]
	}
	switch *progress {
	case "on":
		cfg.Progress = true
	case "auto":
		cfg.Progress = isTerminal(stderr)
	}
	cfg.Args = append([]string{"gyre-bench", "run"}, args...)
	return cfg, 0
}

// pinSelf pins every thread of this process to cpu (new threads inherit
// it), so the harness's own work lands on the load CPU.
func pinSelf(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
			return err
		}
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func cmdReport(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: gyre-bench report RESULTS_DIR")
		return 2
	}
	res, err := harness.LoadResults(filepath.Join(args[0], "results.json"))
	if err != nil {
		fmt.Fprintf(stderr, "gyre-bench: %v\n", err)
		return 1
	}
	if err := harness.Render(res, args[0]); err != nil {
		fmt.Fprintf(stderr, "gyre-bench: %v\n", err)
		return 1
	}
	b, _ := os.ReadFile(filepath.Join(args[0], "summary.md"))
	_, _ = stdout.Write(b)
	return 0
}

const syncUsage = "bracket the measured phase for the harness: write \"start\" and \"end\" lines on descriptor 3 and wait for a line on stdin after each"

// syncHook is the client's side of -sync: the harness samples the
// server's CPU time when it reads a phase line on descriptor 3, then
// answers with a line on stdin.
func syncHook() func(string) error {
	out := os.NewFile(3, "sync")
	in := bufio.NewReader(os.Stdin)
	return func(phase string) error {
		if _, err := fmt.Fprintln(out, phase); err != nil {
			return err
		}
		_, err := in.ReadString('\n')
		return err
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	return enc.Encode(v)
}

func cmdEcho(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gyre-bench echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg load.EchoConfig
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:7400", "echo server")
	fs.IntVar(&cfg.Conns, "conns", 64, "connections")
	fs.IntVar(&cfg.Size, "size", 64, "bytes per message")
	fs.IntVar(&cfg.Window, "window", 16, "unanswered messages per connection")
	fs.DurationVar(&cfg.Duration, "duration", 3*time.Second, "send phase")
	fs.Float64Var(&cfg.Rate, "rate", 0, "messages/s over all connections (0: closed loop, as fast as the window allows)")
	burst := fs.String("burst", "", "ON/OFF, e.g. 100ms/100ms: with -rate, send only while ON (same average rate)")
	fs.Float64Var(&cfg.SlowFraction, "slow-clients", 0, "fraction of connections that stop reading after -slow-after (with -rate)")
	fs.DurationVar(&cfg.SlowAfter, "slow-after", 200*time.Millisecond, "when slow clients stop reading")
	src := fs.String("src", "", "comma-separated local source addresses")
	sync := fs.Bool("sync", false, syncUsage)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *sync {
		cfg.Sync = syncHook()
	}
	if *burst != "" {
		on, off, ok := strings.Cut(*burst, "/")
		var e1, e2 error
		cfg.BurstOn, e1 = time.ParseDuration(on)
		cfg.BurstOff, e2 = time.ParseDuration(off)
		if !ok || e1 != nil || e2 != nil {
			fmt.Fprintf(stderr, "gyre-bench echo: -burst %q: want ON/OFF durations\n", *burst)
			return 2
		}
	}
	cfg.SrcIPs = list(*src)
	res, err := load.RunEcho(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "gyre-bench echo: %v\n", err)
		return 2
	}
	return finish("echo", stdout, stderr, res, res.OK, res.Errors, res.ErrorSamples)
}

// finish prints a load client's result as JSON and turns it into the exit
// status: 1, with the error samples on stderr, when the run failed.
func finish(cmd string, stdout, stderr io.Writer, res any, ok bool, errs int, samples []string) int {
	if err := printJSON(stdout, res); err != nil {
		return 1
	}
	if !ok {
		fmt.Fprintf(stderr, "gyre-bench %s: FAILED: %d errors: %s\n", cmd, errs, strings.Join(samples, "; "))
		return 1
	}
	return 0
}

func cmdAccept(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gyre-bench accept", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg load.AcceptConfig
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:7400", "HTTP server (gyre-echo -mode http)")
	fs.IntVar(&cfg.Workers, "workers", 32, "concurrent connect-request-close loops")
	fs.DurationVar(&cfg.Duration, "duration", 3*time.Second, "how long")
	src := fs.String("src", "", "comma-separated local source addresses")
	sync := fs.Bool("sync", false, syncUsage)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *sync {
		cfg.Sync = syncHook()
	}
	cfg.SrcIPs = list(*src)
	res, err := load.RunAccept(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "gyre-bench accept: %v\n", err)
		return 2
	}
	return finish("accept", stdout, stderr, res, res.OK, res.Errors, res.ErrorSamples)
}

func cmdIdle(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gyre-bench idle", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg load.IdleConfig
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:7400", "echo server")
	fs.IntVar(&cfg.Conns, "conns", 10000, "connections to open and hold")
	fs.DurationVar(&cfg.MaxHold, "max-hold", 5*time.Minute, "release the connections after this long even without a signal")
	src := fs.String("src", "", "comma-separated local source addresses")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg.SrcIPs = list(*src)
	res, err := load.RunIdle(ctx, cfg, os.Stdin, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "gyre-bench idle: %v\n", err)
		return 1
	}
	if !res.OK {
		fmt.Fprintf(stderr, "gyre-bench idle: FAILED: %d errors: %s\n", res.Errors, strings.Join(res.ErrorSamples, "; "))
		return 1
	}
	return 0
}
