package ingest

import (
	"errors"
	"sync"
	"testing"
)

func TestDiscardSink(t *testing.T) {
	var s DiscardSink
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			batch := []Record{{Payload: make([]byte, 10)}, {Payload: make([]byte, 5)}}
			for range 1000 {
				if err := s.Write(batch); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if s.Records() != 8000 || s.Bytes() != 60000 {
		t.Fatalf("Records %d Bytes %d, want 8000 and 60000", s.Records(), s.Bytes())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if err := s.Write(nil); !errors.Is(err, ErrSinkClosed) {
		t.Fatalf("Write after Close = %v, want ErrSinkClosed", err)
	}
}

func TestDiscardSinkAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	var s DiscardSink
	batch := make([]Record, 64)
	if a := testing.AllocsPerRun(100, func() { _ = s.Write(batch) }); a != 0 {
		t.Fatalf("Write allocated %v times, want 0", a)
	}
}
