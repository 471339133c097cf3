package reactor_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/gyre-io/gyre/reactor"
)

// pingClient round-trips a fixed message on an established connection
// without allocating on the client side.
type pingClient struct {
	c   net.Conn
	msg []byte
	buf []byte
}

func (p *pingClient) roundTrip() error {
	if _, err := p.c.Write(p.msg); err != nil {
		return err
	}
	_, err := io.ReadFull(p.c, p.buf)
	return err
}

func newPingClient(t testing.TB, s *server, size int) *pingClient {
	c := s.dial(t)
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	p := &pingClient{c: c, msg: make([]byte, size), buf: make([]byte, size)}
	for i := 0; i < 100; i++ { // warm up: buffers grown, caches filled
		if err := p.roundTrip(); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// TestSteadyStateZeroAllocs: the receive -> handler -> send path allocates
// nothing per message once a connection is warm. AllocsPerRun counts every
// allocation in the process, the reactor's included.
func TestSteadyStateZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, e := range engines(t) {
		t.Run(e.String(), func(t *testing.T) {
			s := start(t, reactor.Config{Engine: e, Reactors: 1}, echo{})
			for _, size := range []int{64, 1024, 16 << 10} {
				p := newPingClient(t, s, size)
				allocs := testing.AllocsPerRun(2000, func() {
					if err := p.roundTrip(); err != nil {
						t.Fatal(err)
					}
				})
				// A stray runtime allocation (timer, GC) may land in the
				// window: allow well under one per hundred messages.
				if allocs > 0.01 {
					t.Errorf("%d-byte echo: %.3f allocations per message, want 0", size, allocs)
				}
			}
		})
	}
}

// BenchmarkEchoRoundTrip measures one echo round trip over loopback;
// run with -benchmem to see allocations per message.
func BenchmarkEchoRoundTrip(b *testing.B) {
	for _, size := range []int{64, 1024, 16 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			s := start(b, reactor.Config{Reactors: 1}, echo{})
			p := newPingClient(b, s, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := p.roundTrip(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func byteSize(n int) string {
	switch {
	case n >= 1<<10 && n%(1<<10) == 0:
		return itoa(n>>10) + "KiB"
	default:
		return itoa(n) + "B"
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
