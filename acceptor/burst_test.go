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
)

// TestLeastConnectionsBurstRepeated: the burst of
// TestRegressionLeastConnectionsIgnoresInFlightHandoffs, 25 times. The
// balancer once read a reactor's hand-off count and its open connections
// one after the other, while the reactor updated them one after the other
// too: a socket being opened was in neither count, and the next one went
// to the same reactor (most visible on the net engine). Both now come from
// one word.
func TestLeastConnectionsBurstRepeated(t *testing.T) {
	const rounds, n = 25, 8
	bad := 0
	for round := 0; round < rounds; round++ {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			if c0, c1 := leastConnectionsBurst(t, n); c0 != n/2 || c1 != n/2 {
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
