package testenv

import (
	"errors"
	"os"
	"os/exec"
	"regexp"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRunWithNOFILE: the body runs in a child whose soft and hard limits
// are the one asked for, from the start of the process; the test process
// keeps its own.
func TestRunWithNOFILE(t *testing.T) {
	var parent unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &parent); err != nil {
		t.Fatal(err)
	}
	if !RunWithNOFILE(t, 64) {
		var after unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &after); err != nil {
			t.Fatal(err)
		}
		if after != parent {
			t.Errorf("test process limit %+v after the child ran, was %+v", after, parent)
		}
		return
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur != 64 || lim.Max != 64 {
		t.Fatalf("child RLIMIT_NOFILE %d/%d, want 64/64", lim.Cur, lim.Max)
	}
	if _, ok := os.LookupEnv(envTest); ok {
		t.Errorf("%s left in the child's environment", envTest)
	}
}

// TestExhaustDescriptors: exactly spare descriptors can be opened, then
// EMFILE; after release there are plenty again.
func TestExhaustDescriptors(t *testing.T) {
	if !RunWithNOFILE(t, 64) {
		return
	}
	release := ExhaustDescriptors(t, 2)
	var fds []int
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			if !errors.Is(err, unix.EMFILE) {
				t.Fatalf("open: %v", err)
			}
			break
		}
		fds = append(fds, fd)
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
	if len(fds) != 2 {
		t.Fatalf("%d descriptors could be opened, want 2", len(fds))
	}
	release()
	for i := 0; i < 10; i++ {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("open after release: %v", err)
		}
		defer unix.Close(fd)
	}
}

// TestCommandWithNOFILE: the program runs under the limit, soft and hard,
// with the helper's environment gone.
func TestCommandWithNOFILE(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	cmd := CommandWithNOFILE(t, 77, sh, "-c", `grep "Max open files" /proc/self/limits; env | grep GYRE_TESTENV_ || true`)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !regexp.MustCompile(`(?m)^Max open files\s+77\s+77\s+files\s*$`).Match(out) {
		t.Errorf("output %q, want the limit 77/77 and no GYRE_TESTENV_ variables", out)
	}
	if regexp.MustCompile(`GYRE_TESTENV_`).Match(out) {
		t.Errorf("the program's environment has the helper's variables: %q", out)
	}
}
