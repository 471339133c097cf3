package ingest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gyre-io/gyre/internal/syncbuf"
)

func testLogger(b *syncbuf.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// openTestSink opens a sink in dir and closes it when the test ends.
func openTestSink(t testing.TB, cfg FileSinkConfig) *FileSink {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := OpenFileSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// payloadFor is the payload of record seq from writer w: it names both and
// pads to a length that varies with seq.
func payloadFor(w int, seq uint64) []byte {
	p := fmt.Appendf(nil, "writer %d record %d|", w, seq)
	return append(p, bytes.Repeat([]byte{byte(seq)}, int(seq%97))...)
}

// readAll returns every record of the log in dir, payloads copied.
func readAll(t testing.TB, dir string) []Record {
	t.Helper()
	var out []Record
	err := ReadLog(dir, func(r Record, _ time.Time) error {
		r.Payload = bytes.Clone(r.Payload)
		out = append(out, r)
		return nil
	})
	if err != nil {
		t.Fatalf("ReadLog: %v", err)
	}
	return out
}

// writeRecords writes n one-record batches (conn 1, seqs from first) and
// returns the records written.
func writeRecords(t testing.TB, s *FileSink, first uint64, n int) []Record {
	t.Helper()
	var out []Record
	for seq := first; seq < first+uint64(n); seq++ {
		r := Record{Conn: 1, Seq: seq, Payload: payloadFor(1, seq)}
		if err := s.Write([]Record{r}); err != nil {
			t.Fatalf("Write seq %d: %v", seq, err)
		}
		out = append(out, r)
	}
	return out
}

func sameRecords(t testing.TB, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Conn != want[i].Conn || got[i].Seq != want[i].Seq || !bytes.Equal(got[i].Payload, want[i].Payload) {
			t.Fatalf("record %d: got conn %d seq %d %q, want conn %d seq %d %q", i,
				got[i].Conn, got[i].Seq, got[i].Payload, want[i].Conn, want[i].Seq, want[i].Payload)
		}
	}
}

func TestFileSinkConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	var synced, completed atomic.Int64
	s := openTestSink(t, FileSinkConfig{
		Dir:          dir,
		SegmentBytes: 256 << 10, // several rotations
		SyncBytes:    64 << 10,
		OnSync:       func(_ time.Duration, n int) { synced.Add(int64(n)) },
	})
	const writers, batches = 8, 150
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			seq := uint64(0)
			var batch []Record
			for range batches {
				batch = batch[:0]
				size := 0
				for range 1 + rng.IntN(16) {
					seq++
					r := Record{Conn: uint64(w), Seq: seq, Payload: payloadFor(w, seq)}
					batch = append(batch, r)
					size += recordSize(len(r.Payload))
				}
				if err := s.Write(batch); err != nil {
					t.Error(err)
					return
				}
				// Everything any Write returned for is durable, so the
				// bytes of completed Writes never exceed the bytes fsynced.
				if c, sy := completed.Add(int64(size)), synced.Load(); c > sy {
					t.Errorf("Write returned with %d bytes complete but only %d fsynced", c, sy)
					return
				}
				// The caller may reuse its buffers at once.
				for i := range batch {
					clear(batch[i].Payload)
				}
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if completed.Load() != synced.Load() {
		t.Errorf("completed %d bytes, fsynced %d", completed.Load(), synced.Load())
	}

	next := make([]uint64, writers) // last seq seen per writer
	n := 0
	err := ReadLog(dir, func(r Record, ts time.Time) error {
		w := int(r.Conn)
		if w >= writers || r.Seq != next[w]+1 {
			return fmt.Errorf("record %d: conn %d seq %d out of order (after %d)", n, r.Conn, r.Seq, next[w])
		}
		if !bytes.Equal(r.Payload, payloadFor(w, r.Seq)) {
			return fmt.Errorf("record conn %d seq %d: payload %q", r.Conn, r.Seq, r.Payload)
		}
		if time.Since(ts) > time.Hour || ts.After(time.Now()) {
			return fmt.Errorf("record conn %d seq %d: timestamp %v", r.Conn, r.Seq, ts)
		}
		next[w] = r.Seq
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	segs, _ := listSegments(dir)
	t.Logf("%d records in %d segments", n, len(segs))
	if len(segs) < 2 {
		t.Errorf("expected rotations, got %d segment(s)", len(segs))
	}
	if int64(n) == 0 || completed.Load() == 0 {
		t.Fatal("nothing written")
	}
}

// gatedFsync is an fsync hook that, once armed, announces each call and
// waits for the test to let it through.
type gatedFsync struct {
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
	calls   atomic.Int64
}

func newGatedFsync() *gatedFsync {
	return &gatedFsync{entered: make(chan struct{}, 100), release: make(chan struct{}, 100)}
}

func (g *gatedFsync) sync(f *os.File) error {
	if g.armed.Load() {
		g.calls.Add(1)
		g.entered <- struct{}{}
		<-g.release
	}
	return f.Sync()
}

// TestFileSinkWriteWaitsForFsync holds the fsync and checks that Write is
// still blocked, then lets it go and checks that OnSync, which runs right
// after the fsync, came before Write returned.
func TestFileSinkWriteWaitsForFsync(t *testing.T) {
	g := newGatedFsync()
	var mu sync.Mutex
	var order []string
	note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	s, err := openFileSink(FileSinkConfig{
		Dir:    t.TempDir(),
		Logger: slog.New(slog.DiscardHandler),
		OnSync: func(time.Duration, int) { note("synced") },
	}, g.sync)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	g.armed.Store(true)

	returned := make(chan error)
	go func() {
		err := s.Write([]Record{{Conn: 1, Seq: 1, Payload: []byte("x")}})
		note("returned")
		returned <- err
	}()
	<-g.entered
	select {
	case err := <-returned:
		t.Fatalf("Write returned (%v) while its fsync was still running", err)
	case <-time.After(50 * time.Millisecond):
	}
	g.release <- struct{}{}
	if err := <-returned; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(order, ",") != "synced,returned" {
		t.Fatalf("order %v, want OnSync before Write returns", order)
	}
}

// TestFileSinkGroupCommit checks that Writes arriving while an fsync runs
// are made durable together by the next one.
func TestFileSinkGroupCommit(t *testing.T) {
	g := newGatedFsync()
	s, err := openFileSink(FileSinkConfig{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)}, g.sync)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	g.armed.Store(true)

	var wg sync.WaitGroup
	write := func(seq uint64) {
		wg.Go(func() {
			if err := s.Write([]Record{{Conn: 1, Seq: seq, Payload: []byte("p")}}); err != nil {
				t.Error(err)
			}
		})
	}
	write(1)
	<-g.entered // the first commit is in its fsync
	for seq := uint64(2); seq <= 5; seq++ {
		write(seq)
	}
	waitPending(t, s, 4*recordSize(1))
	g.release <- struct{}{}
	<-g.entered
	g.release <- struct{}{}
	wg.Wait()
	if c := g.calls.Load(); c != 2 {
		t.Fatalf("%d fsyncs for two groups of Writes, want 2", c)
	}
}

// waitPending waits until n bytes of records wait for the syncer.
func waitPending(t testing.TB, s *FileSink, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		s.mu.Lock()
		got := len(s.pend)
		s.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending %d bytes, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFileSinkSyncTriggers checks both triggers: SyncBytes alone (with an
// interval too long to ever fire) and SyncInterval alone.
func TestFileSinkSyncTriggers(t *testing.T) {
	t.Run("bytes", func(t *testing.T) {
		s := openTestSink(t, FileSinkConfig{Dir: t.TempDir(), SyncBytes: 1000, SyncInterval: time.Hour})
		done := make(chan error)
		go func() { done <- s.Write([]Record{{Payload: make([]byte, 1000)}}) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a Write of SyncBytes did not trigger an fsync")
		}
	})
	t.Run("interval", func(t *testing.T) {
		const interval = 20 * time.Millisecond
		s := openTestSink(t, FileSinkConfig{Dir: t.TempDir(), SyncBytes: 1 << 30, SyncInterval: interval})
		start := time.Now()
		if err := s.Write([]Record{{Payload: []byte("small")}}); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < interval {
			t.Fatalf("a small Write returned after %v, before the %v interval", d, interval)
		}
	})
}

func TestFileSinkRotationAndRetention(t *testing.T) {
	dir := t.TempDir()
	logs := &syncbuf.Buffer{}
	const segBytes, retain = 4096, 16384
	s := openTestSink(t, FileSinkConfig{Dir: dir, SegmentBytes: segBytes, RetainBytes: retain, Logger: testLogger(logs)})
	var want []Record
	for seq := uint64(1); seq <= 300; seq++ {
		r := Record{Conn: 3, Seq: seq, Payload: bytes.Repeat([]byte{byte(seq)}, 100+int(seq%50))}
		if err := s.Write([]Record{r}); err != nil {
			t.Fatal(err)
		}
		want = append(want, r)
	}
	// A record larger than a segment gets a segment of its own.
	huge := Record{Conn: 3, Seq: 301, Payload: bytes.Repeat([]byte{'h'}, 2*segBytes)}
	if err := s.Write([]Record{huge}); err != nil {
		t.Fatal(err)
	}
	want = append(want, huge)
	tail := Record{Conn: 3, Seq: 302, Payload: []byte("after the huge one")}
	if err := s.Write([]Record{tail}); err != nil {
		t.Fatal(err)
	}
	want = append(want, tail)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for i, seg := range segs {
		total += seg.size
		if i > 0 && seg.index != segs[i-1].index+1 {
			t.Errorf("segment indexes %d then %d: a gap", segs[i-1].index, seg.index)
		}
		if seg.size > segBytes && seg.size != segHeaderSize+int64(recordSize(len(huge.Payload))) {
			t.Errorf("segment %s is %d bytes, over %d without one oversize record", seg.path, seg.size, segBytes)
		}
	}
	if segs[0].index == 1 {
		t.Error("retention deleted nothing")
	}
	// Retention runs at rotation and may leave the log one segment over.
	if total > retain+2*segBytes+int64(recordSize(len(huge.Payload))) {
		t.Errorf("log is %d bytes after retention to %d", total, retain)
	}
	if !strings.Contains(logs.String(), "retention deleted log segment") {
		t.Error("retention deletions were not logged")
	}
	// What is left is a suffix of what was written, in order.
	got := readAll(t, dir)
	if len(got) == 0 || len(got) >= len(want) {
		t.Fatalf("read %d of %d records after retention", len(got), len(want))
	}
	sameRecords(t, got, want[len(want)-len(got):])

	// Reopening continues the last segment and the log stays readable.
	s2 := openTestSink(t, FileSinkConfig{Dir: dir, SegmentBytes: segBytes, RetainBytes: retain})
	more := writeRecords(t, s2, 1000, 5)
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	got2 := readAll(t, dir)
	sameRecords(t, got2[len(got2)-5:], more)
}

// lastSegment returns the path and size of the newest segment in dir.
func lastSegment(t testing.TB, dir string) (string, int64) {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil || len(segs) == 0 {
		t.Fatalf("no segments: %v", err)
	}
	last := segs[len(segs)-1]
	return last.path, last.size
}

// recordOffsets returns the offset of each record in a segment file.
func recordOffsets(t testing.TB, path string) []int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for off := int64(segHeaderSize); off+recHeaderSize <= int64(len(data)); {
		offs = append(offs, off)
		off += recHeaderSize + int64(binary.BigEndian.Uint32(data[off+8:]))
	}
	return offs
}

func TestFileSinkRecoversTornTail(t *testing.T) {
	damages := []struct {
		name string
		// damage changes the last segment, whose complete records start
		// at offs and which is size bytes long; it returns how many
		// records must survive.
		damage func(t *testing.T, path string, offs []int64, size int64) int
	}{
		{"cut in a record header", func(t *testing.T, path string, offs []int64, size int64) int {
			truncate(t, path, offs[len(offs)-1]+10)
			return len(offs) - 1
		}},
		{"cut in a payload", func(t *testing.T, path string, offs []int64, size int64) int {
			truncate(t, path, size-3)
			return len(offs) - 1
		}},
		{"cut after the magic", func(t *testing.T, path string, offs []int64, size int64) int {
			truncate(t, path, offs[len(offs)-1]+4)
			return len(offs) - 1
		}},
		{"garbage appended", func(t *testing.T, path string, offs []int64, size int64) int {
			appendBytes(t, path, []byte("this is not a record at all, just noise from a torn write"))
			return len(offs)
		}},
		{"zeros appended", func(t *testing.T, path string, offs []int64, size int64) int {
			appendBytes(t, path, make([]byte, 4096))
			return len(offs)
		}},
		{"partial record appended", func(t *testing.T, path string, offs []int64, size int64) int {
			rec := appendRecord(nil, &Record{Conn: 9, Seq: 9, Payload: []byte("never finished")}, 1)
			appendBytes(t, path, rec[:len(rec)-4])
			return len(offs)
		}},
		{"last record's CRC broken", func(t *testing.T, path string, offs []int64, size int64) int {
			flipByte(t, path, size-1)
			return len(offs) - 1
		}},
	}
	for _, tt := range damages {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTestSink(t, FileSinkConfig{Dir: dir})
			want := writeRecords(t, s, 1, 20)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			path, size := lastSegment(t, dir)
			keep := tt.damage(t, path, recordOffsets(t, path), size)
			want = want[:keep]

			// Before recovery the reader stops at the torn tail quietly.
			sameRecords(t, readAll(t, dir), want)

			logs := &syncbuf.Buffer{}
			s2 := openTestSink(t, FileSinkConfig{Dir: dir, Logger: testLogger(logs)})
			if !strings.Contains(logs.String(), "recovered torn tail") || !strings.Contains(logs.String(), fmt.Sprintf("kept_records=%d", keep)) {
				t.Errorf("recovery log: %s", logs.String())
			}
			want = append(want, writeRecords(t, s2, 100, 3)...)
			if err := s2.Close(); err != nil {
				t.Fatal(err)
			}
			sameRecords(t, readAll(t, dir), want)
		})
	}
}

func TestFileSinkRecoversTornSegmentHeader(t *testing.T) {
	dir := t.TempDir()
	s := openTestSink(t, FileSinkConfig{Dir: dir})
	want := writeRecords(t, s, 1, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash right after a rotation created the next segment.
	if err := os.WriteFile(filepath.Join(dir, segmentName(2)), []byte("GYRE"), 0o644); err != nil {
		t.Fatal(err)
	}
	sameRecords(t, readAll(t, dir), want)
	logs := &syncbuf.Buffer{}
	s2 := openTestSink(t, FileSinkConfig{Dir: dir, Logger: testLogger(logs)})
	if !strings.Contains(logs.String(), "torn header") {
		t.Errorf("recovery log: %s", logs.String())
	}
	want = append(want, writeRecords(t, s2, 10, 2)...)
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	sameRecords(t, readAll(t, dir), want)
}

// TestFileSinkDamageBeforeIntactRecords breaks a record in the middle of
// the last segment: the reader must call it corruption, and recovery must
// keep the records before it and save the rest instead of discarding it.
func TestFileSinkDamageBeforeIntactRecords(t *testing.T) {
	dir := t.TempDir()
	s := openTestSink(t, FileSinkConfig{Dir: dir})
	want := writeRecords(t, s, 1, 10)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path, size := lastSegment(t, dir)
	offs := recordOffsets(t, path)
	flipByte(t, path, offs[4]+recHeaderSize+2) // a payload byte of record 5

	err := ReadLog(dir, func(Record, time.Time) error { return nil })
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.Offset != offs[4] || ce.Segment != path {
		t.Fatalf("ReadLog = %v, want a CorruptError at %s offset %d", err, path, offs[4])
	}

	logs := &syncbuf.Buffer{}
	s2 := openTestSink(t, FileSinkConfig{Dir: dir, Logger: testLogger(logs)})
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("recovery log: %s", logs.String())
	}
	sameRecords(t, readAll(t, dir), want[:4])
	saved, err := os.ReadFile(fmt.Sprintf("%s.dropped-%d", path, offs[4]))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(saved)) != size-offs[4] {
		t.Fatalf("saved %d bytes, dropped %d", len(saved), size-offs[4])
	}
}

