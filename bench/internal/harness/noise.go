package harness

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/gyre-io/gyre/bench/internal/procfs"
)

// sample is the state of both cores and of the processes measured, taken
// right before and right after a measured load.
type sample struct {
	at         time.Time
	serverIdle int64   // idle ticks of the server CPU
	loadIdle   int64   // idle ticks of the load CPU
	serverCPU  float64 // utime+stime of the server, all its threads
	loadCPU    float64 // of a synced load client (0: not sampled)
	selfCPU    float64 // this process (pinned to the load CPU too)
}

// takeSample reads the cores, the server (s, if any) and the load client
// (clientPID, if not 0) from /proc.
func (h *H) takeSample(s *server, clientPID int) (sample, error) {
	var sm sample
	cpus, err := procfs.ReadCPUs(h.cfg.CPUServer, h.cfg.CPULoad)
	if err != nil {
		return sm, err
	}
	sm.serverIdle, sm.loadIdle = cpus[0].IdleTicks(), cpus[1].IdleTicks()
	if s != nil {
		st, err := s.stat()
		if err != nil {
			return sm, err
		}
		sm.serverCPU = st.CPUSeconds()
	}
	if clientPID != 0 {
		st, err := procfs.ReadStat(clientPID)
		if err != nil {
			return sm, fmt.Errorf("load client (pid %d): %w", clientPID, err)
		}
		sm.loadCPU = st.CPUSeconds()
	}
	self, err := procfs.ReadStat(os.Getpid())
	if err != nil {
		return sm, err
	}
	sm.selfCPU = self.CPUSeconds()
	sm.at = time.Now()
	return sm, nil
}

// account fills the CPU figures of a run from two samples, and decides
// whether the run was contended: a core spent more than ContendedPct of
// the run busy with something other than the process pinned to it (other
// jobs on a shared machine).
func (h *H) account(r *Run, a, b sample) {
	wall := b.at.Sub(a.at).Seconds()
	loadCPU := b.loadCPU - a.loadCPU
	r.WallSeconds = wall
	r.ServerCPUSeconds = b.serverCPU - a.serverCPU
	r.LoadCPUSeconds = loadCPU
	r.ServerCoreBusy = wall - float64(b.serverIdle-a.serverIdle)/procfs.TicksPerSecond
	r.LoadCoreBusy = wall - float64(b.loadIdle-a.loadIdle)/procfs.TicksPerSecond
	r.ServerCoreOther = r.ServerCoreBusy - r.ServerCPUSeconds
	// The harness itself runs on the load CPU; it is not "other".
	r.LoadCoreOther = r.LoadCoreBusy - loadCPU - (b.selfCPU - a.selfCPU)
	lim := h.cfg.ContendedPct / 100 * wall
	r.Contended = r.ServerCoreOther > lim || r.LoadCoreOther > lim
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		r.LoadAvg1 = strings.Fields(string(b))[0]
	}
}

// waitQuiet waits until neither core is busier than QuietBusy percent
// over half a second, for at most QuietTimeout and only while the noise
// budget lasts. It reports whether the cores got quiet.
func (h *H) waitQuiet() bool {
	start := time.Now()
	defer func() { h.noiseSpent += time.Since(start) }()
	for {
		a, err := procfs.ReadCPUs(h.cfg.CPUServer, h.cfg.CPULoad)
		t0 := time.Now()
		time.Sleep(500 * time.Millisecond)
		b, err2 := procfs.ReadCPUs(h.cfg.CPUServer, h.cfg.CPULoad)
		if err != nil || err2 != nil {
			return false
		}
		el := time.Since(t0).Seconds() * procfs.TicksPerSecond
		busyS := 100 * (1 - float64(b[0].IdleTicks()-a[0].IdleTicks())/el)
		busyL := 100 * (1 - float64(b[1].IdleTicks()-a[1].IdleTicks())/el)
		if busyS <= h.cfg.QuietBusy && busyL <= h.cfg.QuietBusy {
			return true
		}
		if time.Since(start) >= h.cfg.QuietTimeout || h.noiseSpent+time.Since(start) >= h.cfg.NoiseBudget {
			h.logf("warning: CPU %d %.0f%% / CPU %d %.0f%% busy with other work; running anyway",
				h.cfg.CPUServer, busyS, h.cfg.CPULoad, busyL)
			return false
		}
	}
}

func (h *H) budgetLeft() bool { return h.noiseSpent < h.cfg.NoiseBudget }

func (r *Run) contentionNote() string {
	return fmt.Sprintf("server core %.2fs beyond the server, load core %.2fs beyond the load client, in %.2fs",
		r.ServerCoreOther, r.LoadCoreOther, r.WallSeconds)
}
