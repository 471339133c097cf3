// Command ingest-net is the baseline for gyre's ingest benchmark: the same
// ingest-v1 protocol, dispatcher and sinks as ingestd, served by the net
// package with a goroutine per connection (plus one writing its acks), as
// well as the net package allows: one reused read buffer per connection,
// frames decoded in place, no allocation per message.
//
//	ingest-net --tcp 127.0.0.1:7400 --sink discard|file --data-dir DIR
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gyre-io/gyre/ingest"
)

func main() {
	addr := flag.String("tcp", "127.0.0.1:7400", "TCP listen address")
	sinkName := flag.String("sink", "discard", "discard or file")
	dataDir := flag.String("data-dir", "./data-net", "file sink directory")
	maxPayload := flag.Int("max-payload", ingest.DefaultMaxPayload, "largest DATA payload")
	queueMessages := flag.Int("queue-messages", ingest.DefaultQueueMessages, "messages per shard queue")
	queueBytes := flag.Int("queue-bytes", ingest.DefaultQueueBytes, "bytes per shard queue")
	shards := flag.Int("shards", runtime.GOMAXPROCS(0), "dispatcher shards")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, *addr, *sinkName, *dataDir, *maxPayload, *queueMessages, *queueBytes, *shards); err != nil {
		log.Error("ingest-net failed", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, addr, sinkName, dataDir string, maxPayload, qm, qb, shards int) error {
	var sink ingest.Sink
	switch sinkName {
	case "discard":
		sink = &ingest.DiscardSink{}
	case "file":
		fs, err := ingest.OpenFileSink(ingest.FileSinkConfig{Dir: dataDir, Logger: log})
		if err != nil {
			return err
		}
		sink = fs
	default:
		return fmt.Errorf("--sink %q: want discard or file", sinkName)
	}
	defer sink.Close()
	// Not NonBlockingSink (producers writing to the discard sink on their
	// own goroutines): measured here, it cut this server's pipelined
	// throughput per CPU-second from about 5.2M to 3.1M messages (64
	// goroutines contending for the shard's lock) and left ack-per-message
	// mode unchanged, so the baseline keeps the worker.
	d, err := ingest.NewDispatcher(ingest.DispatcherConfig{Shards: shards, QueueMessages: qm, QueueBytes: qb, Sink: sink})
	if err != nil {
		return err
	}
	defer d.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	log.Info("ingest-net listening", "addr", ln.Addr().String(), "sink", sinkName, "shards", shards)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); ln.Close() }()
	var wg sync.WaitGroup
	var next atomic.Uint64
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		id := next.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			serve(ctx, c, id, d.Shard(int(id)), maxPayload)
		}()
	}
	wg.Wait()
	return nil
}

// conn is one client: the reader pushes DATA into the shard; the worker's
// Done records the highest completed seq and signals the ack writer.
type conn struct {
	c       net.Conn
	id      uint64
	done    atomic.Uint64
	failed  sync.Mutex
	nacks   []uint64
	signal  chan struct{}
	pending atomic.Int64
}

func (c *conn) ID() uint64 { return c.id }

func (c *conn) Done(seq uint64, _ int, err error) {
	if err != nil {
		c.failed.Lock()
		c.nacks = append(c.nacks, seq)
		c.failed.Unlock()
	} else {
		c.done.Store(seq)
	}
	c.pending.Add(-1)
	select {
	case c.signal <- struct{}{}:
	default:
	}
}

func serve(ctx context.Context, nc net.Conn, id uint64, shard *ingest.Shard, maxPayload int) {
	defer nc.Close()
	c := &conn{c: nc, id: id, signal: make(chan struct{}, 1)}
	stopAcks := make(chan struct{})
	acksDone := make(chan struct{})
	go c.writeAcks(stopAcks, acksDone)
	defer func() { close(stopAcks); <-acksDone }()

	dec := ingest.NewDecoder(maxPayload)
	buf := make([]byte, maxPayload+ingest.HeaderSize+64<<10)
	have := 0
	for {
		n, err := nc.Read(buf[have:])
		have += n
		off := 0
		for {
			f, used, derr := dec.Decode(buf[off:have])
			if errors.Is(derr, ingest.ErrNeedMore) {
				break
			}
			if derr != nil {
				var pe *ingest.ProtocolError
				if errors.As(derr, &pe) {
					_, _ = nc.Write(ingest.AppendNack(nil, pe.Seq, pe.Code, pe.Reason))
				}
				return
			}
			switch f.Kind {
			case ingest.KindPing:
				pong, _ := ingest.AppendPong(nil, f.Seq, f.Payload)
				_, _ = nc.Write(pong)
			case ingest.KindData:
				c.pending.Add(1)
				if perr := shard.PushWait(ctx, c, f.Seq, f.Payload); perr != nil {
					c.pending.Add(-1)
					return
				}
			}
			off += used
		}
		have = copy(buf, buf[off:have])
		if err != nil {
			if err != io.EOF {
				return
			}
			// Wait for the acks of what was queued before closing.
			for c.pending.Load() > 0 {
				time.Sleep(time.Millisecond)
			}
			return
		}
	}
}

// writeAcks sends a cumulative ACK (and any NACKs) whenever completions
// arrive.
func (c *conn) writeAcks(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	var acked uint64
	out := make([]byte, 0, 4096)
	var nacks []uint64
	for {
		select {
		case <-c.signal:
		case <-stop:
			return
		}
		out = out[:0]
		c.failed.Lock()
		nacks, c.nacks = append(nacks[:0], c.nacks...), c.nacks[:0]
		c.failed.Unlock()
		for _, seq := range nacks {
			out = ingest.AppendNack(out, seq, ingest.NackOverloaded, "sink write failed")
		}
		if d := c.done.Load(); d > acked {
			acked = d
			out = ingest.AppendAck(out, acked)
		}
		if len(out) > 0 {
			if _, err := c.c.Write(out); err != nil {
				return
			}
		}
	}
}
