//go:build !linux

package reactor

// probeFault is the io_uring probe's test hook; nothing to inject here.
type probeFault struct{}

func probeIOUring(*probeFault) error { return errEngineUnsupported(EngineIOUring) }

// newLinuxEngine refuses the engines that need Linux.
func newLinuxEngine(r *Reactor, e Engine) (engine, error) {
	return nil, errEngineUnsupported(e)
}

// engineHooks are the Linux engines' test hooks; there are none here.
type engineHooks struct{ probe *probeFault }
