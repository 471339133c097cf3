package procfs

import (
	"os"
	"testing"
)

func TestParseStat(t *testing.T) {
	// comm with a space and a ')' inside, as the kernel allows.
	line := "4242 (gyre) echo) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 3 4 20 0 5 0 100 123456 789 18446744073709551615\n"
	s, err := ParseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if s.State != 'S' || s.Utime != 250 || s.Stime != 75 {
		t.Fatalf("got %+v", s)
	}
	if s.CPUSeconds() != 3.25 || !s.Alive() {
		t.Fatalf("CPUSeconds %v alive %v", s.CPUSeconds(), s.Alive())
	}
	if z, _ := ParseStat("1 (x) Z 1 1 1 0 -1 0 0 0 0 0 1 1 0 0"); z.Alive() {
		t.Error("zombie reported alive")
	}
	for _, bad := range []string{"", "1 x S 1", "1 (x) S 1 2 3"} {
		if _, err := ParseStat(bad); err == nil {
			t.Errorf("ParseStat(%q) did not fail", bad)
		}
	}
}

func TestReadStatSelf(t *testing.T) {
	s, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !s.Alive() {
		t.Fatalf("self not alive: %+v", s)
	}
	rss, err := RSS(os.Getpid())
	if err != nil || rss <= 0 {
		t.Fatalf("RSS = %d, %v", rss, err)
	}
	if n, err := CountFDs(os.Getpid()); err != nil || n < 3 {
		t.Fatalf("CountFDs = %d, %v", n, err)
	}
	if soft, hard, err := OpenFileLimits(os.Getpid()); err != nil || soft == 0 || (hard >= 0 && soft > hard) {
		t.Fatalf("OpenFileLimits = %d/%d, %v", soft, hard, err)
	}
}

func TestParseStatusKB(t *testing.T) {
	st := "Name:\tgyre-echo\nVmPeak:\t  20000 kB\nVmRSS:\t   10240 kB\nThreads:\t5\n"
	n, err := ParseStatusKB(st, "VmRSS")
	if err != nil || n != 10240<<10 {
		t.Fatalf("VmRSS = %d, %v", n, err)
	}
	if _, err := ParseStatusKB(st, "VmHWM"); err == nil {
		t.Error("missing key did not fail")
	}
	if _, err := ParseStatusKB("VmRSS:\t12 MB\n", "VmRSS"); err == nil {
		t.Error("unexpected unit did not fail")
	}
}

func TestParseLimit(t *testing.T) {
	limits := "Limit                     Soft Limit           Hard Limit           Units     \n" +
		"Max cpu time              unlimited            unlimited            seconds   \n" +
		"Max open files            20000                20000                files     \n"
	s, h, err := ParseLimit(limits, "Max open files")
	if err != nil || s != 20000 || h != 20000 {
		t.Fatalf("got %d %d %v", s, h, err)
	}
	s, h, err = ParseLimit(limits, "Max cpu time")
	if err != nil || s != -1 || h != -1 {
		t.Fatalf("unlimited: got %d %d %v", s, h, err)
	}
}

func TestParseCPU(t *testing.T) {
	stat := "cpu  10 0 20 3000 5 0 1 0 0 0\ncpu0 4 0 10 1500 2 0 1 3 0 0\ncpu1 6 0 10 1500 3 0 0 0 0 0\nintr 1\n"
	c, err := ParseCPU(stat, 0)
	if err != nil {
		t.Fatal(err)
	}
	if c.User != 4 || c.System != 10 || c.Idle != 1500 || c.IdleTicks() != 1505 {
		t.Fatalf("cpu0 = %+v", c)
	}
	if _, err := ParseCPU(stat, 2); err == nil {
		t.Error("cpu2 found")
	}
	if _, err := ReadCPUs(0); err != nil {
		t.Fatal(err)
	}
}
