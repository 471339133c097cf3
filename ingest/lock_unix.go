//go:build unix

package ingest

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockName is the lock file in a log directory. Two FileSinks appending to
// one log would interleave records and break group commit, so the first
// holds an exclusive flock on it for as long as it is open.
const lockName = "LOCK"

// lockDir takes the exclusive lock of a log directory without waiting. The
// lock belongs to the returned open file and goes with it, also when the
// process dies.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ingest: lock log directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("ingest: lock log directory %s (is another file sink using it?): %w", dir, err)
	}
	return f, nil
}

// unlockDir releases a lock taken by lockDir.
func unlockDir(f *os.File) {
	if f != nil {
		f.Close() // closing the file releases the flock
	}
}