func TestReadLogReportsCorruption(t *testing.T) {
	dir := t.TempDir()
	s := openTestSink(t, FileSinkConfig{Dir: dir, SegmentBytes: 2048})
	writeRecords(t, s, 1, 60)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := listSegments(dir)
	if len(segs) < 3 {
		t.Fatalf("want at least 3 segments, have %d", len(segs))
	}
	mid := segs[1].path
	offs := recordOffsets(t, mid)

	cases := []struct {
		name    string
		damage  func(path string)
		wantOff int64
	}{
		{"payload byte", func(p string) { flipByte(t, p, offs[2]+recHeaderSize) }, offs[2]},
		{"seq byte", func(p string) { flipByte(t, p, offs[1]+22) }, offs[1]},
		{"length byte", func(p string) { flipByte(t, p, offs[3]+10) }, offs[3]},
		{"record magic", func(p string) { flipByte(t, p, offs[0]) }, offs[0]},
		{"segment magic", func(p string) { flipByte(t, p, 0) }, 0},
		{"truncated earlier segment", func(p string) { truncate(t, p, offs[len(offs)-1]+5) }, offs[len(offs)-1]},
	}
	orig, err := os.ReadFile(mid)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(mid, orig, 0o644); err != nil {
				t.Fatal(err)
			}
			tc.damage(mid)
			n := 0
			err := ReadLog(dir, func(Record, time.Time) error { n++; return nil })
			var ce *CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("ReadLog = %v, want a *CorruptError", err)
			}
			if ce.Segment != mid || ce.Offset != tc.wantOff {
				t.Fatalf("error at %s offset %d, want %s offset %d", ce.Segment, ce.Offset, mid, tc.wantOff)
			}
			if !strings.Contains(err.Error(), mid) {
				t.Fatalf("error %q does not name the segment", err)
			}
			t.Logf("%v (after %d good records)", err, n)
		})
	}
}

