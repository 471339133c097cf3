package testenv

// Running out of descriptors, in a child process only.
//
// A test that lowers RLIMIT_NOFILE of the test process itself (or opens
// descriptors up to it) starves everything else the process does
// meanwhile: the testing package, the race detector, other tests running
// in parallel, leak checks. The helpers here keep the lowered limit in a
// child process: RunWithNOFILE runs one test's body in the test binary
// re-executed under a lower limit, CommandWithNOFILE starts another
// program (ingestd) under one, and ExhaustDescriptors, which takes every
// free descriptor, refuses to run anywhere but in such a child.
//
// The limit must be the hard limit too: at start-up every Go program
// raises its soft RLIMIT_NOFILE to (nearly) the hard limit
// (syscall/rlimit.go), so a lowered soft limit alone would be undone by
// the child's own runtime. Lowering the hard limit needs no privilege.
//
// Both helpers re-execute the test binary with the limit in the
// environment; this package's init lowers it there, at the start of the
// process, before TestMain and any test. Every test binary that calls the
// helpers imports this package, so there is nothing to wire up.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Environment of a re-executed test binary; init reads and removes them,
// so nothing the child starts inherits them (it inherits the limit).
const (
	envNOFILE = "GYRE_TESTENV_NOFILE" // lower soft and hard RLIMIT_NOFILE to this
	envExec   = "GYRE_TESTENV_EXEC"   // then exec os.Args[1:] (CommandWithNOFILE)
	envTest   = "GYRE_TESTENV_TEST"   // the test RunWithNOFILE runs in this child
)

// childNOFILE and childTest are what init found: the limit this process
// runs under (0: not a child of these helpers) and the test it runs.
var (
	childNOFILE uint64
	childTest   string
)

func init() {
	v, ok := os.LookupEnv(envNOFILE)
	if !ok {
		return
	}
	doExec, test := os.Getenv(envExec) != "", os.Getenv(envTest)
	for _, k := range []string{envNOFILE, envExec, envTest} {
		_ = os.Unsetenv(k)
	}
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "testenv: "+format+"\n", args...)
		os.Exit(127)
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		fail("%s=%q: want a positive number", envNOFILE, v)
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: n}); err != nil {
		fail("setrlimit(RLIMIT_NOFILE, %d): %v", n, err)
	}
	if doExec {
		if len(os.Args) < 2 {
			fail("%s: no program to run", envExec)
		}
		path, err := exec.LookPath(os.Args[1])
		if err != nil {
			fail("%v", err)
		}
		// Go clears the saved soft limit on Setrlimit, so exec keeps
		// the lowered one (see syscall.Setrlimit).
		err = syscall.Exec(path, os.Args[1:], os.Environ())
		fail("exec %s: %v", path, err)
	}
	childNOFILE, childTest = n, test
}

