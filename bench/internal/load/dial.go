// Package load holds the harness's own load clients, each run as a
// subcommand of gyre-bench in its own process (pinned to the load CPU, its
// CPU time read like wrk's): the pipelined echo client, the accept storm
// and the idle-connection holder. Every loop is bounded in time or count.
package load

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Dialer spreads connections over several loopback source addresses. Each
// source address has its own ~28k ephemeral ports toward one server port,
// and IP_BIND_ADDRESS_NO_PORT defers the port choice to connect(), where
// the kernel may reuse ports in TIME_WAIT (net.ipv4.tcp_tw_reuse).
type Dialer struct {
	dialers []net.Dialer
	next    atomic.Uint64
}

// NewDialer returns a dialer over srcIPs (none: the kernel's choice).
func NewDialer(srcIPs []string, timeout time.Duration) (*Dialer, error) {
	d := &Dialer{}
	if len(srcIPs) == 0 {
		d.dialers = []net.Dialer{{Timeout: timeout}}
		return d, nil
	}
	for _, s := range srcIPs {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("source address %q is not an IP", s)
		}
		d.dialers = append(d.dialers, net.Dialer{
			Timeout:   timeout,
			LocalAddr: &net.TCPAddr{IP: ip},
			Control: func(_, _ string, c syscall.RawConn) error {
				var serr error
				err := c.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
				})
				if err != nil {
					return err
				}
				return serr
			},
		})
	}
	return d, nil
}

// Dial connects to addr from the next source address.
func (d *Dialer) Dial(ctx context.Context, addr string) (*net.TCPConn, error) {
	i := (d.next.Add(1) - 1) % uint64(len(d.dialers))
	c, err := d.dialers[i].DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// RaiseFileLimit sets the soft RLIMIT_NOFILE to the hard limit and returns
// the new soft limit.
func RaiseFileLimit() (uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			return 0, err
		}
	}
	return rl.Cur, nil
}

// errorList keeps a count and the first few messages.
type errorList struct {
	n       atomic.Int64
	samples chan string
}

const maxErrorSamples = 5

func newErrorList() *errorList { return &errorList{samples: make(chan string, maxErrorSamples)} }

func (e *errorList) add(format string, args ...any) {
	e.n.Add(1)
	select {
	case e.samples <- fmt.Sprintf(format, args...):
	default:
	}
}

func (e *errorList) list() (int, []string) {
	out := []string{}
	for {
		select {
		case s := <-e.samples:
			out = append(out, s)
		default:
			return int(e.n.Load()), out
		}
	}
}

// The phases a load client's Sync hook is called with.
const (
	PhaseStart = "start"
	PhaseEnd   = "end"
)

func syncPhase(sync func(string) error, phase string) error {
	if sync == nil {
		return nil
	}
	if err := sync(phase); err != nil {
		return fmt.Errorf("sync at %s: %w", phase, err)
	}
	return nil
}