func TestOpenFileSinkRefusesCorruptHeader(t *testing.T) {
	dir := t.TempDir()
	s := openTestSink(t, FileSinkConfig{Dir: dir})
	writeRecords(t, s, 1, 2)
	s.Close()
	path, _ := lastSegment(t, dir)
	flipByte(t, path, 3)
	_, err := OpenFileSink(FileSinkConfig{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("OpenFileSink = %v, want ErrCorrupt", err)
	}
	// The failed open released the directory lock.
	flipByte(t, path, 3)
	openTestSink(t, FileSinkConfig{Dir: dir}).Close()
}

func TestReadLogStopsOnCallbackError(t *testing.T) {
	dir := t.TempDir()
	s := openTestSink(t, FileSinkConfig{Dir: dir})
	writeRecords(t, s, 1, 5)
	s.Close()
	stop := errors.New("stop")
	n := 0
	err := ReadLog(dir, func(Record, time.Time) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if err != stop || n != 2 {
		t.Fatalf("ReadLog = %v after %d records, want the callback's error after 2", err, n)
	}
}

func TestFileSinkClose(t *testing.T) {
	dir := t.TempDir()
	// With an interval this long only Close can flush the pending Writes.
	s := openTestSink(t, FileSinkConfig{Dir: dir, SyncInterval: time.Hour, SyncBytes: 1 << 30})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			if err := s.Write([]Record{{Conn: uint64(i), Seq: 1, Payload: []byte("in flight")}}); err != nil {
				t.Errorf("Write in flight at Close = %v, want nil", err)
			}
		})
	}
	waitPending(t, s, 4*recordSize(len("in flight")))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	if err := s.Write([]Record{{Payload: []byte("late")}}); !errors.Is(err, ErrSinkClosed) {
		t.Fatalf("Write after Close = %v, want ErrSinkClosed", err)
	}
	if err := s.Write(nil); !errors.Is(err, ErrSinkClosed) {
		t.Fatalf("empty Write after Close = %v, want ErrSinkClosed", err)
	}
	if got := len(readAll(t, dir)); got != 4 {
		t.Fatalf("%d records in the log, want the 4 Writes flushed by Close", got)
	}
}

