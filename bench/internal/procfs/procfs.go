// Package procfs reads the few /proc figures the harness needs: a
// process's CPU time (utime+stime), its resident set, its open
// descriptors and limits, and per-CPU idle time. The parsers take the
// file contents, so they are tested without a live process.
package procfs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// TicksPerSecond is USER_HZ, the unit of the CPU times in /proc/PID/stat
// and /proc/stat. The kernel's ABI fixes it at 100 on every architecture
// Go supports on Linux (sysconf(_SC_CLK_TCK) returns the same).
const TicksPerSecond = 100

// ProcStat is what the harness uses from /proc/PID/stat.
type ProcStat struct {
	State byte  // R, S, D, Z, X, ...
	Utime int64 // field 14, ticks
	Stime int64 // field 15, ticks
}

// CPUSeconds is utime+stime in seconds.
func (s ProcStat) CPUSeconds() float64 { return float64(s.Utime+s.Stime) / TicksPerSecond }

// Alive is false for a zombie or a dead process.
func (s ProcStat) Alive() bool { return s.State != 'Z' && s.State != 'X' }

// ParseStat parses one /proc/PID/stat line. The command name (field 2)
// may hold spaces and parentheses, so fields are counted after the last
// ')'.
func ParseStat(line string) (ProcStat, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return ProcStat{}, fmt.Errorf("procfs: stat line without ')': %.60q", line)
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state); field N is f[N-3].
	if len(f) < 13 || len(f[0]) != 1 {
		return ProcStat{}, fmt.Errorf("procfs: short stat line: %.80q", line)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return ProcStat{}, fmt.Errorf("procfs: stat utime/stime: %w", err)
	}
	return ProcStat{State: f[0][0], Utime: ut, Stime: st}, nil
}

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (ProcStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcStat{}, err
	}
	return ParseStat(string(b))
}

// ParseStatusKB returns a "Key:   N kB" field of /proc/PID/status in
// bytes (VmRSS, VmHWM, RssAnon, ...).
func ParseStatusKB(status, key string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != key {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("procfs: %s: unexpected value %q", key, v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("procfs: %s: %w", key, err)
		}
		return n << 10, nil
	}
	return 0, fmt.Errorf("procfs: no %s in status", key)
}

// RSS returns the resident set size of PID in bytes (VmRSS).
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return ParseStatusKB(string(b), "VmRSS")
}

// CountFDs counts the open descriptors of PID.
func CountFDs(pid int) (int, error) {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	return len(es), nil
}

// ParseLimit returns the soft and hard values of a /proc/PID/limits row
// ("Max open files"); -1 stands for unlimited.
func ParseLimit(limits, name string) (soft, hard int64, err error) {
	sc := bufio.NewScanner(strings.NewReader(limits))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		f := strings.Fields(line[len(name):])
		if len(f) < 2 {
			return 0, 0, fmt.Errorf("procfs: limits row %q", line)
		}
		parse := func(s string) (int64, error) {
			if s == "unlimited" {
				return -1, nil
			}
			return strconv.ParseInt(s, 10, 64)
		}
		if soft, err = parse(f[0]); err == nil {
			hard, err = parse(f[1])
		}
		return soft, hard, err
	}
	return 0, 0, fmt.Errorf("procfs: no %q row in limits", name)
}

// OpenFileLimits returns the soft and hard RLIMIT_NOFILE of PID (-1:
// unlimited).
func OpenFileLimits(pid int) (soft, hard int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, 0, err
	}
	return ParseLimit(string(b), "Max open files")
}

// CPUTimes is one cpuN row of /proc/stat, in ticks.
type CPUTimes struct {
	User, Nice, System, Idle, IOWait, IRQ, SoftIRQ, Steal int64
}

// IdleTicks is idle+iowait+steal. With NO_HZ the idle and iowait counters
// are measured rather than sampled by the tick, so wall time minus idle is
// a closer busy time than the sum of the busy counters.
func (c CPUTimes) IdleTicks() int64 { return c.Idle + c.IOWait + c.Steal }

// ParseCPU returns the row of CPU n ("cpu0", ...) in a /proc/stat text.
func ParseCPU(stat string, n int) (CPUTimes, error) {
	name := "cpu" + strconv.Itoa(n)
	sc := bufio.NewScanner(strings.NewReader(stat))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 9 || f[0] != name {
			continue
		}
		var v [8]int64
		for i := range v {
			x, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return CPUTimes{}, fmt.Errorf("procfs: /proc/stat %s: %w", name, err)
			}
			v[i] = x
		}
		return CPUTimes{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]}, nil
	}
	return CPUTimes{}, fmt.Errorf("procfs: %s not in /proc/stat", name)
}

// ReadCPUs reads the rows of the given CPUs from /proc/stat at once.
func ReadCPUs(cpus ...int) ([]CPUTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, err
	}
	out := make([]CPUTimes, len(cpus))
	for i, n := range cpus {
		if out[i], err = ParseCPU(string(b), n); err != nil {
			return nil, err
		}
	}
	return out, nil
}
