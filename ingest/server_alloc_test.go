package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// pipeClient drives one connection with pipelined DATA frames and reads
// the ACKs, allocating nothing after it is built: the frames are written
// once into batch and only their seq fields are rewritten, replies are
// decoded in place from rbuf. It works in lockstep batches, keeping two in
// flight or more: write batch k, then read ACKs until batch k-depth is
// covered. So the server always has a batch to decode while the client
// waits, and a measurement of the whole process's allocations measures the
// server.
type pipeClient struct {
	c     *net.TCPConn
	batch []byte // perBatch DATA frames of frameLen bytes
	frame int
	n     int
	seq   uint64 // last seq written
	acked uint64 // highest ACK read
	rbuf  []byte
	have  int
	dec   Decoder
}

func newPipeClient(tb testing.TB, addr string, perBatch, payloadSize int) *pipeClient {
	tb.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { nc.Close() })
	p := &pipeClient{c: nc.(*net.TCPConn), n: perBatch, rbuf: make([]byte, 64<<10), dec: NewReplyDecoder()}
	payload := make([]byte, payloadSize)
	for i := 0; i < perBatch; i++ {
		p.batch, _ = AppendData(p.batch, 1, payload)
	}
	p.frame = len(p.batch) / perBatch
	return p
}

// writeBatch sends the next perBatch frames in one write.
func (p *pipeClient) writeBatch() error {
	for i := 0; i < p.n; i++ {
		p.seq++
		binary.BigEndian.PutUint64(p.batch[i*p.frame+8:], p.seq)
	}
	_, err := p.c.Write(p.batch)
	return err
}

var errNotAck = errors.New("pipeClient: reply is not an ACK")

// waitAck reads replies until an ACK covers seq.
func (p *pipeClient) waitAck(seq uint64) error {
	for p.acked < seq {
		m, err := p.c.Read(p.rbuf[p.have:])
		if err != nil {
			return err
		}
		p.have += m
		off := 0
		for {
			f, n, err := p.dec.Decode(p.rbuf[off:p.have])
			if errors.Is(err, ErrNeedMore) {
				break
			}
			if err != nil {
				return err
			}
			if f.Kind != KindAck {
				return errNotAck
			}
			p.acked = f.Seq
			off += n
		}
		p.have = copy(p.rbuf, p.rbuf[off:p.have])
	}
	return nil
}

// hello opens a producer session (HELLO, then WELCOME) before any DATA.
func (p *pipeClient) hello() error {
	b, _ := AppendHello(nil, SessionID{}, "alloc-test")
	if _, err := p.c.Write(b); err != nil {
		return err
	}
	var w [HeaderSize + SessionIDSize]byte
	if _, err := io.ReadFull(p.c, w[:]); err != nil {
		return err
	}
	dec := NewReplyDecoder()
	if f, _, err := dec.Decode(w[:]); err != nil || f.Kind != KindWelcome {
		return fmt.Errorf("HELLO answered with %v: %v", f.Kind, err)
	}
	return nil
}

// round writes one batch and waits until at most depth batches are
// unacknowledged.
func (p *pipeClient) round(depth int) error {
	if err := p.writeBatch(); err != nil {
		return err
	}
	if behind := uint64(depth * p.n); p.seq > behind {
		return p.waitAck(p.seq - behind)
	}
	return nil
}

// TestServerZeroAllocsPerMessage: DATA through a real server on loopback
// (decode on the reactor, copy into the shard, the discard sink, the
// completion back to the reactor, the ACK out) allocates nothing per
// message in steady state. The count is process-wide (runtime.MemStats
// Mallocs), so it includes the client, which allocates nothing after
// setup, and anything else the runtime does meanwhile. The runtime has a
// few stray allocations of its own that no per-message path causes (a
// timer, a goroutine's first defer, the scavenger...), hence a tolerance
// of 0.01 per message instead of exactly 0: a real per-message or
// per-batch allocation shows up as 1 or more per message, or (one per
// sink batch of up to 256 messages) as 0.004 or more per message, which
// is why the test also checks the absolute count over many messages.
func TestServerZeroAllocsPerMessage(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	// Small records, many per receive; and records of 48 KiB, which are
	// cut across receives and reassembled in buffers from the frame
	// memory budget (reassembly.go).
	// And small records in a producer session.
	for _, tc := range []struct {
		perBatch, size, rounds int
		session                bool
	}{{256, 64, 4000, false}, {8, 48 << 10, 2000, false}, {256, 64, 4000, true}} {
		name := strconv.Itoa(tc.size) + "B"
		if tc.session {
			name += "-session"
		}
		t.Run(name, func(t *testing.T) {
			sink := &DiscardSink{}
			s := startServer(t, ServerConfig{Sink: sink, Reactors: 1})
			p := newPipeClient(t, s.Addr(), tc.perBatch, tc.size)
			_ = p.c.SetDeadline(time.Now().Add(60 * time.Second))
			if tc.session {
				if err := p.hello(); err != nil {
					t.Fatal(err)
				}
			}
			// Warm-up: every buffer (decoder, ready lists, output, the
			// inbox, the reassembly buffers) grows to its steady size.
			for i := 0; i < 2000; i++ {
				if err := p.round(1); err != nil {
					t.Fatal(err)
				}
			}
			rounds := tc.rounds
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for i := 0; i < rounds; i++ {
				if err := p.round(1); err != nil {
					t.Fatal(err)
				}
			}
			runtime.ReadMemStats(&after)
			msgs := float64(rounds * tc.perBatch)
			allocs := after.Mallocs - before.Mallocs
			perMsg := float64(allocs) / msgs
			t.Logf("%d allocations over %.0f messages (%.5f per message, %d bytes); sink has %d records",
				allocs, msgs, perMsg, after.TotalAlloc-before.TotalAlloc, sink.Records())
			if perMsg >= 0.01 || allocs > uint64(rounds/4) {
				t.Errorf("%d allocations for %.0f messages in %d batches (%.5f per message): the steady-state path allocates",
					allocs, msgs, rounds, perMsg)
			}
		})
	}
}

// BenchmarkServerPipelined measures one DATA message through a real server
// on loopback (one reactor, discard sink), pipelined in batches of 256 with
// up to benchDepth+1 batches unacknowledged. It reports 0 B/op when the
// path allocates nothing. The client shares the process (and the CPUs), so
// ns/op is the cost of both ends; compare runs, not absolute numbers. For a
// profile:
//
//	go test -run '^$' -bench ServerPipelined -benchmem -cpuprofile cpu.out ./ingest/
const benchDepth = 3

func BenchmarkServerPipelined(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) {
			s := startServer(b, ServerConfig{Sink: &DiscardSink{}, Reactors: 1, Logger: slog.New(slog.DiscardHandler)})
			const perBatch = 256
			p := newPipeClient(b, s.Addr(), perBatch, size)
			for i := 0; i < 200; i++ {
				if err := p.round(benchDepth); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += perBatch {
				if err := p.round(benchDepth); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
