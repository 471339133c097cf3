package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// recordingSink keeps a copy of everything written.
type recordingSink struct {
	mu   sync.Mutex
	recs []Record
	fail error
}

func (s *recordingSink) Write(b []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	for _, r := range b {
		s.recs = append(s.recs, Record{Conn: r.Conn, Seq: r.Seq, Session: r.Session, Payload: append([]byte(nil), r.Payload...)})
	}
	return nil
}

func (s *recordingSink) Close() error { return nil }

// doneLog records Done calls of one producer.
type doneLog struct {
	id   uint64
	mu   sync.Mutex
	seqs []uint64
	errs []error
	ch   chan struct{}
}

func (d *doneLog) ID() uint64 { return d.id }

func (d *doneLog) Done(seq uint64, _ int, err error) {
	d.mu.Lock()
	d.seqs = append(d.seqs, seq)
	d.errs = append(d.errs, err)
	d.mu.Unlock()
	if d.ch != nil {
		d.ch <- struct{}{}
	}
}

func shardPayload(p, seq int, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(p*131 + seq*7 + i)
	}
	return b
}

// TestShardArenaModel pushes random-sized payloads (empty ones included)
// through a small arena from several producers; every record reaches the
// sink intact, in per-producer order, and Done runs once per message in
// order.
func TestShardArenaModel(t *testing.T) {
	sink := &recordingSink{}
	d, err := NewDispatcher(DispatcherConfig{Shards: 1, QueueMessages: 37, QueueBytes: 4096, BatchMessages: 5, Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	const producers, perProducer = 4, 2000
	logs := make([]*doneLog, producers)
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		logs[p] = &doneLog{id: uint64(p)}
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(p), 3))
			for seq := 1; seq <= perProducer; seq++ {
				n := rng.IntN(700)
				if rng.IntN(10) == 0 {
					n = 0
				}
				if err := d.Shard(0).PushWait(context.Background(), logs[p], uint64(seq), shardPayload(p, seq, n)); err != nil {
					t.Errorf("PushWait: %v", err)
					return
				}
			}
		}(p)
	}
	wg.Wait()
	d.Close()
	next := make([]uint64, producers)
	for _, r := range sink.recs {
		p := int(r.Conn)
		next[p]++
		if r.Seq != next[p] {
			t.Fatalf("producer %d: record seq %d, want %d", p, r.Seq, next[p])
		}
		if !bytes.Equal(r.Payload, shardPayload(p, int(r.Seq), len(r.Payload))) {
			t.Fatalf("producer %d seq %d: payload corrupted", p, r.Seq)
		}
	}
	for p, l := range logs {
		if len(l.seqs) != perProducer {
			t.Fatalf("producer %d: %d Done calls, want %d", p, len(l.seqs), perProducer)
		}
		for i, s := range l.seqs {
			if s != uint64(i+1) || l.errs[i] != nil {
				t.Fatalf("producer %d: Done %d = seq %d err %v", p, i, s, l.errs[i])
			}
		}
	}
	if d.Shard(0).Depth() != 0 || d.Shard(0).Bytes() != 0 {
		t.Errorf("after Close: depth %d bytes %d", d.Shard(0).Depth(), d.Shard(0).Bytes())
	}
}

