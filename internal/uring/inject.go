package uring

import (
	"strconv"
	"syscall"
)

// Injection is a test hook: it makes one step fail with Errno as if the
// kernel had returned it, so tests can see how gyre reports an io_uring
// refusal (EPERM, ENOSYS, EOPNOTSUPP, EINVAL, ENOMEM, ...) on a machine
// where io_uring works. The failure takes the same path, and gets the same
// message and hint, as the kernel's would. Pass it in Config.Inject or to
// [ProbeWith]; production code leaves it nil. A zero Errno injects nothing.
type Injection struct {
	Stage Stage
	Errno syscall.Errno
}

// Stage names a step an Injection can make fail.
type Stage uint8

// Stages an Injection can make fail.
const (
	StageSetup   Stage = iota + 1 // io_uring_setup (every flag fallback sees it)
	StageProbe                    // io_uring_register(IORING_REGISTER_PROBE), the opcode probe
	StageBufRing                  // io_uring_register(IORING_REGISTER_PBUF_RING)
)

func (s Stage) String() string {
	switch s {
	case StageSetup:
		return "setup"
	case StageProbe:
		return "probe"
	case StageBufRing:
		return "bufring"
	}
	return "stage(" + strconv.Itoa(int(s)) + ")"
}

// at returns the errno to fake at stage s, or 0.
func (inj *Injection) at(s Stage) syscall.Errno {
	if inj == nil || inj.Stage != s {
		return 0
	}
	return inj.Errno
}
