package ingest

import (
	"errors"
	"sync/atomic"
)

// ErrSinkClosed is returned by Sink.Write after Close. It lets a dispatcher
// tell a sink that was shut down on purpose from one that failed.
var ErrSinkClosed = errors.New("ingest: sink closed")

// Record is one accepted DATA payload on its way to a sink.
type Record struct {
	// Conn is the connection (or QUIC stream) id the server assigned. It
	// is unique within one process for far longer than a connection
	// lives (TCP: reactor, generation and slot; QUIC: a counter with the
	// top bit set), and may repeat after a restart: sinks that key
	// records by it (natssink's message ids) add a per-process nonce.
	Conn    uint64
	Seq     uint64    // the client's seq (the session's, when Session is set)
	Session SessionID // the producer session, zero without one
	Payload []byte    // valid only during the Write call
}

// Sink stores batches of records. Write blocks until every record of the
// batch is durable by the sink's own guarantee (for the file sink:
// fsynced), or returns an error, in which case none of the batch may be
// acknowledged. Write is called concurrently from several dispatcher shards
// (one goroutine per shard) and must copy what it keeps before returning.
//
// Close releases the sink; Write after Close returns an error that matches
// ErrSinkClosed. Implementations make Close idempotent.
type Sink interface {
	Write(batch []Record) error
	Close() error
}

// DiscardSink drops every record and counts what it dropped. It is the
// sink for benchmarks of everything in front of storage. The zero value is
// ready to use; all methods are safe for concurrent use.
type DiscardSink struct {
	records atomic.Uint64
	bytes   atomic.Uint64
	closed  atomic.Bool
}

var _ Sink = (*DiscardSink)(nil)

// Write counts the batch and returns at once. It allocates nothing.
func (s *DiscardSink) Write(batch []Record) error {
	if s.closed.Load() {
		return ErrSinkClosed
	}
	n := 0
	for i := range batch {
		n += len(batch[i].Payload)
	}
	s.records.Add(uint64(len(batch)))
	s.bytes.Add(uint64(n))
	return nil
}

// Close makes later Writes fail with ErrSinkClosed. It always returns nil.
func (s *DiscardSink) Close() error {
	s.closed.Store(true)
	return nil
}

// Records returns the number of records written so far.
func (s *DiscardSink) Records() uint64 { return s.records.Load() }

// Bytes returns the number of payload bytes written so far.
func (s *DiscardSink) Bytes() uint64 { return s.bytes.Load() }
