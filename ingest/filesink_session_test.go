package ingest

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gyre-io/gyre/internal/syncbuf"
)

// sid returns a session id that names n.
func sid(n byte) SessionID {
	var id SessionID
	for i := range id {
		id[i] = n ^ byte(i*17)
	}
	id[0] = n
	return id
}

// sameSessionRecords is sameRecords that also compares sessions.
func sameSessionRecords(t testing.TB, got, want []Record) {
	t.Helper()
	sameRecords(t, got, want)
	for i := range want {
		if got[i].Session != want[i].Session {
			t.Fatalf("record %d (seq %d): session %s, want %s", i, want[i].Seq, got[i].Session, want[i].Session)
		}
	}
}

// writeV1Segment writes a version 1 segment, as a sink before sessions
// left it, holding recs stamped with ts.
func writeV1Segment(t testing.TB, dir string, index uint64, recs []Record, ts int64) {
	t.Helper()
	b := appendSegmentHeaderV1(nil)
	for i := range recs {
		b = appendRecordV1(b, &recs[i], ts)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, segmentName(index)), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// segmentVersion returns the format version in a segment file's header.
func segmentVersion(t testing.TB, path string) uint32 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, reason := checkSegmentHeader(data)
	if reason != "" {
		t.Fatalf("%s: %s", path, reason)
	}
	return v
}

// sessionsByID indexes RecoveredSessions and checks that no id is there
// twice and none is zero.
func sessionsByID(t testing.TB, rs []RecoveredSession) map[SessionID]RecoveredSession {
	t.Helper()
	m := make(map[SessionID]RecoveredSession)
	for _, r := range rs {
		if r.ID.IsZero() {
			t.Errorf("RecoveredSessions holds the zero session: %+v", r)
		}
		if _, dup := m[r.ID]; dup {
			t.Errorf("RecoveredSessions holds %s twice", r.ID)
		}
		m[r.ID] = r
	}
	return m
}

// checkSessions compares RecoveredSessions with the highest seq wanted
// per session; Last is checked when want's Last is set.
func checkSessions(t testing.TB, s *FileSink, want map[SessionID]RecoveredSession) {
	t.Helper()
	got := sessionsByID(t, s.RecoveredSessions())
	if len(got) != len(want) {
		t.Errorf("recovered %d sessions, want %d: %+v", len(got), len(want), s.RecoveredSessions())
	}
	for id, w := range want {
		g, ok := got[id]
		if !ok {
			t.Errorf("session %s not recovered", id)
			continue
		}
		if g.Seq != w.Seq {
			t.Errorf("session %s: seq %d, want %d", id, g.Seq, w.Seq)
		}
		if !w.Last.IsZero() && !g.Last.Equal(w.Last) {
			t.Errorf("session %s: last %v, want %v", id, g.Last, w.Last)
		}
	}
}

