package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
)

// userHZ is the unit of the CPU times in /proc/PID/stat (USER_HZ, which the
// kernel fixes at 100 on every architecture Go runs on under Linux).
const userHZ = 100

// serverCPU samples the CPU time (user + system) of the server's process
// (--server-pid) at the points of a run: before dialing, once every
// connection is up, when measuring starts (after --warmup) and once every
// answer is in. A sample that cannot be read is -1 and voids what depends
// on it. Samples are taken by different goroutines; measure is waited on
// before they are read.
type serverCPU struct {
	pid                                 int
	dialStart, start, measureStart, end int64 // ticks of 1/userHZ s
	measure                             sync.WaitGroup
}

// sample stores the server's CPU ticks in *dst (nothing without a pid).
func (s *serverCPU) sample(dst *int64) {
	if s.pid <= 0 {
		return
	}
	t, err := procCPUTicks(s.pid)
	if err != nil {
		t = -1
	}
	*dst = t
}

// report fills the server CPU fields of res.
func (s *serverCPU) report(res *result) {
	if s.pid <= 0 {
		return
	}
	s.measure.Wait() // the warmup sample, if its timer fired
	res.ServerPID = s.pid
	sec := func(from, to int64) float64 {
		if from < 0 || to < from {
			return -1
		}
		return float64(to-from) / userHZ
	}
	res.ServerCPUDialSeconds = sec(s.dialStart, s.start)
	res.ServerCPUSeconds = sec(s.measureStart, s.end)
	if res.ServerCPUSeconds > 0 {
		res.MessagesPerServerCPUSecond = math.Round(float64(res.MeasuredMessages) / res.ServerCPUSeconds)
	}
}

// procCPUTicks returns utime + stime of process pid, in 1/userHZ s.
func procCPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatTicks(b)
}

// parseStatTicks reads fields 14 (utime) and 15 (stime) of a
// /proc/PID/stat line. The command name (field 2) is in parentheses and
// may hold spaces and parentheses itself, so fields are counted from the
// last ')'.
func parseStatTicks(b []byte) (int64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat: no command name in %q", b)
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the command name, want >= 13", len(f))
	}
	utime, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc stat: utime %q, stime %q", f[11], f[12])
	}
	return utime + stime, nil
}
