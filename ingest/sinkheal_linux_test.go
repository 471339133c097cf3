package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gyre-io/gyre/internal/testenv"
)

// waitHealthy polls s.Health until it is nil and returns how long that
// took; it fails the test after limit.
func waitHealthy(t *testing.T, s *FileSink, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for s.Health() != nil {
		if time.Since(start) > limit {
			t.Fatalf("sink still unhealthy %v later: %v", limit, s.Health())
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

// sendAndResolve pipelines n records of size bytes on tc and reads replies
// until every one is either NACKed or covered by an ACK. It returns the
// seqs ACKed and NACKed, and fails on a NACK with another code than want.
func sendAndResolve(t *testing.T, tc *testClient, n, size int, want NackCode) (acked, nacked []uint64) {
	t.Helper()
	first := tc.seq + 1
	for i := 0; i < n; i++ {
		tc.data(bytes.Repeat([]byte{byte('a' + i%26)}, size))
	}
	tc.flush()
	last := tc.seq
	refused := map[uint64]bool{}
	// Resolved once every seq from first to last is NACKed or <= the ACK.
	resolved := func() bool {
		for s := max(first, tc.ack+1); s <= last; s++ {
			if !refused[s] {
				return false
			}
		}
		return true
	}
	for !resolved() {
		f, err := tc.next()
		if err != nil {
			t.Fatalf("reading replies: %v (ack %d, %d NACKed)", err, tc.ack, len(refused))
		}
		switch f.Kind {
		case KindAck:
			tc.ack = f.Seq
		case KindNack:
			if c := f.NackCode(); c != want {
				t.Fatalf("NACK seq %d code %v (%q), want %v", f.Seq, c, f.NackReason(), want)
			}
			refused[f.Seq] = true
		default:
			t.Fatalf("unexpected %v", f.Kind)
		}
	}
	for s := first; s <= last; s++ {
		if refused[s] {
			nacked = append(nacked, s)
		} else {
			acked = append(acked, s)
		}
	}
	return acked, nacked
}

// TestFileSinkDiskFull fills a real filesystem (a small tmpfs) under a
// server with the file sink: records that cannot be stored get NACK 6
// (storage unavailable), none of them is in the log afterwards, Health
// names the cause; once space is freed the sink stores again within 1 s by
// itself, and every ACKed record is in the log exactly once.
func TestFileSinkDiskFull(t *testing.T) {
	dir := testenv.MountTmpfs(t, 512<<10)
	sink, err := OpenFileSink(FileSinkConfig{Dir: dir, SegmentBytes: 64 << 10, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, ServerConfig{Sink: sink, Reactors: 1})
	tc := dialClient(t, srv.Addr())

	var acked, nacked []uint64
	a, n := sendAndResolve(t, tc, 20, 1000, NackStorageUnavailable)
	if len(n) != 0 {
		t.Fatalf("NACKs %v before the disk was full", n)
	}
	acked = append(acked, a...)

	seg, sizeBefore := lastSegment(t, dir)
	filler := testenv.FillDisk(t, dir)
	// The records fill the segment's last page, then run into ENOSPC: the
	// failing batch was partly written, and must be cut off again.
	a, n = sendAndResolve(t, tc, 200, 1000, NackStorageUnavailable)
	acked, nacked = append(acked, a...), append(nacked, n...)
	if len(n) == 0 {
		t.Fatal("no NACK while the disk was full")
	}
	// A first batch may still fit in the page before the disk is full:
	// the segment holds exactly the records ACKed here, nothing of the
	// failed batches.
	want := sizeBefore + int64(len(a)*recordSize(1000))
	if fi, err := os.Stat(seg); err != nil || fi.Size() != want {
		t.Fatalf("segment after the failed writes: %v, size %d, want it cut back to %d (%d records ACKed before the failure)", err, fi.Size(), want, len(a))
	}
	herr := sink.Health()
	if herr == nil || !errors.Is(herr, syscall.ENOSPC) {
		t.Fatalf("Health with a full disk = %v, want ENOSPC", herr)
	}
	if st := srv.Stats(); st.Nacks[NackStorageUnavailable] != uint64(len(nacked)) || st.Nacks[NackOverloaded] != 0 {
		t.Errorf("NACK counts %v, want %d of code 6 and none of code 3", st.Nacks, len(nacked))
	}
	// Still full: more records are refused, none stored.
	a, n = sendAndResolve(t, tc, 10, 1000, NackStorageUnavailable)
	acked, nacked = append(acked, a...), append(nacked, n...)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	a, n = sendAndResolve(t, tc, 1, 10, NackStorageUnavailable)
	took := time.Since(freed)
	for len(n) > 0 && time.Since(freed) < time.Second {
		// A retry that was already under way when space came back.
		nacked = append(nacked, n...)
		a, n = sendAndResolve(t, tc, 1, 10, NackStorageUnavailable)
		took = time.Since(freed)
	}
	acked, nacked = append(acked, a...), append(nacked, n...)
	if len(n) > 0 || took > time.Second {
		t.Fatalf("storing did not resume within 1 s of freeing space (took %v): %v", took, sink.Health())
	}
	if err := sink.Health(); err != nil {
		t.Fatalf("Health after storing resumed = %v", err)
	}
	a, n = sendAndResolve(t, tc, 100, 1000, NackStorageUnavailable)
	if len(n) > 0 {
		t.Fatalf("NACKs %v after the disk was freed", n)
	}
	acked = append(acked, a...)
	t.Logf("%d records ACKed, %d NACKed; storing resumed %v after space was freed", len(acked), len(nacked), took)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := sink.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	checkLog(t, dir, acked, nacked)
}

// checkLog reads the log back and checks that it holds every acked seq
// exactly once and no nacked seq.
func checkLog(t *testing.T, dir string, acked, nacked []uint64) {
	t.Helper()
	count := map[uint64]int{}
	for _, r := range readAll(t, dir) {
		count[r.Seq]++
	}
	for _, s := range acked {
		if count[s] != 1 {
			t.Errorf("ACKed seq %d stored %d times", s, count[s])
		}
	}
	for _, s := range nacked {
		if count[s] != 0 {
			t.Errorf("NACKed seq %d stored %d times", s, count[s])
		}
	}
	if len(count) != len(acked) {
		t.Errorf("%d distinct records in the log, want the %d ACKed", len(count), len(acked))
	}
}

// TestFileSinkDescriptorsExhaustedDuringRotation runs out of descriptors
// while a Write needs a new segment: with none at all (the segment cannot
// be created) and with one (the segment is created, but the directory
// cannot be opened to make it durable). The Write fails and stores
// nothing, no empty segment is left, Health names EMFILE, and once the
// descriptors are given back the sink stores again by itself; a reopen
// works. It runs in a child process with a low RLIMIT_NOFILE, which it
// fills with open files: the test process is never short of descriptors.
func TestFileSinkDescriptorsExhaustedDuringRotation(t *testing.T) {
	if !testenv.RunWithNOFILE(t, 128) {
		return // ran in a child process
	}
	for _, spare := range []int{0, 1} {
		t.Run(fmt.Sprintf("spare=%d", spare), func(t *testing.T) {
			dir := t.TempDir()
			sink, err := OpenFileSink(FileSinkConfig{Dir: dir, SegmentBytes: 4096, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			stored := writeRecords(t, sink, 1, 3)
			segsBefore := segmentFiles(t, dir)

			big := Record{Conn: 1, Seq: 100, Payload: bytes.Repeat([]byte("x"), 5000)}
			release := testenv.ExhaustDescriptors(t, spare)
			werr := sink.Write([]Record{big})
			herr := sink.Health()
			release()
			if !errors.Is(werr, syscall.EMFILE) {
				t.Fatalf("Write needing a new segment without descriptors = %v, want EMFILE", werr)
			}
			if !errors.Is(herr, syscall.EMFILE) || !strings.Contains(herr.Error(), "too many open files") {
				t.Fatalf("Health = %v, want the EMFILE", herr)
			}
			if got := segmentFiles(t, dir); !equalStrings(got, segsBefore) {
				t.Fatalf("segments after the failed rotation %v, want %v (no empty one)", got, segsBefore)
			}
			took := waitHealthy(t, sink, time.Second)
			t.Logf("healthy again %v after the descriptors were given back", took)

			stored = append(stored, writeRecords(t, sink, 200, 3)...)
			big.Seq = 300
			if err := sink.Write([]Record{big}); err != nil {
				t.Fatalf("rotation after descriptors came back: %v", err)
			}
			stored = append(stored, big)
			if err := sink.Close(); err != nil {
				t.Fatalf("Close = %v", err)
			}
			sameRecords(t, readAll(t, dir), stored)
			for _, name := range segmentFiles(t, dir) {
				if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() <= segHeaderSize {
					t.Errorf("segment %s: %v, size %d: empty", name, err, fi.Size())
				}
			}
			reopened, err := OpenFileSink(FileSinkConfig{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatalf("reopening: %v", err)
			}
			if err := reopened.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestOpenFileSinkRemovesHeaderlessSegment: a segment shorter than its
// header after earlier ones (a rotation cut short by a crash or a full
// disk) is removed at open instead of given a header, so a restart on a
// still-full disk works.
func TestOpenFileSinkRemovesHeaderlessSegment(t *testing.T) {
	dir := testenv.MountTmpfs(t, 64<<10)
	s, err := OpenFileSink(FileSinkConfig{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	stored := writeRecords(t, s, 1, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, segmentName(2)), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.FillDisk(t, dir)
	s, err = OpenFileSink(FileSinkConfig{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("open on a full disk with a 0-byte last segment: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := segmentFiles(t, dir); !equalStrings(got, []string{segmentName(1)}) {
		t.Fatalf("segments %v, want only the first", got)
	}
	sameRecords(t, readAll(t, dir), stored)
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range names {
		names[i] = filepath.Base(names[i])
	}
	return names
}

func equalStrings(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}
