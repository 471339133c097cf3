package gyrenet_test

import (
	"io"
	"testing"
	"time"

	"github.com/gyre-io/gyre/gyrenet"
)

// TestSteadyStateAllocs: once warm, a round trip through a server running
// io.Copy on a gyrenet Conn (Read, Write, the reactor's receive and send)
// allocates nothing, deadlines included. AllocsPerRun counts every
// allocation in the process.
func TestSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	l := listen(t, gyrenet.Config{Reactors: 1})
	client, server := pair(t, l)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			_ = server.SetDeadline(time.Now().Add(time.Minute))
			n, err := server.Read(buf)
			if err != nil {
				return
			}
			if _, err := server.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	_ = client.SetDeadline(time.Now().Add(time.Minute))
	for _, size := range []int{64, 1024, 16 << 10} {
		msg, got := make([]byte, size), make([]byte, size)
		roundTrip := func() {
			if _, err := client.Write(msg); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(client, got); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < 200; i++ {
			roundTrip()
		}
		allocs := testing.AllocsPerRun(2000, roundTrip)
		if allocs > 0.01 {
			t.Errorf("%d-byte round trip: %.3f allocations, want 0", size, allocs)
		}
	}
}