func TestShardPushFullAndNotify(t *testing.T) {
	gate := make(chan struct{})
	sink := &gatedSink{gate: gate}
	d, err := NewDispatcher(DispatcherConfig{QueueMessages: 2, QueueBytes: 100, Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	sh := d.Shard(0)
	notified := make(chan struct{}, 1)
	sh.notify = func() { notified <- struct{}{} }
	p := &doneLog{}
	if err := sh.Push(p, 1, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := sh.Push(p, 2, []byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := sh.Push(p, 3, []byte("c")); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third push = %v, want ErrQueueFull", err)
	}
	if err := sh.Push(p, 4, make([]byte, 101)); !errors.Is(err, ErrTooBigForQueue) {
		t.Fatalf("oversize push = %v, want ErrTooBigForQueue", err)
	}
	close(gate)
	select {
	case <-notified:
	case <-time.After(5 * time.Second):
		t.Fatal("a refused producer was not notified when room freed up")
	}
	if sh.Full() != 1 {
		t.Errorf("Full = %d, want 1", sh.Full())
	}
}

type gatedSink struct{ gate chan struct{} }

func (s *gatedSink) Write([]Record) error { <-s.gate; return nil }
func (s *gatedSink) Close() error         { return nil }

func TestShardPushWaitContext(t *testing.T) {
	gate := make(chan struct{})
	d, err := NewDispatcher(DispatcherConfig{QueueMessages: 1, QueueBytes: 100, Sink: &gatedSink{gate: gate}})
	if err != nil {
		t.Fatal(err)
	}
	p := &doneLog{}
	if err := d.Shard(0).Push(p, 1, []byte("a")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := d.Shard(0).PushWait(ctx, p, 2, []byte("b")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("PushWait on a full queue = %v, want DeadlineExceeded", err)
	}
	close(gate)
	if err := d.Shard(0).PushWait(context.Background(), p, 3, []byte("c")); err != nil {
		t.Fatalf("PushWait after room freed: %v", err)
	}
	d.Close()
	if err := d.Shard(0).Push(p, 4, []byte("d")); !errors.Is(err, ErrSinkClosed) {
		t.Fatalf("Push after Close = %v, want ErrSinkClosed", err)
	}
}

// TestShardSinkErrorReachesProducers: a failing sink reports its error to
// every producer of the batch.
func TestShardSinkErrorReachesProducers(t *testing.T) {
	boom := errors.New("disk on fire")
	sink := &recordingSink{fail: boom}
	d, err := NewDispatcher(DispatcherConfig{Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	p := &doneLog{ch: make(chan struct{}, 10)}
	for i := 1; i <= 3; i++ {
		if err := d.Shard(0).Push(p, uint64(i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	d.Close()
	for i, e := range p.errs {
		if !errors.Is(e, boom) {
			t.Fatalf("Done %d err = %v, want the sink's error", i, e)
		}
	}
}

func TestShardPushZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	d, err := NewDispatcher(DispatcherConfig{Sink: &DiscardSink{}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	p := &doneLog{}
	p.seqs = make([]uint64, 0, 1<<20)
	p.errs = make([]error, 0, 1<<20)
	payload := make([]byte, 256)
	var seq uint64
	allocs := testing.AllocsPerRun(5000, func() {
		seq++
		for d.Shard(0).Push(p, seq, payload) != nil {
		}
	})
	if allocs > 0 {
		t.Errorf("%.2f allocations per Push, want 0", allocs)
	}
}

func BenchmarkShardPush(b *testing.B) {
	d, _ := NewDispatcher(DispatcherConfig{Sink: &DiscardSink{}})
	defer d.Close()
	p := nopProducer{}
	payload := make([]byte, 64)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		for d.Shard(0).Push(p, uint64(i+1), payload) != nil {
		}
	}
}

type nopProducer struct{}

func (nopProducer) Done(uint64, int, error) {}

// TestShardNonBlockingSinkInline: with NonBlockingSink, producers write
// batches themselves. 8 goroutines push 2,000 messages each while others
// are writing; every record reaches the sink once, intact, and each
// producer sees its Done calls in push order. Close during the pushes hands
// what is left to the worker, so nothing is left without a Done.
func TestShardNonBlockingSinkInline(t *testing.T) {
	for _, closeEarly := range []bool{false, true} {
		sink := &recordingSink{}
		d, err := NewDispatcher(DispatcherConfig{Sink: sink, NonBlockingSink: true, QueueMessages: 64, QueueBytes: 1 << 16, BatchMessages: 16})
		if err != nil {
			t.Fatal(err)
		}
		const producers, each = 8, 2000
		logs := make([]*doneLog, producers)
		pushed := make([]int, producers)
		var wg sync.WaitGroup
		for p := range logs {
			logs[p] = &doneLog{id: uint64(p + 1)}
			wg.Add(1)
			go func(p int) {
				defer wg.Done()
				for seq := 1; seq <= each; seq++ {
					if err := d.Shard(0).PushWait(context.Background(), logs[p], uint64(seq), shardPayload(p, seq, 1+seq%50)); err != nil {
						if closeEarly && errors.Is(err, ErrSinkClosed) {
							return
						}
						t.Errorf("producer %d seq %d: %v", p, seq, err)
						return
					}
					pushed[p]++
				}
			}(p)
		}
		if closeEarly {
			time.Sleep(time.Millisecond)
			d.Close()
		}
		wg.Wait()
		d.Close()
		got := map[[2]uint64][]byte{}
		for _, r := range sink.recs {
			k := [2]uint64{r.Conn, r.Seq}
			if _, dup := got[k]; dup {
				t.Fatalf("record %v written twice", k)
			}
			got[k] = r.Payload
		}
		for p, l := range logs {
			if len(l.seqs) != pushed[p] {
				t.Fatalf("close early %v: producer %d: %d Done calls for %d pushes", closeEarly, p, len(l.seqs), pushed[p])
			}
			for i, seq := range l.seqs {
				if seq != uint64(i+1) || l.errs[i] != nil {
					t.Fatalf("producer %d: Done #%d = seq %d err %v, want seq %d", p, i, seq, l.errs[i], i+1)
				}
				if !bytes.Equal(got[[2]uint64{l.id, seq}], shardPayload(p, int(seq), 1+int(seq)%50)) {
					t.Fatalf("producer %d seq %d: payload damaged or missing", p, seq)
				}
			}
		}
	}
}

// TestShardRuns: runs of DATA frames (as the TCP server queues them) and
// single payloads interleave; the sink sees every message, split out of
// its run, in push order, never more than BatchMessages per write; Done
// runs once per message, with the sink's error when it fails; a run that
// does not fit is refused whole, without counting a refusal.
func TestShardRuns(t *testing.T) {
	for _, fail := range []bool{false, true} {
		sink := &recordingSink{}
		if fail {
			sink.fail = errors.New("disk gone")
		}
		d, err := NewDispatcher(DispatcherConfig{Shards: 1, QueueMessages: 8, QueueBytes: 4096, BatchMessages: 4, Sink: sink})
		if err != nil {
			t.Fatal(err)
		}
		sh := d.Shard(0)
		log := &doneLog{id: 7}
		var frames []byte
		for seq := uint64(1); seq <= 3; seq++ {
			frames, _ = AppendData(frames, seq, shardPayload(1, int(seq), 10))
		}
		sh.mu.Lock()
		if err := sh.pushRunLocked(log, frames, 3, 3, 30); err != nil {
			t.Fatal(err)
		}
		if err := sh.pushLocked(log, 4, shardPayload(1, 4, 10)); err != nil {
			t.Fatal(err)
		}
		big := frames
		if err := sh.pushRunLocked(log, append(big[:len(big):len(big)], big...), 6, 9, 60); !errors.Is(err, ErrQueueFull) {
			t.Fatalf("a run past QueueMessages: %v, want ErrQueueFull", err)
		}
		if sh.Full() != 0 {
			t.Fatalf("a refused run counted %d refusals, want 0", sh.Full())
		}
		if err := sh.pushRunLocked(log, frames[:2*(HeaderSize+10)], 2, 2, 20); err != nil { // seqs 1, 2 again: the shard does not check
			t.Fatal(err)
		}
		sh.unlockPush()
		d.Close()
		wantSeqs := []uint64{1, 2, 3, 4, 1, 2}
		if fmt.Sprint(log.seqs) != fmt.Sprint(wantSeqs) {
			t.Fatalf("Done seqs %v, want %v", log.seqs, wantSeqs)
		}
		for _, e := range log.errs {
			if (e != nil) != fail {
				t.Fatalf("Done error %v with the sink failing: %v", e, fail)
			}
		}
		if fail {
			continue
		}
		if len(sink.recs) != 6 {
			t.Fatalf("sink has %d records, want 6", len(sink.recs))
		}
		for i, r := range sink.recs {
			want := shardPayload(1, int(wantSeqs[i]), 10)
			if r.Seq != wantSeqs[i] || r.Conn != 7 || !bytes.Equal(r.Payload, want) {
				t.Fatalf("record %d: conn %d seq %d payload %x, want conn 7 seq %d payload %x", i, r.Conn, r.Seq, r.Payload, wantSeqs[i], want)
			}
		}
	}
}
