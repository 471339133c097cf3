//go:build !linux

package reactor

import (
	"errors"
	"fmt"
)

// errEngineUnsupported wraps errors.ErrUnsupported for an engine this
// system does not have.
func errEngineUnsupported(e Engine) error {
	return fmt.Errorf("reactor: the %s engine needs Linux: %w", e, errors.ErrUnsupported)
}

// probeFault is the io_uring probe's test hook; nothing to inject here.
type probeFault struct{}

func probeIOUring(*probeFault) error { return errEngineUnsupported(EngineIOUring) }

// newLinuxEngine refuses the engines that need Linux.
func newLinuxEngine(r *Reactor, e Engine) (engine, error) {
	return nil, errEngineUnsupported(e)
}

// engineHooks are the Linux engines' test hooks; there are none here.
type engineHooks struct{ probe *probeFault }
