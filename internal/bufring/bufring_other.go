//go:build !linux

package bufring

import (
	"errors"
	"fmt"
)

// New fails on systems without io_uring.
func New(cfg Config) (*Ring, error) {
	return nil, fmt.Errorf("bufring: provided-buffer rings need Linux io_uring: %w", errors.ErrUnsupported)
}

// Register fails on systems without io_uring.
func (b *Ring) Register(r Registrar, bgid uint16) error {
	return fmt.Errorf("bufring: %w", errors.ErrUnsupported)
}

// Close does nothing on systems without io_uring.
func (b *Ring) Close() error { return nil }
