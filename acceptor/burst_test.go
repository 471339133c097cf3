package acceptor_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gyre-io/gyre/acceptor"
	"github.com/gyre-io/gyre/internal/leakcheck"
	"github.com/gyre-io/gyre/reactor"
	"golang.org/x/sys/unix"
)

// TestLeastConnectionsBurstRepeated repeats the burst of
// TestRegressionLeastConnectionsIgnoresInFlightHandoffs. The acceptor's
// load for a reactor is Conns() + (sent - HandedOff()), two counters the
// reactor updates one after the other in Reactor.open (handoffs first,
// conns after the engine's attach): an acceptor that reads between the two
// sees the socket in neither and puts the next one on the same reactor.
// Most visible on the net engine, whose attach starts two goroutines.
func TestLeastConnectionsBurstRepeated(t *testing.T) {
	const rounds, n = 25, 8
	bad := 0
	for round := 0; round < rounds; round++ {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			g := newGroup(t, 2, newEcho())
			var cfds []int
			for i := 0; i < n; i++ {
				cfds = append(cfds, rawClient(t))
			}
			a, restore := starveListen(t, acceptor.Config{Addrs: []string{"127.0.0.1:0"}, Balancer: acceptor.LeastConnections()}, g)
			sa := sockaddr(a.Addrs()[0])
			for _, fd := range cfds {
				if err := unix.Connect(fd, sa); err != nil {
					restore()
					t.Fatalf("connect: %v", err)
				}
			}
			waitAcceptErrors(t, a, 1)
			restore()
			waitAccepted(t, a, n)
			rs := g.Reactors()
			waitFor(t, "every connection to open", func() bool { return rs[0].Conns()+rs[1].Conns() == n })
			if c0, c1 := rs[0].Conns(), rs[1].Conns(); c0 != n/2 || c1 != n/2 {
				bad++
				t.Logf("split %d/%d", c0, c1)
			}
		})
	}
	if bad > 0 {
		t.Errorf("LeastConnections split a burst of %d unevenly in %d of %d rounds", n, bad, rounds)
	}
}

// TestShutdownRacesListen: Listen and Group.Shutdown at the same
// time, with clients dialing. Either Listen fails with ErrServerClosed or
// its acceptor is stopped by the Shutdown; nothing hangs and nothing is
// left open.
func TestShutdownRacesListen(t *testing.T) {
	checkFDs(t)
	won := 0
	defer func() { t.Logf("%d of 120 Listen calls won the race", won) }()
	for round := 0; round < 30; round++ {
		before := leakcheck.Take(t)
		g, err := reactor.NewGroup(reactor.Config{Reactors: 2, Logger: quiet}, newEcho())
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		accs := make(chan *acceptor.Acceptor, 8)
		first := make(chan struct{}, 8)
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a, err := acceptor.Listen(acceptor.Config{Addrs: []string{"127.0.0.1:0"}, Logger: quiet}, g)
				if err != nil {
					if !errors.Is(err, reactor.ErrServerClosed) {
						t.Errorf("Listen: %v", err)
					}
					return
				}
				accs <- a
				first <- struct{}{}
				for j := 0; j < 5; j++ {
					if c, err := net.DialTimeout("tcp", a.Addrs()[0].String(), time.Second); err == nil {
						_ = c.Close()
					}
				}
			}()
		}
		if round%2 == 1 {
			<-first // the others are somewhere inside Listen now
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		cancel()
		wg.Wait()
		close(accs)
		won += len(accs)
		for a := range accs {
			done := make(chan error, 1)
			go func() { done <- a.Wait() }()
			select {
			case err := <-done:
				if !errors.Is(err, reactor.ErrServerClosed) {
					t.Errorf("acceptor Wait = %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("an acceptor registered with the group still runs after Shutdown")
			}
		}
		leakcheck.Check(t, before)
	}
}