// RunWithNOFILE runs the calling test in a child process whose
// RLIMIT_NOFILE, soft and hard, is limit from its start: the test binary
// re-executed with -test.run matching just t. It returns true in that
// child, where the caller goes on with the test body; in the test process
// it returns false once the child has finished, having logged the child's
// output and failed or skipped t as the child did, and the caller returns:
//
//	if !testenv.RunWithNOFILE(t, 128) {
//		return // ran in a child process
//	}
//	... the body, under the limit ...
//
// limit must leave room for what the test binary opens by itself (its
// TestMain runs in the child too). The child is bounded by t's deadline;
// at it, it gets SIGQUIT (a goroutine dump in the output), then SIGKILL.
func RunWithNOFILE(t *testing.T, limit int) (inChild bool) {
	t.Helper()
	if childTest != "" && childTest == t.Name() {
		var lim unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatalf("getrlimit: %v", err)
		}
		if childNOFILE != uint64(limit) || lim.Cur != uint64(limit) || lim.Max != uint64(limit) {
			t.Fatalf("child process: RLIMIT_NOFILE %d/%d (asked for %d, set %d at start)", lim.Cur, lim.Max, limit, childNOFILE)
		}
		return true
	}
	if limit < 1 {
		t.Fatalf("RunWithNOFILE(%d): want a positive limit", limit)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("finding the test binary: %v", err)
	}
	timeout := 5 * time.Minute
	if d, ok := t.Deadline(); ok {
		timeout = max(time.Until(d)-10*time.Second, time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run="+runPattern(t.Name()), "-test.count=1", "-test.v=true",
		"-test.timeout="+(timeout+5*time.Second).String())
	if testing.Short() {
		cmd.Args = append(cmd.Args, "-test.short")
	}
	// A race-enabled binary sleeps 1 s at exit by default (GORACE
	// atexit_sleep_ms); options the caller gave come after and win.
	cmd.Env = append(environWithout(envNOFILE, envExec, envTest, "GORACE"),
		envNOFILE+"="+strconv.Itoa(limit), envTest+"="+t.Name(),
		"GORACE="+strings.TrimSpace("atexit_sleep_ms=0 "+os.Getenv("GORACE")))
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("ran in a child process with RLIMIT_NOFILE %d (%v):\n%s", limit, time.Since(start).Round(time.Millisecond), indent(out))
	name := regexp.QuoteMeta(t.Name())
	switch {
	case ctx.Err() != nil:
		t.Fatalf("child process did not finish within %v: %v", timeout, err)
	case err != nil:
		t.Fatalf("test failed in the child process: %v", err)
	case regexp.MustCompile(`(?m)^\s*--- SKIP: ` + name + ` `).Match(out):
		t.Skip("skipped in the child process")
	case !regexp.MustCompile(`(?m)^\s*--- PASS: ` + name + ` `).Match(out):
		t.Fatalf("the child process did not run %s", t.Name())
	}
	return false
}

// CommandWithNOFILE returns a command that runs the program name with args
// under an RLIMIT_NOFILE, soft and hard, of limit. It starts the test
// binary, which lowers its limit at init and execs name in its place (the
// process id is name's: signals reach it directly). Add to cmd.Env rather
// than replace it. name is looked up in PATH if it has no slash.
func CommandWithNOFILE(t testing.TB, limit int, name string, args ...string) *exec.Cmd {
	t.Helper()
	if limit < 1 {
		t.Fatalf("CommandWithNOFILE(%d): want a positive limit", limit)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("finding the test binary: %v", err)
	}
	cmd := exec.Command(exe, append([]string{name}, args...)...)
	cmd.Env = append(environWithout(envNOFILE, envExec, envTest), envNOFILE+"="+strconv.Itoa(limit), envExec+"=1")
	return cmd
}

// ExhaustDescriptors opens /dev/null until the process is out of
// descriptors (EMFILE), then closes spare of them, so that exactly spare
// more can be opened; release closes the rest (idempotent, also run at
// cleanup). It starves the whole process, so it runs only in a child of
// RunWithNOFILE (and fails the test anywhere else), where the low limit
// also keeps it cheap.
func ExhaustDescriptors(t testing.TB, spare int) (release func()) {
	t.Helper()
	if childNOFILE == 0 {
		t.Fatal("ExhaustDescriptors starves the whole process: call it in a RunWithNOFILE child")
	}
	var held []int
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.EMFILE) {
			break
		}
		if err != nil {
			for _, fd := range held {
				_ = unix.Close(fd)
			}
			t.Fatalf("opening /dev/null: %v", err)
		}
		held = append(held, fd)
	}
	if spare > len(held) {
		for _, fd := range held {
			_ = unix.Close(fd)
		}
		t.Fatalf("ExhaustDescriptors(%d): only %d descriptors were free", spare, len(held))
	}
	for _, fd := range held[len(held)-spare:] {
		_ = unix.Close(fd)
	}
	held = held[:len(held)-spare]
	var once sync.Once
	release = func() {
		once.Do(func() {
			for _, fd := range held {
				if err := unix.Close(fd); err != nil {
					t.Errorf("closing a held descriptor: %v", err)
				}
			}
		})
	}
	t.Cleanup(release)
	return release
}

// runPattern is a -test.run pattern matching exactly the test named name
// (subtests included: one anchored element per level).
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

func environWithout(keys ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, key := range keys {
			drop = drop || k == key
		}
		if !drop {
			env = append(env, kv)
		}
	}
	return env
}

func indent(b []byte) string {
	s := strings.TrimRight(string(b), "\n")
	return "\t" + strings.ReplaceAll(s, "\n", "\n\t")
}
