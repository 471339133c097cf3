package harness

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/gyre-io/gyre/bench/internal/procfs"
)

// server is one running server process, pinned to the server CPU.
type server struct {
	name   string
	cmd    *exec.Cmd
	pid    int
	addr   string
	log    string
	args   []string
	engine string        // gyre's servers: the engine named in the start-up line
	exited chan struct{} // closed when the process has been waited for
	err    error         // Wait's result, after exited
}

// serverArgs returns the command of a server for a workload.
func (h *H) serverArgs(srv, workload, mode, addr string) ([]string, error) {
	ingest := workload == WIngest || workload == WIngestLatency
	switch {
	case ingest && srv == SGyre:
		a := []string{h.bin("ingestd"), "--tcp", addr, "--sink", "discard", "--reactors", "1", "--metrics", "", "--grace", "1s"}
		if h.ingestdHasQUIC {
			a = append(a, "--quic", "") // TCP only: QUIC is measured elsewhere
		}
		if e := h.askedEngine(workload, srv); e != "" {
			a = append(a, "--engine", e)
		}
		return a, nil
	case ingest && srv == SNet:
		return []string{h.bin("ingest-net"), "--tcp", addr, "--sink", "discard"}, nil
	case ingest:
		return nil, fmt.Errorf("no %s server for the ingest workloads", srv)
	case srv == SGyre || srv == SGyreEpoll:
		return []string{h.bin("gyre-echo"), "-addr", addr, "-mode", mode, "-backend", "gyre", "-engine", h.askedEngine(workload, srv),
			"-reactors", "1", "-grace", "1s"}, nil
	case srv == SNet:
		return []string{h.bin("gyre-echo"), "-addr", addr, "-mode", mode, "-backend", "net", "-grace", "1s"}, nil
	case srv == SGnet:
		return []string{h.bin("gnet-echo"), "-addr", addr, "-mode", mode, "-loops", "1"}, nil
	}
	return nil, fmt.Errorf("unknown server %q", srv)
}

// nextAddr hands out ports round-robin over a range, so that a server
// never binds a port still holding the previous server's TIME_WAIT
// sockets.
func (h *H) nextAddr() string {
	p := h.cfg.Port + h.portSeq%h.cfg.PortSpan
	h.portSeq++
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}

func portOpen(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// startServer starts a server pinned to the server CPU and waits until it
// logs "listening" and accepts a connection. Failure is fatal to the run.
func (h *H) startServer(srv, workload, mode, logPath string) (*server, error) {
	addr := h.nextAddr()
	if portOpen(addr) {
		return nil, fmt.Errorf("something already listens on %s; set -port to a free range", addr)
	}
	args, err := h.serverArgs(srv, workload, mode, addr)
	if err != nil {
		return nil, err
	}
	full := append([]string{"taskset", "-c", strconv.Itoa(h.cfg.CPUServer)}, args...)
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = h.serverEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("starting %s: %w", srv, err)
	}
	s := &server{name: srv, cmd: cmd, pid: cmd.Process.Pid, addr: addr, log: logPath, args: full, exited: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		lf.Close()
		close(s.exited)
	}()
	deadline := time.Now().Add(h.cfg.StartTimeout)
	for {
		if !s.alive() {
			return nil, fmt.Errorf("%s server exited before listening on %s (%v); log %s:\n%s", srv, addr, s.err, logPath, tail(logPath, 20))
		}
		if b, _ := os.ReadFile(logPath); bytes.Contains(b, []byte("listening")) && portOpen(addr) {
			if err := h.checkEngine(s, workload, b); err != nil {
				s.stop()
				return nil, err
			}
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s server not listening on %s after %v; log %s:\n%s", srv, addr, h.cfg.StartTimeout, logPath, tail(logPath, 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serverEnv is the environment of the servers: ours, minus GOMAXPROCS
// unless -server-gomaxprocs sets it (by default the Go servers see one CPU
// through their affinity and run with GOMAXPROCS=1).
func (h *H) serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !bytes.HasPrefix([]byte(kv), []byte("GOMAXPROCS=")) {
			env = append(env, kv)
		}
	}
	if h.cfg.ServerGoMaxProcs > 0 {
		env = append(env, fmt.Sprintf("GOMAXPROCS=%d", h.cfg.ServerGoMaxProcs))
	}
	return env
}

func (s *server) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// stat reads the server's /proc/PID/stat; an error means it died.
func (s *server) stat() (procfs.ProcStat, error) {
	if !s.alive() {
		return procfs.ProcStat{}, fmt.Errorf("%s server (pid %d) died (%v); log %s:\n%s", s.name, s.pid, s.err, s.log, tail(s.log, 20))
	}
	st, err := procfs.ReadStat(s.pid)
	if err != nil {
		return st, fmt.Errorf("%s server (pid %d): %w", s.name, s.pid, err)
	}
	return st, nil
}

// stop sends SIGTERM, waits up to 5s, then kills.
func (s *server) stop() {
	if !s.alive() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// engineRE finds the engine in a start-up line: gyre-echo's "listening"
// and ingestd's "ingest listening" both carry engine=NAME.
var engineRE = regexp.MustCompile(`(?:^|\s)engine="?([^\s"]+)`)

// loggedEngine is the engine named on the first line of a server's log
// that says it is listening; "" when none does.
func loggedEngine(log []byte) string {
	for _, l := range bytes.Split(log, []byte("\n")) {
		if !bytes.Contains(l, []byte("listening")) {
			continue
		}
		if m := engineRE.FindSubmatch(l); m != nil {
			return string(m[1])
		}
	}
	return ""
}

// checkEngine records the engine one of gyre's servers logged and fails
// when it is not the one asked for: a column must say what ran. Only
// -engine auto may settle on another (io_uring refused: a fallback),
// and then the recorded engine, shown in the table's head and the
// environment block, says which. gyre-echo must name its engine;
// an ingestd that does not is recorded without one.
func (h *H) checkEngine(s *server, workload string, log []byte) error {
	key := engineKey(workload, s.name)
	if key == "" {
		return nil
	}
	s.engine = loggedEngine(log)
	asked := h.askedEngine(workload, s.name)
	switch {
	case s.engine == "" && key != "ingestd":
		return fmt.Errorf("%s server logged no engine=... on its listening line (gyre-echo without -engine?); log %s:\n%s", s.name, s.log, tail(s.log, 20))
	case s.engine != "" && asked != "" && asked != EngineAuto && s.engine != asked:
		return fmt.Errorf("%s server runs on the %s engine, not the %s engine it was asked for; log %s:\n%s", s.name, s.engine, asked, s.log, tail(s.log, 20))
	}
	return nil
}

var (
	gomaxprocsRE = regexp.MustCompile(`gomaxprocs=(\d+)`)
	// gyre's reactor.NewGroup raises GOMAXPROCS so that reactors blocked
	// in the kernel keep their Ps, and says so.
	raisedRE = regexp.MustCompile(`raised GOMAXPROCS[^\n]*\sto=(\d+)`)
)

// goMaxProcs returns the GOMAXPROCS the server logged, if it did.
func (s *server) goMaxProcs() string {
	b, _ := os.ReadFile(s.log)
	return loggedGoMaxProcs(b)
}

// loggedGoMaxProcs is the GOMAXPROCS a server log states: the value
// gyre raised it to, or the one a server logged (gomaxprocs=N).
func loggedGoMaxProcs(log []byte) string {
	if m := raisedRE.FindSubmatch(log); m != nil {
		return string(m[1])
	}
	if m := gomaxprocsRE.FindSubmatch(log); m != nil {
		return string(m[1])
	}
	return ""
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
