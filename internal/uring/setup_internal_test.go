//go:build linux

package uring

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSetupErrorMessages(t *testing.T) {
	disabled, _ := readSysctl("/proc/sys/kernel/io_uring_disabled")
	for _, tc := range []struct {
		name        string
		err         error
		extra       uint32
		errno       unix.Errno
		unavailable bool
		mention     []string // every one must appear
		oneOf       []string // at least one must appear
	}{
		{name: "EPERM", err: unix.EPERM, errno: unix.EPERM, unavailable: true,
			mention: []string{"not permitted"}, oneOf: []string{"seccomp", "kernel.io_uring_disabled"}},
		{name: "EACCES", err: unix.EACCES, errno: unix.EACCES, unavailable: true,
			mention: []string{"not permitted"}, oneOf: []string{"seccomp", "kernel.io_uring_disabled"}},
		{name: "ENOSYS", err: unix.ENOSYS, errno: unix.ENOSYS, unavailable: true,
			mention: []string{"no io_uring", "CONFIG_IO_URING"}},
		{name: "ENOMEM", err: unix.ENOMEM, errno: unix.ENOMEM, unavailable: false,
			mention: []string{"RLIMIT_MEMLOCK", "ulimit -l", "fewer entries"}},
		{name: "EINVAL with extra flags", err: unix.EINVAL, extra: 1 << 28, errno: unix.EINVAL, unavailable: true,
			mention: []string{"refused setup flags", "0x10000000"}},
		{name: "EINVAL without extra flags", err: unix.EINVAL, errno: unix.EINVAL, unavailable: true,
			mention: []string{"refused every supported set of setup flags", "6.1"}},
		{name: "wrapped errno", err: os.NewSyscallError("io_uring_setup", unix.ENOSYS), errno: unix.ENOSYS, unavailable: true,
			mention: []string{"no io_uring"}},
		{name: "other errno", err: unix.EFAULT, errno: unix.EFAULT, unavailable: false,
			mention: []string{"io_uring_setup", "bad address"}},
		{name: "not an errno", err: errors.New("boom"), unavailable: false,
			mention: []string{"io_uring_setup", "boom"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := setupError(tc.err, tc.extra)
			if err == nil {
				t.Fatalf("setupError(%v) = nil", tc.err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "uring: ") {
				t.Errorf("message %q does not start with the package name", msg)
			}
			for _, m := range tc.mention {
				if !strings.Contains(msg, m) {
					t.Errorf("message %q does not mention %q", msg, m)
				}
			}
			if len(tc.oneOf) > 0 {
				found := false
				for _, m := range tc.oneOf {
					found = found || strings.Contains(msg, m)
				}
				if !found {
					t.Errorf("message %q mentions none of %q", msg, tc.oneOf)
				}
			}
			if got := errors.Is(err, ErrUnavailable); got != tc.unavailable {
				t.Errorf("errors.Is(%q, ErrUnavailable) = %v, want %v", msg, got, tc.unavailable)
			}
			if got := errors.Is(err, errors.ErrUnsupported); got != tc.unavailable {
				t.Errorf("errors.Is(%q, errors.ErrUnsupported) = %v, want %v", msg, got, tc.unavailable)
			}
			if tc.errno != 0 {
				if !errors.Is(err, tc.errno) {
					t.Errorf("error %q does not wrap %v", msg, tc.errno)
				}
				var se *os.SyscallError
				if !errors.As(err, &se) || se.Syscall != "io_uring_setup" {
					t.Errorf("error %q does not wrap an *os.SyscallError for io_uring_setup", msg)
				}
			}
		})
	}
	// On this machine the sysctl allows io_uring, so a refusal is blamed
	// on seccomp.
	if disabled == "0" {
		if msg := setupError(unix.EPERM, 0).Error(); !strings.Contains(msg, "seccomp") {
			t.Errorf("with kernel.io_uring_disabled=0, EPERM message %q does not blame seccomp", msg)
		}
	}
}

func TestParseRelease(t *testing.T) {
	for _, tc := range []struct {
		rel          string
		major, minor int
		ok           bool
	}{
		{"6.18.44-fc-v769", 6, 18, true},
		{"6.1", 6, 1, true},
		{"5.15.0-91-generic", 5, 15, true},
		{"6.1-rc3", 6, 1, true},
		{"4.19.0", 4, 19, true},
		{"garbage", 0, 0, false},
		{"", 0, 0, false},
		{"6", 0, 0, false},
		{"6.x", 0, 0, false},
		{"x.1", 0, 0, false},
	} {
		major, minor, ok := parseRelease(tc.rel)
		if ok != tc.ok || (ok && (major != tc.major || minor != tc.minor)) {
			t.Errorf("parseRelease(%q) = (%d, %d, %v), want (%d, %d, %v)", tc.rel, major, minor, ok, tc.major, tc.minor, tc.ok)
		}
	}
}

func TestCheckKernelOnThisMachine(t *testing.T) {
	if err := checkKernel(); err != nil {
		t.Errorf("checkKernel() on %s: %v", release(t), err)
	}
}

func release(t *testing.T) string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatalf("uname: %v", err)
	}
	return unix.ByteSliceToString(u.Release[:])
}
