// Package testenv makes the hostile conditions gyre's tests put the
// runtime and the ingest node under: a full filesystem and a process out
// of file descriptors (in a child process with a lowered RLIMIT_NOFILE:
// RunWithNOFILE, CommandWithNOFILE, ExhaustDescriptors). For tests only.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/gyre-io/gyre/internal/leakcheck"
	"golang.org/x/sys/unix"
)

// MountTmpfs mounts a tmpfs of size bytes on a new directory, unmounted
// when the test ends. It skips the test where mounting is not permitted.
func MountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting the test tmpfs: %v", err)
		}
	})
	return dir
}

// FillDisk writes the file "filler" in dir until its filesystem is full
// and returns the file's path (remove it to free the space).
func FillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 4096)
	for {
		if _, err := f.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			return path
		}
	}
}

// LimitDescriptors lowers RLIMIT_NOFILE so that exactly spare more
// descriptors can be opened, and returns the function that restores it
// (idempotent; also run at cleanup). The whole process is limited, so the
// test does nothing else meanwhile; where the limit need not be low at an
// exact moment of the test process, prefer RunWithNOFILE with
// ExhaustDescriptors, which starve only a child process.
func LimitDescriptors(t *testing.T, spare int) (restore func()) {
	t.Helper()
	var orig unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
				t.Errorf("restoring RLIMIT_NOFILE: %v", err)
			}
		})
	}
	t.Cleanup(restore)
	used := leakcheck.Take(t)
	limit := 0 // the lowest descriptor number that must stay unusable
	for fd := 0; ; fd++ {
		if _, ok := used[fd]; ok {
			continue
		}
		if spare == 0 {
			limit = fd
			break
		}
		spare--
	}
	low := orig
	low.Cur = uint64(limit)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatalf("setrlimit(%d): %v", low.Cur, err)
	}
	return restore
}
