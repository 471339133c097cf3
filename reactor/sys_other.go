//go:build !linux

package reactor

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
)

// linuxEngines: only the net engine exists here.
const linuxEngines = false

// threadID identifies the calling goroutine (see Reactor.onLoop): off
// Linux there is no portable thread ID, and the reactor's goroutine is
// what matters. Parsed from the stack header ("goroutine N [..."); only
// Conn.Close and Lease.Release ask, never per message.
func threadID() int64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseInt(string(b), 10, 64)
	return id
}

func pinCPU(cpu int) error {
	return fmt.Errorf("CPU pinning needs Linux: %w", errors.ErrUnsupported)
}

// closeFd is never reached: the net engine has no raw descriptors.
func closeFd(int) {}

func sockName(int, bool) net.Addr { return nil }
