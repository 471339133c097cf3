// Package leakcheck finds descriptors and mappings a test left behind. It
// is for tests only: gyre promises that shutdown releases every descriptor,
// io_uring ring and buffer mapping it created, and tests hold it to that.
package leakcheck

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Snapshot is the set of open descriptors at one moment: fd -> target.
type Snapshot map[int]string

// Take lists this process's descriptors, leaving out the one used to list
// them.
func Take(t testing.TB) Snapshot {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("leakcheck: reading /proc/self/fd: %v", err)
	}
	m := make(Snapshot, len(ents))
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || strings.HasPrefix(target, "/proc/") {
			continue // closed meanwhile, or the listing's own descriptor
		}
		fd, _ := strconv.Atoi(e.Name())
		m[fd] = target
	}
	return m
}

// Check fails t if, within a short grace period (peers may still be
// closing), a descriptor opened since before is still open, any io_uring
// mapping remains, or a mapping starts at one of the given addresses
// (receive-buffer regions that shutdown must unmap).
func Check(t testing.TB, before Snapshot, regions ...uintptr) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		leaked := find(t, before, regions)
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("left behind: %v", leaked)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func find(t testing.TB, before Snapshot, regions []uintptr) []string {
	var leaked []string
	for fd, target := range Take(t) {
		if before[fd] != target {
			leaked = append(leaked, fmt.Sprintf("fd %d -> %s", fd, target))
		}
	}
	maps := Mappings(t)
	for _, m := range maps {
		if strings.Contains(m, "io_uring") {
			leaked = append(leaked, "mapping "+m)
		}
	}
	for _, r := range regions {
		if r == 0 {
			continue
		}
		prefix := fmt.Sprintf("%x-", r)
		for _, m := range maps {
			if strings.HasPrefix(m, prefix) {
				leaked = append(leaked, "buffer mapping "+m)
			}
		}
	}
	return leaked
}

// Mappings returns the lines of /proc/self/maps.
func Mappings(t testing.TB) []string {
	t.Helper()
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatalf("leakcheck: reading /proc/self/maps: %v", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
