package harness

import (
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/gyre-io/gyre/bench/internal/procfs"
)

// Env is the machine and setup every result is recorded with.
type Env struct {
	Kernel        string             `json:"kernel"`
	CPUModel      string             `json:"cpu_model"`
	CPUsOnline    int                `json:"cpus_online"`
	GoVersion     string             `json:"go_version"`
	ServerGOMAX   string             `json:"server_gomaxprocs"`
	LoadGOMAX     string             `json:"load_gomaxprocs"`
	Wrk           string             `json:"wrk"`
	GitRev        string             `json:"git_rev"`
	GitDirty      int                `json:"git_dirty_paths"`
	Command       string             `json:"command"`
	Invocation    string             `json:"invocation,omitempty"` // what the user ran (make bench), from GYRE_BENCH_INVOCATION
	Matrix        string             `json:"matrix"`
	Runs          int                `json:"runs"`
	Duration      string             `json:"duration"`
	Warmup        string             `json:"warmup"`
	CPUServer     int                `json:"cpu_server"`
	CPULoad       int                `json:"cpu_load"`
	SpreadMax     float64            `json:"spread_max"`
	NoiseGate     string             `json:"noise_gate,omitempty"`    // the gate applied (gateRule); "" before it trimmed and pooled
	GatedServers  []string           `json:"gated_servers,omitempty"` // the servers the gate judged; none: all (before it judged only gyre and net)
	ContendedPct  float64            `json:"contended_pct"`
	NoFile        string             `json:"rlimit_nofile"` // soft/hard, as the servers and clients inherit it
	PortRange     string             `json:"ip_local_port_range"`
	TWReuse       string             `json:"tcp_tw_reuse"`
	Somaxconn     string             `json:"somaxconn"`
	SrcIPs        []string           `json:"source_ips"`
	GoFlags       string             `json:"goflags,omitempty"`
	Binaries      map[string]BinInfo `json:"binaries"`
	Started       string             `json:"started"`
	LoadAvgBefore string             `json:"loadavg_before"`
	// Engines: the engine of each of gyre's servers, keyed "gyre",
	// "gyre-epoll" (gyre-echo) and "ingestd" (the gyre server of the
	// ingest cells); none in results from before gyre had engines.
	Engines map[string]ServerEngine `json:"engines,omitempty"`
}

func firstLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
}

