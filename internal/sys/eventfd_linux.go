package sys

import (
	"os"

	"golang.org/x/sys/unix"
)

// NewEventfd returns a non-blocking eventfd: the wake-up a loop waits on
// beside its sockets.
func NewEventfd() (int, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return -1, os.NewSyscallError("eventfd", err)
	}
	return fd, nil
}

// WakeEventfd makes fd readable.
func WakeEventfd(fd int) {
	var one = [8]byte{1}
	_, _ = unix.Write(fd, one[:])
}

// DrainEventfd resets fd.
func DrainEventfd(fd int) {
	var buf [8]byte
	_, _ = unix.Read(fd, buf[:])
}

// CloseFd closes fd, ignoring the error: the descriptor is gone either way.
func CloseFd(fd int) { _ = unix.Close(fd) }
