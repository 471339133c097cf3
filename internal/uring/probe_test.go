//go:build linux

package uring_test

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/gyre-io/gyre/internal/bufring"
	"github.com/gyre-io/gyre/internal/uring"
	"golang.org/x/sys/unix"
)

func TestProbe(t *testing.T) {
	noLeaks(t)
	if err := uring.Probe(); err != nil {
		t.Fatalf("Probe() on this machine: %v", err)
	}
	// Again, from a goroutine that is already locked to its thread: the
	// probe's lock nests and its unlock leaves the caller's in place.
	locked(t, func(l lt) {
		if err := uring.Probe(); err != nil {
			l.Fatalf("Probe() from a locked goroutine: %v", err)
		}
		r := newRing(l, uring.Config{Entries: 4}) // still on the same thread
		defer r.Close()
		r.PrepNop(1)
		only(l, collectN(l, r, 1), 1)
	})
}

// stepOf is what an error must mention to name the step of each stage.
var stepOf = map[uring.Stage]string{
	uring.StageSetup:   "io_uring_setup",
	uring.StageProbe:   "IORING_REGISTER_PROBE",
	uring.StageBufRing: "IORING_REGISTER_PBUF_RING",
}

var syscallOf = map[uring.Stage]string{
	uring.StageSetup:   "io_uring_setup",
	uring.StageProbe:   "io_uring_register",
	uring.StageBufRing: "io_uring_register",
}

// hintOf is what an error must mention, at least one of, to tell the
// operator what to do about each errno.
var hintOf = map[syscall.Errno][]string{
	unix.EPERM:      {"seccomp", "kernel.io_uring_disabled"},
	unix.ENOSYS:     {"CONFIG_IO_URING"},
	unix.EOPNOTSUPP: {"does not support"},
	unix.EINVAL:     {"Linux >= 6.1"},
	unix.ENOMEM:     {"RLIMIT_MEMLOCK"},
}

var refusals = []syscall.Errno{unix.EPERM, unix.ENOSYS, unix.EOPNOTSUPP, unix.EINVAL, unix.ENOMEM}

// checkRefusal checks an error made by injecting errno at stage.
func checkRefusal(t testing.TB, err error, stage uring.Stage, errno syscall.Errno, prefix string) {
	t.Helper()
	if err == nil {
		t.Fatalf("injected %v at %v: no error", errno, stage)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) || strings.Count(msg, "uring: ") != 1 {
		t.Errorf("message %q does not start with %q (once)", msg, prefix)
	}
	if !errors.Is(err, errno) {
		t.Errorf("errors.Is(%q, %v) = false", msg, errno)
	}
	var se *os.SyscallError
	if !errors.As(err, &se) || se.Syscall != syscallOf[stage] {
		t.Errorf("%q does not wrap an *os.SyscallError for %s", msg, syscallOf[stage])
	}
	if !strings.Contains(msg, stepOf[stage]) {
		t.Errorf("message %q does not name the step %s", msg, stepOf[stage])
	}
	hinted := false
	for _, h := range hintOf[errno] {
		hinted = hinted || strings.Contains(msg, h)
	}
	if !hinted {
		t.Errorf("message %q gives no hint (one of %q)", msg, hintOf[errno])
	}
	// Every refusal but a memory limit means io_uring cannot be used.
	if got, want := errors.Is(err, uring.ErrUnavailable), errno != unix.ENOMEM; got != want {
		t.Errorf("errors.Is(%q, ErrUnavailable) = %v, want %v", msg, got, want)
	}
}

func TestProbeWithInjectedRefusal(t *testing.T) {
	for _, stage := range []uring.Stage{uring.StageSetup, uring.StageProbe, uring.StageBufRing} {
		for _, errno := range refusals {
			t.Run(stage.String()+"/"+unix.ErrnoName(errno), func(t *testing.T) {
				noLeaks(t)
				err := uring.ProbeWith(&uring.Injection{Stage: stage, Errno: errno})
				checkRefusal(t, err, stage, errno, "uring: probe: ")
				t.Log(err)
			})
		}
	}
}

// The same refusals through New and bufring, as a reactor would meet them.
func TestInjectThroughNew(t *testing.T) {
	for _, errno := range refusals {
		t.Run(unix.ErrnoName(errno), func(t *testing.T) {
			noLeaks(t)
			locked(t, func(l lt) {
				for _, stage := range []uring.Stage{uring.StageSetup, uring.StageProbe} {
					r, err := uring.New(uring.Config{Entries: 4, Inject: &uring.Injection{Stage: stage, Errno: errno}})
					if err == nil {
						r.Close()
						l.Fatalf("New with %v injected at %v succeeded", errno, stage)
					}
					checkRefusal(l, err, stage, errno, "uring: ")
				}

				r := newRing(l, uring.Config{Entries: 4, Inject: &uring.Injection{Stage: uring.StageBufRing, Errno: errno}})
				defer r.Close()
				br, err := bufring.New(bufring.Config{Count: 4, Size: 64})
				if err != nil {
					l.Fatalf("bufring.New: %v", err)
				}
				defer br.Close()
				err = br.Register(r, 1)
				if err == nil {
					l.Fatalf("Register with %v injected succeeded", errno)
				}
				if errno == unix.EINVAL {
					// From a caller, EINVAL may be its own mistake: it
					// is not reported as io_uring being unavailable.
					if errors.Is(err, uring.ErrUnavailable) || !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "power of two") {
						l.Errorf("Register refused with EINVAL: %v", err)
					}
					return
				}
				checkRefusal(l, err, uring.StageBufRing, errno, "uring: ")
			})
		})
	}
}

// A zero Errno, or another stage, injects nothing.
func TestInjectNothing(t *testing.T) {
	noLeaks(t)
	for _, inj := range []*uring.Injection{{Stage: uring.StageSetup}, {Stage: uring.Stage(99), Errno: unix.EPERM}} {
		if err := uring.ProbeWith(inj); err != nil {
			t.Errorf("ProbeWith(%+v): %v", inj, err)
		}
	}
	if got := uring.Stage(99).String(); got != "stage(99)" {
		t.Errorf("Stage(99).String() = %q", got)
	}
}