func cmdOut(name string, args ...string) string {
	b, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(b) == 0 {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func captureEnv(h *H) Env {
	e := Env{
		Kernel:     firstLine("/proc/sys/kernel/osrelease"),
		CPUsOnline: runtime.NumCPU(),
		GoVersion:  runtime.Version(),
		// The servers run under taskset on one CPU: the Go runtime sizes
		// GOMAXPROCS from the affinity mask, so 1 unless overridden.
		ServerGOMAX:   "1 (affinity: one CPU)",
		LoadGOMAX:     "1 (affinity: one CPU)",
		Command:       strings.Join(h.cfg.Args, " "),
		Invocation:    os.Getenv("GYRE_BENCH_INVOCATION"),
		Matrix:        h.cfg.Matrix,
		Runs:          h.cfg.Runs,
		Duration:      h.cfg.Duration.String(),
		Warmup:        h.cfg.Warmup.String(),
		CPUServer:     h.cfg.CPUServer,
		CPULoad:       h.cfg.CPULoad,
		SpreadMax:     h.cfg.SpreadMax,
		NoiseGate:     gateRule(h.cfg.SpreadMax),
		GatedServers:  gatedServers,
		ContendedPct:  h.cfg.ContendedPct,
		PortRange:     strings.Join(strings.Fields(firstLine("/proc/sys/net/ipv4/ip_local_port_range")), "-"),
		TWReuse:       firstLine("/proc/sys/net/ipv4/tcp_tw_reuse"),
		Somaxconn:     firstLine("/proc/sys/net/core/somaxconn"),
		SrcIPs:        h.cfg.SrcIPs,
		GoFlags:       os.Getenv("GOFLAGS"),
		Binaries:      map[string]BinInfo{},
		Started:       time.Now().UTC().Format(time.RFC3339),
		LoadAvgBefore: firstLine("/proc/loadavg"),
	}
	e.Engines = askedEngines(h)
	if h.cfg.ServerGoMaxProcs > 0 {
		e.ServerGOMAX = strconv.Itoa(h.cfg.ServerGoMaxProcs) + " (-server-gomaxprocs)"
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				e.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	e.Wrk = strings.SplitN(cmdOut("wrk", "-v"), "\n", 2)[0]
	e.GitRev = cmdOut("git", "rev-parse", "HEAD")
	if st := cmdOut("git", "status", "--porcelain"); st != "?" && st != "" {
		e.GitDirty = len(strings.Split(st, "\n"))
	}
	if soft, hard, err := procfs.OpenFileLimits(os.Getpid()); err == nil {
		e.NoFile = limitText(soft) + "/" + limitText(hard)
	}
	for name, p := range h.bins {
		e.Binaries[name] = binInfo(p)
	}
	return e
}

// ServerEngine is the engine one of gyre's servers ran on.
type ServerEngine struct {
	// Asked is the engine the harness asked for (-engine, --engine);
	// "auto (no --engine flag)" for an ingestd without the flag.
	Asked string `json:"asked"`
	// Logged is the engine the server named in its start-up line
	// ("engine=..."), over all its runs: "io_uring", or, should they
	// differ (auto falling back on some runs), "io_uring (5 runs), epoll
	// (1 run)"; "" when no run of it logged one (or, in env.json, before
	// any ran).
	Logged string `json:"logged,omitempty"`
}

// engineKey is the Env.Engines key of a server in a workload: the
// server's name, "ingestd" for gyre's ingest server, "" for the servers
// that are not gyre's.
func engineKey(workload, srv string) string {
	switch {
	case srv == SGyre && (workload == WIngest || workload == WIngestLatency):
		return "ingestd"
	case srv == SGyre || srv == SGyreEpoll:
		return srv
	}
	return ""
}

// askedEngine is the engine the harness asks a server for: "" for the
// servers that are not gyre's, and for an ingestd without --engine.
func (h *H) askedEngine(workload, srv string) string {
	switch engineKey(workload, srv) {
	case "ingestd":
		if !h.ingestdHasEngine {
			return ""
		}
		return h.gyreEngine()
	case SGyre:
		return h.gyreEngine()
	case SGyreEpoll:
		return EngineEpoll
	}
	return ""
}

// gyreEngine is the engine of the "gyre" server (-engine).
func (h *H) gyreEngine() string {
	if h.cfg.Engine == "" {
		return EngineIOUring
	}
	return h.cfg.Engine
}

// askedEngines lists the gyre servers the planned cells run, with the
// engine each is asked for.
func askedEngines(h *H) map[string]ServerEngine {
	out := map[string]ServerEngine{}
	for _, c := range h.cells {
		for _, srv := range c.Servers {
			k := engineKey(c.Workload, srv)
			if k == "" {
				continue
			}
			asked := h.askedEngine(c.Workload, srv)
			if asked == "" {
				asked = EngineAuto + " (no --engine flag)"
			}
			out[k] = ServerEngine{Asked: asked}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// loggedEngines fills in the engines the servers logged over their runs.
func loggedEngines(runs []*Run, asked map[string]ServerEngine) map[string]ServerEngine {
	counts := map[string]map[string]int{}
	var order []string // engines in the order first logged, per server
	for _, r := range runs {
		k := engineKey(r.Workload, r.Server)
		if k == "" || r.Engine == "" {
			continue
		}
		if counts[k] == nil {
			counts[k] = map[string]int{}
		}
		if counts[k][r.Engine] == 0 {
			order = append(order, k+"\x00"+r.Engine)
		}
		counts[k][r.Engine]++
	}
	if len(counts) == 0 {
		return asked
	}
	out := map[string]ServerEngine{}
	for k, v := range asked {
		out[k] = v
	}
	for k, n := range counts {
		se := out[k]
		if len(n) == 1 {
			for e := range n {
				se.Logged = e
			}
		} else {
			var parts []string
			for _, ke := range order {
				key, e, _ := strings.Cut(ke, "\x00")
				if key != k {
					continue
				}
				unit := "runs"
				if n[e] == 1 {
					unit = "run"
				}
				parts = append(parts, fmt.Sprintf("%s (%d %s)", e, n[e], unit))
			}
			se.Logged = strings.Join(parts, ", ")
		}
		out[k] = se
	}
	return out
}

func limitText(n int64) string {
	if n < 0 {
		return "unlimited"
	}
	return strconv.FormatInt(n, 10)
}

// BinInfo identifies a binary the harness ran: its hash, and what the Go
// toolchain stamped into it (version, commit, whether the tree had
// uncommitted changes, build flags).
type BinInfo struct {
	SHA256   string `json:"sha256_12"`
	Go       string `json:"go,omitempty"`
	Revision string `json:"vcs_revision,omitempty"`
	Modified string `json:"vcs_modified,omitempty"`
	LDFlags  string `json:"ldflags,omitempty"`
	GCFlags  string `json:"gcflags,omitempty"`
}

func binInfo(path string) BinInfo {
	bi := BinInfo{SHA256: sha12(path)}
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return bi
	}
	bi.Go = info.GoVersion
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			bi.Revision = s.Value
		case "vcs.modified":
			bi.Modified = s.Value
		case "-ldflags":
			bi.LDFlags = s.Value
		case "-gcflags":
			bi.GCFlags = s.Value
		}
	}
	return bi
}

// String is the one-line form of the environment block.
func (b BinInfo) String() string {
	var parts []string
	if b.Go != "" {
		parts = append(parts, b.Go)
	}
	if b.Revision != "" {
		rev := b.Revision[:min(len(b.Revision), 12)]
		if b.Modified == "true" {
			rev += "+uncommitted"
		}
		parts = append(parts, rev)
	}
	if b.LDFlags != "" {
		parts = append(parts, "-ldflags="+b.LDFlags)
	}
	if b.GCFlags != "" {
		parts = append(parts, "-gcflags="+b.GCFlags)
	}
	parts = append(parts, "sha256 "+b.SHA256)
	return strings.Join(parts, ", ")
}
