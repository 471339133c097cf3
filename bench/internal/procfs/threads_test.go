package procfs

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as a child process that burns CPU on several
// threads (GYRE_PROCFS_HELPER=burn).
func TestMain(m *testing.M) {
	if os.Getenv("GYRE_PROCFS_HELPER") == "burn" {
		burnChild()
		return
	}
	os.Exit(m.Run())
}

const (
	burnThreads = 2
	burnEach    = 150 * time.Millisecond // thread CPU time, not wall time
)

// burnChild waits for a line on stdin, burns burnEach of CPU on each of
// burnThreads threads (the threads then exit, taking their own /proc
// entries with them), says "done" and waits for stdin to close.
func burnChild() {
	in := bufio.NewReader(os.Stdin)
	_, _ = in.ReadString('\n')
	var wg sync.WaitGroup
	for range burnThreads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Locked and never unlocked: the thread exits with the goroutine.
			runtime.LockOSThread()
			var ts unix.Timespec
			for {
				_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
				if time.Duration(ts.Nano()) >= burnEach {
					return
				}
			}
		}()
	}
	wg.Wait()
	fmt.Println("done")
	_, _ = io.Copy(io.Discard, in)
}

// ReadStat's utime+stime is the whole process's: every thread's CPU time,
// including threads that already exited, which is what the harness needs
// from a server with reactor, acceptor and runtime threads.
func TestReadStatCountsEveryThread(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GYRE_PROCFS_HELPER=burn")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	before, err := ReadStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	if l, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || l != "done\n" {
		t.Fatalf("child said %q, %v", l, err)
	}
	after, err := ReadStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if !after.Alive() {
		t.Fatal("child not alive")
	}
	got := after.CPUSeconds() - before.CPUSeconds()
	want := (burnThreads * burnEach).Seconds()
	// Ticks are 10 ms; the runtime's own threads add a little.
	if got < want-0.03 || got > want+0.5 {
		t.Fatalf("utime+stime grew by %.2fs, want about %.2fs (%d threads × %v)", got, want, burnThreads, burnEach)
	}
}
