//go:build !linux

package acceptor

import (
	"errors"
	"fmt"
)

// newLinuxLoop refuses the Linux engines' accept loops.
func newLinuxLoop(_ *Acceptor, engine string) (acceptLoop, error) {
	return nil, fmt.Errorf("acceptor: the %s engine needs Linux: %w", engine, errors.ErrUnsupported)
}
