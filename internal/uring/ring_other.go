//go:build !linux

package uring

import (
	"errors"
	"fmt"
)

// ErrUnavailable is wrapped by every error that means io_uring cannot be
// used on this machine. It wraps errors.ErrUnsupported.
var ErrUnavailable = fmt.Errorf("io_uring unavailable: %w", errors.ErrUnsupported)

// Probe reports that io_uring exists only on Linux.
func Probe() error { return ProbeWith(nil) }

// ProbeWith reports that io_uring exists only on Linux.
func ProbeWith(*Injection) error {
	return fmt.Errorf("uring: probe: io_uring exists only on Linux: %w", ErrUnavailable)
}