// TestFileSinkSessionRoundTrip: records with and without a session, across
// rotations, read back with their sessions from version 2 segments.
func TestFileSinkSessionRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := openTestSink(t, FileSinkConfig{Dir: dir, SegmentBytes: 2048})
	var want []Record
	for i := range 60 {
		batch := []Record{
			{Conn: 1, Seq: uint64(i + 1), Session: sid(1), Payload: payloadFor(1, uint64(i))},
			{Conn: 2, Seq: uint64(1000 + i), Payload: payloadFor(2, uint64(i))},
			{Conn: 3, Seq: uint64(i + 1), Session: sid(byte(2 + i%3)), Payload: nil},
		}
		if err := s.Write(batch); err != nil {
			t.Fatal(err)
		}
		for _, r := range batch {
			r.Payload = bytes.Clone(r.Payload)
			want = append(want, r)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := listSegments(dir)
	if len(segs) < 3 {
		t.Fatalf("%d segments, want rotations", len(segs))
	}
	for _, seg := range segs {
		if v := segmentVersion(t, seg.path); v != 2 {
			t.Errorf("%s: version %d, want 2", seg.path, v)
		}
	}
	got := readAll(t, dir)
	for i := range got {
		if got[i].Payload == nil {
			got[i].Payload = []byte{}
		}
	}
	for i := range want {
		if want[i].Payload == nil {
			want[i].Payload = []byte{}
		}
	}
	sameSessionRecords(t, got, want)
}

// TestFileSinkOnVersion1Log: a log written by a sink before sessions (two
// version 1 segments, the last with a torn tail) is opened: recovery cuts
// the tail with version 1 record headers, the version 1 segments are kept
// byte for byte, the new records go into a new version 2 segment, and
// ReadLog reads them all, version 1 records with a zero session.
func TestFileSinkOnVersion1Log(t *testing.T) {
	dir := t.TempDir()
	const ts1 = 1700000000000000000
	var want []Record
	for index := uint64(1); index <= 2; index++ {
		var recs []Record
		for i := range 5 {
			seq := uint64(index*10) + uint64(i)
			recs = append(recs, Record{Conn: index, Seq: seq, Payload: payloadFor(int(index), seq)})
		}
		writeV1Segment(t, dir, index, recs, ts1)
		want = append(want, recs...)
	}
	seg1, seg2 := filepath.Join(dir, segmentName(1)), filepath.Join(dir, segmentName(2))
	v1Bytes, err := os.ReadFile(seg2)
	if err != nil {
		t.Fatal(err)
	}
	// A torn tail of version 1: most of a record.
	torn := appendRecordV1(nil, &Record{Conn: 9, Seq: 99, Payload: []byte("torn")}, ts1)
	appendBytes(t, seg2, torn[:len(torn)-2])

	// Before any sink opens it, ReadLog reads version 1 alone.
	sameSessionRecords(t, readAll(t, dir), want)

	// Opening and closing without a write changes nothing but the tail.
	logs := &syncbuf.Buffer{}
	s := openTestSink(t, FileSinkConfig{Dir: dir, Logger: testLogger(logs)})
	if !strings.Contains(logs.String(), "recovered torn tail") || !strings.Contains(logs.String(), "kept_records=5") {
		t.Errorf("recovery log: %s", logs.String())
	}
	if rs := s.RecoveredSessions(); len(rs) != 0 {
		t.Errorf("RecoveredSessions of a version 1 log = %+v, want none", rs)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if segs, _ := listSegments(dir); len(segs) != 2 {
		t.Fatalf("%d segments after an open without writes, want the 2 version 1 ones", len(segs))
	}

	s = openTestSink(t, FileSinkConfig{Dir: dir})
	var more []Record
	for seq := uint64(1); seq <= 4; seq++ {
		r := Record{Conn: 5, Seq: seq, Session: sid(7), Payload: payloadFor(5, seq)}
		if seq == 4 {
			r.Session = SessionID{}
		}
		if err := s.Write([]Record{r}); err != nil {
			t.Fatal(err)
		}
		more = append(more, r)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 3 || segs[2].index != 3 {
		t.Fatalf("segments %+v, want the 2 version 1 ones and a new one", segs)
	}
	if v := segmentVersion(t, seg1); v != 1 {
		t.Errorf("segment 1 is now version %d", v)
	}
	if got, err := os.ReadFile(seg2); err != nil || !bytes.Equal(got, v1Bytes) {
		t.Errorf("the version 1 last segment changed beyond its torn tail (%v)", err)
	}
	if v := segmentVersion(t, segs[2].path); v != 2 {
		t.Errorf("new segment is version %d, want 2", v)
	}
	want = append(want, more...)
	sameSessionRecords(t, readAll(t, dir), want)

	// Reopened on the version 2 segment, the sink appends to it, and the
	// session comes back.
	s = openTestSink(t, FileSinkConfig{Dir: dir})
	checkSessions(t, s, map[SessionID]RecoveredSession{sid(7): {Seq: 3}})
	want = append(want, writeRecords(t, s, 100, 2)...)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if segs, _ := listSegments(dir); len(segs) != 3 {
		t.Errorf("%d segments, want 3: the sink did not append to its version 2 segment", len(segs))
	}
	sameSessionRecords(t, readAll(t, dir), want)
}

// TestFileSinkVersion1RotationFails: when moving off a version 1 last
// segment fails (its fsync, the new segment's header, or the records in
// it), the Write fails, the version 1 segment is unchanged, no new segment
// is left, and the sink stores again on its own, in a new segment.
func TestFileSinkVersion1RotationFails(t *testing.T) {
	cases := []struct {
		name string
		file uint64 // the segment whose fsync fails
		call int    // which fsync of that file fails
	}{
		{"fsync of the version 1 segment", 1, 1},
		{"header of the new segment", 2, 1},
		{"records in the new segment", 2, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeV1Segment(t, dir, 1, []Record{{Conn: 1, Seq: 1, Payload: []byte("old")}}, 1)
			seg1, seg2 := filepath.Join(dir, segmentName(1)), filepath.Join(dir, segmentName(2))
			before, err := os.ReadFile(seg1)
			if err != nil {
				t.Fatal(err)
			}
			calls := 0 // of the target file; only the syncer (and open) call fsync
			s, err := openFileSink(FileSinkConfig{Dir: dir, Logger: slog.New(slog.DiscardHandler)}, func(f *os.File) error {
				if f.Name() == filepath.Join(dir, segmentName(tc.file)) {
					if calls++; calls == tc.call {
						return errors.New("injected fsync failure")
					}
				}
				return f.Sync()
			})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Write([]Record{{Conn: 2, Seq: 1, Session: sid(1), Payload: []byte("lost")}}); err == nil {
				t.Fatal("Write succeeded with a failing fsync")
			}
			// The failed Write returned after the log was cut back.
			if after, _ := os.ReadFile(seg1); !bytes.Equal(after, before) {
				t.Error("the version 1 segment changed")
			}
			if _, err := os.Stat(seg2); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("segment 2 left behind by the failed Write (%v)", err)
			}
			// The sink heals on its own: a Write waits for the retry.
			for i := 0; s.Write([]Record{{Conn: 2, Seq: 2, Session: sid(1), Payload: []byte("new")}}) != nil; i++ {
				if i == 100 {
					t.Fatal("the sink did not store again")
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if after, _ := os.ReadFile(seg1); !bytes.Equal(after, before) {
				t.Error("the version 1 segment changed")
			}
			got := readAll(t, dir)
			if len(got) != 2 || string(got[0].Payload) != "old" || string(got[1].Payload) != "new" || got[1].Session != sid(1) {
				t.Fatalf("log holds %+v, want old and new", got)
			}
			if segs, _ := listSegments(dir); len(segs) != 2 || segmentVersion(t, segs[1].path) != 2 {
				t.Fatalf("segments %+v, want the version 1 one and a version 2 one", segs)
			}
		})
	}
}

// sessionLog writes, through a sink with small segments, records of
// sessions 1 to 4 and of no session (with higher seqs than any session's),
// after two version 1 segments. It returns what RecoveredSessions must say,
// with Last taken from ReadLog.
func sessionLog(t *testing.T, dir string) map[SessionID]RecoveredSession {
	t.Helper()
	writeV1Segment(t, dir, 1, []Record{{Conn: 1, Seq: 1 << 40, Payload: []byte("v1")}}, 1)
	writeV1Segment(t, dir, 2, []Record{{Conn: 1, Seq: 1<<40 + 1, Payload: []byte("v1")}}, 2)
	s := openTestSink(t, FileSinkConfig{Dir: dir, SegmentBytes: 1024})
	seqs := map[SessionID]uint64{}
	for i := range 200 {
		var batch []Record
		for k := range 1 + i%3 {
			id := sid(byte(1 + (i+k)%4))
			seqs[id]++
			batch = append(batch, Record{Conn: uint64(k), Seq: seqs[id], Session: id, Payload: payloadFor(k, seqs[id])})
		}
		batch = append(batch, Record{Conn: 9, Seq: 1<<50 + uint64(i), Payload: []byte("no session")})
		if i == 150 {
			// A session whose highest seq comes early: later records of
			// it have lower ones (a producer that restarted its count).
			batch = append(batch, Record{Conn: 8, Seq: 500, Session: sid(5), Payload: []byte("high")})
		}
		if i > 150 && i%10 == 0 {
			batch = append(batch, Record{Conn: 8, Seq: uint64(i), Session: sid(5), Payload: []byte("low")})
		}
		if err := s.Write(batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[SessionID]RecoveredSession{}
	err := ReadLog(dir, func(r Record, ts time.Time) error {
		if r.Session.IsZero() {
			return nil
		}
		w := want[r.Session]
		w.ID, w.Seq = r.Session, max(w.Seq, r.Seq)
		if ts.After(w.Last) {
			w.Last = ts
		}
		want[r.Session] = w
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 5 || want[sid(5)].Seq != 500 {
		t.Fatalf("the log holds sessions %+v", want)
	}
	segs, _ := listSegments(dir)
	if len(segs) < 8 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	return want
}

// TestFileSinkRecoveredSessions: after reopening, every session's highest
// seq and newest record's time over all segments; records without a
// session and version 1 records do not count.
func TestFileSinkRecoveredSessions(t *testing.T) {
	dir := t.TempDir()
	want := sessionLog(t, dir)
	logs := &syncbuf.Buffer{}
	s := openTestSink(t, FileSinkConfig{Dir: dir, SegmentBytes: 1024, Logger: testLogger(logs)})
	checkSessions(t, s, want)
	if strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "rebuilt producer sessions") {
		t.Errorf("open log: %s", logs.String())
	}
	// Each call returns a slice of its own (the dispatcher sorts it).
	a := s.RecoveredSessions()
	slices.Reverse(a)
	a[0].Seq = 0
	checkSessions(t, s, want)
	// Last is the time the sink stored the newest record: now-ish.
	for _, r := range a {
		if time.Since(r.Last) > time.Hour || r.Last.After(time.Now()) {
			t.Errorf("session %s: last %v", r.ID, r.Last)
		}
	}

	// What the reopened sink writes counts at the next open.
	if err := s.Write([]Record{{Conn: 1, Seq: 7000, Session: sid(2), Payload: []byte("later")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	w := want[sid(2)]
	w.Seq, w.Last = 7000, time.Time{}
	want[sid(2)] = w
	checkSessions(t, openTestSink(t, FileSinkConfig{Dir: dir}), want)

	// A fresh log knows no sessions.
	if rs := openTestSink(t, FileSinkConfig{Dir: t.TempDir()}).RecoveredSessions(); rs != nil {
		t.Errorf("RecoveredSessions of a new log = %+v", rs)
	}
}

// writeSessionBatches writes one-record batches of session id with seqs
// first..last and returns the records.
func writeSessionBatches(t *testing.T, s *FileSink, id SessionID, first, last uint64) []Record {
	t.Helper()
	var out []Record
	for seq := first; seq <= last; seq++ {
		r := Record{Conn: 1, Seq: seq, Session: id, Payload: payloadFor(1, seq)}
		if err := s.Write([]Record{r}); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// TestFileSinkRecoveredSessionsTornTail: a record that recovery cuts off
// the last segment does not count, whether torn, broken (here in its seq,
// which would otherwise be far too high), or damage before intact records
// (saved aside, not counted either).
func TestFileSinkRecoveredSessionsTornTail(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, path string, offs []int64, size int64)
		want   uint64 // session 1's seq after recovery; 10 records written
	}{
		{"cut in the last record", func(t *testing.T, path string, offs []int64, size int64) {
			truncate(t, path, size-3)
		}, 9},
		{"seq of the last record broken", func(t *testing.T, path string, offs []int64, size int64) {
			flipByte(t, path, offs[9]+20) // the seq's high byte
		}, 9},
		{"session of the last record broken", func(t *testing.T, path string, offs []int64, size int64) {
			flipByte(t, path, offs[9]+40)
		}, 9},
		{"partial record with a high seq appended", func(t *testing.T, path string, offs []int64, size int64) {
			rec := appendRecord(nil, &Record{Conn: 1, Seq: 1 << 60, Session: sid(1), Payload: []byte("never finished")}, time.Now().UnixNano())
			appendBytes(t, path, rec[:len(rec)-1])
		}, 10},
		{"damage before intact records", func(t *testing.T, path string, offs []int64, size int64) {
			flipByte(t, path, offs[6]+recHeaderSize+1)
		}, 6},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTestSink(t, FileSinkConfig{Dir: dir})
			writeSessionBatches(t, s, sid(2), 1, 3)
			writeSessionBatches(t, s, sid(1), 1, 10)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			path, size := lastSegment(t, dir)
			offs := recordOffsets(t, path)[3:] // session 1's records
			tc.damage(t, path, offs, size)
			s = openTestSink(t, FileSinkConfig{Dir: dir})
			checkSessions(t, s, map[SessionID]RecoveredSession{sid(1): {Seq: tc.want}, sid(2): {Seq: 3}})
			// And what the log holds agrees.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			var high uint64
			for _, r := range readAll(t, dir) {
				if r.Session == sid(1) {
					high = max(high, r.Seq)
				}
			}
			if high != tc.want {
				t.Errorf("the log holds session 1 up to seq %d, recovery said %d", high, tc.want)
			}
		})
	}
}

// TestFileSinkRecoveredSessionsCorruptSegment: damage in a segment that is
// not the last does not fail the open; it is logged as an error, and the
// records from the damage to the end of that segment do not count, though
// the later segments do.
func TestFileSinkRecoveredSessionsCorruptSegment(t *testing.T) {
	build := func(t *testing.T) (dir, first string) {
		dir = t.TempDir()
		s := openTestSink(t, FileSinkConfig{Dir: dir, SegmentBytes: 1024})
		// Segment 1: session 1 seqs 1..8 (its only records) and
		// session 2 seqs 1..2; then session 2 fills later segments.
		writeSessionBatches(t, s, sid(2), 1, 2)
		writeSessionBatches(t, s, sid(1), 1, 8)
		writeSessionBatches(t, s, sid(2), 3, 40)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		first = filepath.Join(dir, segmentName(1))
		n := 0
		if err := readSegment(first, false, func(r Record, _ time.Time) error {
			if r.Session == sid(1) {
				n++
			}
			return nil
		}); err != nil || n != 8 {
			t.Fatalf("segment 1 holds %d records of session 1 (%v), want all 8", n, err)
		}
		if segs, _ := listSegments(dir); len(segs) < 3 {
			t.Fatalf("%d segments, want at least 3", len(segs))
		}
		return dir, first
	}
	cases := []struct {
		name   string
		damage func(t *testing.T, path string, offs []int64)
		want   map[SessionID]RecoveredSession
	}{
		// Record 5 of session 1 (seq 5) gets a seq far too high: its CRC
		// no longer matches, so neither it nor those after it count.
		{"seq broken", func(t *testing.T, path string, offs []int64) { flipByte(t, path, offs[6]+20) },
			map[SessionID]RecoveredSession{sid(1): {Seq: 4}, sid(2): {Seq: 40}}},
		{"session broken", func(t *testing.T, path string, offs []int64) { flipByte(t, path, offs[6]+37) },
			map[SessionID]RecoveredSession{sid(1): {Seq: 4}, sid(2): {Seq: 40}}},
		{"payload broken", func(t *testing.T, path string, offs []int64) { flipByte(t, path, offs[3]+recHeaderSize) },
			map[SessionID]RecoveredSession{sid(1): {Seq: 1}, sid(2): {Seq: 40}}},
		{"length broken", func(t *testing.T, path string, offs []int64) { flipByte(t, path, offs[2]+8) },
			map[SessionID]RecoveredSession{sid(2): {Seq: 40}}},
		{"cut short", func(t *testing.T, path string, offs []int64) { truncate(t, path, offs[8]+30) },
			map[SessionID]RecoveredSession{sid(1): {Seq: 6}, sid(2): {Seq: 40}}},
		{"segment header broken", func(t *testing.T, path string, offs []int64) { flipByte(t, path, 9) },
			map[SessionID]RecoveredSession{sid(2): {Seq: 40}}},
		{"segment header cut", func(t *testing.T, path string, offs []int64) { truncate(t, path, 10) },
			map[SessionID]RecoveredSession{sid(2): {Seq: 40}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, first := build(t)
			tc.damage(t, first, recordOffsets(t, first))
			logs := &syncbuf.Buffer{}
			s := openTestSink(t, FileSinkConfig{Dir: dir, SegmentBytes: 1024, Logger: testLogger(logs)})
			checkSessions(t, s, tc.want)
			if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), first) {
				t.Errorf("open did not log an error naming %s: %s", first, logs.String())
			}
			// The sink still stores.
			if err := s.Write([]Record{{Conn: 1, Seq: 41, Session: sid(2), Payload: []byte("after")}}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