// TestFileSinkFsyncFailureHeals: a failed fsync fails the Write, cuts its
// record off the log (the cut's own fsync failing too, so the repair is
// retried), reports the cause through Health, and once fsync works again
// the sink stores by itself and Close returns nil.
func TestFileSinkFsyncFailureHeals(t *testing.T) {
	var fail atomic.Bool
	boom := errors.New("injected EIO")
	dir := t.TempDir()
	s, err := openFileSink(FileSinkConfig{Dir: dir, Logger: slog.New(slog.DiscardHandler)}, func(f *os.File) error {
		if fail.Load() {
			return boom
		}
		return f.Sync()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write([]Record{{Seq: 1, Payload: []byte("fine")}}); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	if err := s.Write([]Record{{Seq: 2, Payload: []byte("lost")}}); !errors.Is(err, boom) {
		t.Fatalf("Write with failing fsync = %v, want the fsync error", err)
	}
	if err := s.Health(); !errors.Is(err, boom) {
		t.Fatalf("Health after a failed fsync = %v, want the fsync error", err)
	}
	fail.Store(false)
	deadline := time.Now().Add(time.Second)
	for s.Health() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Health still %v 1 s after fsync works again", s.Health())
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Write([]Record{{Seq: 3, Payload: []byte("after")}}); err != nil {
		t.Fatalf("Write after fsync works again = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	var got []string
	for _, r := range readAll(t, dir) {
		got = append(got, string(r.Payload))
	}
	if strings.Join(got, ",") != "fine,after" {
		t.Fatalf("log holds %q, want fine and after (not the failed record)", got)
	}
}

func TestFileSinkDirectoryLock(t *testing.T) {
	dir := t.TempDir()
	s := openTestSink(t, FileSinkConfig{Dir: dir})
	if s2, err := OpenFileSink(FileSinkConfig{Dir: dir}); err == nil {
		s2.Close()
		t.Fatal("a second FileSink opened the same directory")
	}
	s.Close()
	openTestSink(t, FileSinkConfig{Dir: dir}).Close()
}

func TestOpenFileSinkBadConfig(t *testing.T) {
	for _, cfg := range []FileSinkConfig{
		{},
		{Dir: t.TempDir(), SegmentBytes: -1},
		{Dir: t.TempDir(), SyncInterval: -time.Second},
	} {
		if s, err := OpenFileSink(cfg); err == nil {
			s.Close()
			t.Errorf("OpenFileSink(%+v) succeeded", cfg)
		}
	}
}

func TestFileSinkWriteAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	s := openTestSink(t, FileSinkConfig{Dir: t.TempDir(), SyncInterval: 50 * time.Microsecond})
	batch := make([]Record, 16)
	for i := range batch {
		batch[i] = Record{Conn: 1, Seq: uint64(i), Payload: make([]byte, 200)}
	}
	for range 10 { // grow the buffers
		if err := s.Write(batch); err != nil {
			t.Fatal(err)
		}
	}
	// AllocsPerRun counts the syncer goroutine too.
	if a := testing.AllocsPerRun(50, func() { _ = s.Write(batch) }); a != 0 {
		t.Fatalf("Write allocated %v times, want 0", a)
	}
}

func BenchmarkFileSinkWrite(b *testing.B) {
	for _, payload := range []int{128, 1024} {
		b.Run(fmt.Sprintf("payload=%d/batch=64", payload), func(b *testing.B) {
			s := openTestSink(b, FileSinkConfig{Dir: b.TempDir(), RetainBytes: 256 << 20})
			b.SetBytes(int64(64 * payload))
			b.ReportAllocs()
			b.SetParallelism(2) // several dispatcher shards per core
			b.RunParallel(func(pb *testing.PB) {
				batch := make([]Record, 64)
				for i := range batch {
					batch[i] = Record{Conn: 1, Seq: uint64(i), Payload: make([]byte, payload)}
				}
				for pb.Next() {
					if err := s.Write(batch); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func truncate(t testing.TB, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func appendBytes(t testing.TB, path string, p []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(p); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	b[0] ^= 0x5A
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

// TestFileSinkIntermittentFailures: concurrent writers while every few
// fsyncs fail (rotations included). Afterwards the log holds exactly the
// records of the Writes that returned nil, each once: a failed Write left
// nothing behind and no Write was told it succeeded when it had failed.
func TestFileSinkIntermittentFailures(t *testing.T) {
	var calls atomic.Int64
	boom := errors.New("injected EIO")
	dir := t.TempDir()
	s, err := openFileSink(FileSinkConfig{Dir: dir, SegmentBytes: 8 << 10, SyncInterval: 100 * time.Microsecond,
		Logger: slog.New(slog.DiscardHandler)}, func(f *os.File) error {
		if calls.Add(1)%7 == 0 {
			return boom
		}
		return f.Sync()
	})
	if err != nil {
		t.Fatal(err)
	}
	const writers, perWriter = 4, 150
	var mu sync.Mutex
	ok := map[[2]uint64]bool{}
	failed := 0
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(1); seq <= perWriter; seq++ {
				batch := []Record{{Conn: uint64(w), Seq: seq, Payload: payloadFor(w, seq)}, {Conn: uint64(w), Seq: seq + 1000, Payload: payloadFor(w, seq+1000)}}
				err := s.Write(batch)
				if err != nil && !errors.Is(err, boom) {
					t.Errorf("Write: %v", err)
				}
				mu.Lock()
				if err == nil {
					ok[[2]uint64{uint64(w), seq}] = true
				} else {
					failed++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// Close may meet one more injected failure; what matters is the log.
	_ = s.Close()
	seen := map[[2]uint64]int{}
	for _, r := range readAll(t, dir) {
		seq := r.Seq
		if seq > 1000 {
			seq -= 1000
		}
		k := [2]uint64{r.Conn, seq}
		if !ok[k] {
			t.Fatalf("record conn %d seq %d is in the log but its Write failed", r.Conn, r.Seq)
		}
		if !bytes.Equal(r.Payload, payloadFor(int(r.Conn), r.Seq)) {
			t.Fatalf("record conn %d seq %d: wrong payload", r.Conn, r.Seq)
		}
		seen[k]++
	}
	for k := range ok {
		if seen[k] != 2 {
			t.Errorf("Write conn %d seq %d succeeded, but %d of its 2 records are in the log", k[0], k[1], seen[k])
		}
	}
	if failed == 0 || len(ok) == 0 {
		t.Fatalf("%d Writes failed and %d succeeded: the test did not exercise both", failed, len(ok))
	}
	t.Logf("%d Writes succeeded, %d failed", len(ok), failed)
}
