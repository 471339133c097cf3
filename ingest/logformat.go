package ingest

// The on-disk log format, shared by FileSink (writing and recovery) and
// ReadLog. docs/protocol.md, section "On-disk log format", is the
// specification; keep the two in step.
//
// A log is a directory of segment files named by a 20-digit decimal index
// and ".seg" (00000000000000000001.seg, ...), read in index order. Each
// segment starts with a 16-byte header and is followed by records:
//
//	segment header (16 bytes)
//	  0  8  magic "GYREILOG"
//	  8  4  format version, 2 (1 in segments written before sessions)
//	 12  4  reserved, 0
//	record, version 2 (52-byte header + payload)
//	  0  4  magic "GREC"
//	  4  4  CRC-32C (Castagnoli) of bytes 8..52 of this header and the payload
//	  8  4  payload length
//	 12  8  connection id
//	 20  8  seq (the session's, when the session id is not zero)
//	 28  8  timestamp, Unix nanoseconds, when the sink accepted the batch
//	 36 16  session id, zero without a session
//	 52  n  payload
//
// A version 1 record is the same without the session id: a 36-byte header,
// the CRC over bytes 8..36 and the payload. Every segment holds records of
// its own version only; the sink writes version 2 and never appends to a
// version 1 segment, and readers read both.
//
// Integers are big-endian, as on the wire. The CRC covers the length, so a
// flipped length bit is caught instead of sending the reader off to a wrong
// offset.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	segMagic      = "GYREILOG"
	segVersion    = 2 // the version the sink writes
	segVersionV1  = 1 // still read
	segHeaderSize = 16
	segExt        = ".seg"
	segDigits     = 20

	recMagic = "GREC"
	// recHeaderSize is the record header size of segVersion,
	// recHeaderSizeV1 that of version 1.
	recHeaderSize   = 52
	recHeaderSizeV1 = 36

	// maxRecordPayload is the largest payload the 4-byte length holds.
	maxRecordPayload = 1<<32 - 1
)

// castagnoli is the CRC-32C table. It is computed once and only read.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is matched by every *CorruptError.
var ErrCorrupt = errors.New("ingest: corrupt log")

// CorruptError reports damage in a log that is not a torn tail: a bad
// segment header, or a bad record in any segment but the last, or a bad
// record in the last segment that intact records follow.
type CorruptError struct {
	Segment string // path of the segment file
	Offset  int64  // byte offset of the bad header or record in the segment
	Reason  string
}

func (e *CorruptError) Error() string {
	return "ingest: corrupt log segment " + e.Segment + " at offset " + strconv.FormatInt(e.Offset, 10) + ": " + e.Reason
}

// Unwrap returns ErrCorrupt, so errors.Is(err, ErrCorrupt) holds.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// appendSegmentHeader appends the 16-byte segment header.
func appendSegmentHeader(dst []byte) []byte {
	dst = append(dst, segMagic...)
	dst = binary.BigEndian.AppendUint32(dst, segVersion)
	return binary.BigEndian.AppendUint32(dst, 0)
}

// checkSegmentHeader returns the version of the segment header h, or why
// it is not a valid one.
func checkSegmentHeader(h []byte) (version uint32, reason string) {
	if len(h) < segHeaderSize {
		return 0, "segment header is truncated"
	}
	if string(h[:8]) != segMagic {
		return 0, fmt.Sprintf("bad segment magic %q", h[:8])
	}
	v := binary.BigEndian.Uint32(h[8:12])
	if v != segVersion && v != segVersionV1 {
		return 0, fmt.Sprintf("unsupported segment version %d", v)
	}
	return v, ""
}

// recHeaderLen returns the record header size of a segment version that
// checkSegmentHeader accepted.
func recHeaderLen(version uint32) int {
	if version == segVersionV1 {
		return recHeaderSizeV1
	}
	return recHeaderSize
}

// recordSize returns the encoded size of a record with an n-byte payload.
func recordSize(n int) int { return recHeaderSize + n }

// appendRecord appends the encoding of r, stamped with ts, to dst, in the
// current version. The caller has checked that the payload fits
// maxRecordPayload.
func appendRecord(dst []byte, r *Record, ts int64) []byte {
	start := len(dst)
	dst = append(dst, recMagic...)
	dst = append(dst, 0, 0, 0, 0) // CRC, filled in below
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.Payload)))
	dst = binary.BigEndian.AppendUint64(dst, r.Conn)
	dst = binary.BigEndian.AppendUint64(dst, r.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts))
	dst = append(dst, r.Session[:]...)
	dst = append(dst, r.Payload...)
	crc := crc32.Checksum(dst[start+8:], castagnoli)
	binary.BigEndian.PutUint32(dst[start+4:], crc)
	return dst
}

// recordHeader is a decoded record header.
type recordHeader struct {
	crc     uint32
	len     uint32
	conn    uint64
	seq     uint64
	ts      int64
	session SessionID // zero in version 1
}

// parseRecordHeader decodes the record header at the start of h, which
// holds at least hs = recHeaderLen(version) bytes.
func parseRecordHeader(h []byte, hs int) (recordHeader, bool) {
	if string(h[:4]) != recMagic {
		return recordHeader{}, false
	}
	rh := recordHeader{
		crc:  binary.BigEndian.Uint32(h[4:8]),
		len:  binary.BigEndian.Uint32(h[8:12]),
		conn: binary.BigEndian.Uint64(h[12:20]),
		seq:  binary.BigEndian.Uint64(h[20:28]),
		ts:   int64(binary.BigEndian.Uint64(h[28:36])),
	}
	if hs == recHeaderSize {
		rh.session = SessionID(h[36:52])
	}
	return rh, true
}

// recordCRC computes the checksum of a record from its hs header bytes and
// payload.
func recordCRC(h []byte, hs int, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(h[8:hs], castagnoli), castagnoli, payload)
}

// segmentInfo is one segment file of a log directory.
type segmentInfo struct {
	index uint64
	path  string
	size  int64
	// version is the segment's format version where the sink knows it
	// (the active segment), else 0.
	version uint32
}

// segmentName returns the file name of the segment with the given index.
func segmentName(index uint64) string {
	s := strconv.FormatUint(index, 10)
	return strings.Repeat("0", max(0, segDigits-len(s))) + s + segExt
}

// parseSegmentName returns the index of a segment file name, and false for
// every other name (the lock file, files saved by recovery, strays).
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segExt)
	if !ok || len(digits) != segDigits {
		return 0, false
	}
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	i, err := strconv.ParseUint(digits, 10, 64)
	return i, err == nil
}

// listSegments returns the segments of dir, oldest first.
func listSegments(dir string) ([]segmentInfo, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ingest: list log segments: %w", err)
	}
	var segs []segmentInfo
	for _, e := range entries {
		index, ok := parseSegmentName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue // removed by retention since ReadDir
		}
		if err != nil {
			return nil, fmt.Errorf("ingest: list log segments: %w", err)
		}
		segs = append(segs, segmentInfo{index: index, path: filepath.Join(dir, e.Name()), size: info.Size()})
	}
	slices.SortFunc(segs, func(a, b segmentInfo) int {
		switch {
		case a.index < b.index:
			return -1
		case a.index > b.index:
			return 1
		}
		return 0
	})
	return segs, nil
}

// recordScanner reads the records of one segment in order, after its
// header, verifying each. It reuses one payload buffer.
type recordScanner struct {
	r       *bufio.Reader
	off     int64 // offset of the next record
	size    int64 // size of the segment file
	hs      int   // record header size of the segment's version
	hdr     [recHeaderSize]byte
	payload []byte
}

// badRecord says why the record at a given offset could not be read. It
// stays inside this file: callers turn it into a torn tail or a
// *CorruptError depending on where it is and what follows.
type badRecord struct {
	off    int64
	reason string
}

func (e *badRecord) Error() string { return e.reason }

// newRecordScanner reads the records of f, a segment of the given version
// and size whose header has been read.
func newRecordScanner(f *os.File, size int64, version uint32) *recordScanner {
	return &recordScanner{r: bufio.NewReaderSize(f, 256<<10), off: segHeaderSize, size: size, hs: recHeaderLen(version)}
}

// header reads the next record header into s.hdr and checks it. It
// returns io.EOF when the file ends exactly at the record.
func (s *recordScanner) header() (recordHeader, error) {
	if err := s.headerFits(); err != nil {
		return recordHeader{}, err
	}
	hdr := s.hdr[:s.hs]
	if _, err := io.ReadFull(s.r, hdr); err != nil {
		return recordHeader{}, fmt.Errorf("ingest: read log record header at offset %d: %w", s.off, err)
	}
	return s.checkHeader(hdr)
}

// headerFits returns io.EOF if the file ends at the next record, and a
// *badRecord if a record header does not fit before the end.
func (s *recordScanner) headerFits() error {
	if s.off == s.size {
		return io.EOF
	}
	if s.size-s.off < int64(s.hs) {
		return &badRecord{s.off, "record header cut short by the end of the file"}
	}
	return nil
}

// checkHeader parses the header hdr of the next record and checks that
// its payload fits in the file.
func (s *recordScanner) checkHeader(hdr []byte) (recordHeader, error) {
	h, ok := parseRecordHeader(hdr, s.hs)
	if !ok {
		return recordHeader{}, &badRecord{s.off, fmt.Sprintf("bad record magic %q", hdr[:4])}
	}
	if int64(h.len) > s.size-s.off-int64(s.hs) {
		return recordHeader{}, &badRecord{s.off, fmt.Sprintf("record length %d runs past the end of the file", h.len)}
	}
	return h, nil
}

// next returns the next record and its timestamp, io.EOF after the last
// complete record when the file ends exactly there, or a *badRecord.
// The payload is valid until the next call.
func (s *recordScanner) next() (Record, int64, error) {
	h, err := s.header()
	if err != nil {
		return Record{}, 0, err
	}
	if cap(s.payload) < int(h.len) {
		s.payload = make([]byte, h.len)
	}
	p := s.payload[:h.len]
	if _, err := io.ReadFull(s.r, p); err != nil {
		return Record{}, 0, fmt.Errorf("ingest: read log record at offset %d: %w", s.off, err)
	}
	if got := recordCRC(s.hdr[:], s.hs, p); got != h.crc {
		return Record{}, 0, &badRecord{s.off, fmt.Sprintf("record CRC %08x, header says %08x", got, h.crc)}
	}
	s.off += int64(s.hs) + int64(h.len)
	return Record{Conn: h.conn, Seq: h.seq, Session: h.session, Payload: p}, h.ts, nil
}

// nextHeader is next for a caller that needs no payload: it checks the
// record's CRC on the reader's buffer instead of copying the record out,
// in one piece when the record fits in the buffer.
func (s *recordScanner) nextHeader() (recordHeader, error) {
	if err := s.headerFits(); err != nil {
		return recordHeader{}, err
	}
	hdr, err := s.r.Peek(s.hs)
	if err != nil {
		return recordHeader{}, fmt.Errorf("ingest: read log record header at offset %d: %w", s.off, err)
	}
	h, err := s.checkHeader(hdr)
	if err != nil {
		return h, err
	}
	var crc uint32
	if n := s.hs + int(h.len); n <= s.r.Size() {
		rec, err := s.r.Peek(n)
		if err != nil {
			return h, fmt.Errorf("ingest: read log record at offset %d: %w", s.off, err)
		}
		crc = crc32.Checksum(rec[8:], castagnoli)
		_, _ = s.r.Discard(n) // cannot fail: the bytes are buffered
	} else {
		crc = crc32.Checksum(hdr[8:], castagnoli)
		_, _ = s.r.Discard(s.hs)
		for n := int(h.len); n > 0; {
			b, err := s.r.Peek(min(n, s.r.Size()))
			if err != nil {
				return h, fmt.Errorf("ingest: read log record at offset %d: %w", s.off, err)
			}
			crc = crc32.Update(crc, castagnoli, b)
			_, _ = s.r.Discard(len(b))
			n -= len(b)
		}
	}
	if crc != h.crc {
		return h, &badRecord{s.off, fmt.Sprintf("record CRC %08x, header says %08x", crc, h.crc)}
	}
	s.off += int64(s.hs) + int64(h.len)
	return h, nil
}

// findIntactRecord looks for a complete record with a valid CRC, hs bytes
// of header, that starts at any offset in [from, size) of f, and returns
// its offset. It tells a torn tail (nothing intact after the first bad
// byte) from damage in the middle of a segment. It reads the whole range
// into memory, which only happens on the error path and is bounded by the
// segment size.
func findIntactRecord(f *os.File, from, size int64, hs int) (int64, bool, error) {
	if from >= size {
		return 0, false, nil
	}
	buf := make([]byte, size-from)
	if _, err := f.ReadAt(buf, from); err != nil && !errors.Is(err, io.EOF) {
		return 0, false, fmt.Errorf("ingest: scan log segment %s: %w", f.Name(), err)
	}
	for i := 0; ; {
		j := bytes.Index(buf[i:], []byte(recMagic))
		if j < 0 {
			return 0, false, nil
		}
		i += j
		if rest := buf[i:]; len(rest) >= hs {
			h, _ := parseRecordHeader(rest, hs)
			if int64(h.len) <= int64(len(rest)-hs) &&
				recordCRC(rest, hs, rest[hs:hs+int(h.len)]) == h.crc {
				return from + int64(i), true, nil
			}
		}
		i++
	}
}

// ReadLog calls fn for every record in the log directory dir, oldest
// first, with the time the sink accepted it. The record's payload is valid
// only during the call. If fn returns an error, ReadLog stops and returns
// that error unchanged.
//
// Segments of format versions 1 and 2 are read; the records of version 1
// segments have a zero Session. Any other version is a *CorruptError.
//
// Every record's CRC is checked. A torn tail of the last segment (a
// partial or damaged record after which nothing intact follows, as a crash
// or a concurrent writer leaves) ends the walk without an error; any other
// damage ends it with a *CorruptError (errors.Is(err, ErrCorrupt)). After a
// crash, reopening the log with OpenFileSink repairs a torn tail for good.
//
// ReadLog may run while a FileSink appends to dir; it sees at least the
// records whose Write had returned when it reached their segment, and
// skips segments that retention deletes before it opens them.
func ReadLog(dir string, fn func(Record, time.Time) error) error {
	segs, err := listSegments(dir)
	if err != nil {
		return err
	}
	for i, seg := range segs {
		if err := readSegment(seg.path, i == len(segs)-1, fn); err != nil {
			return err
		}
	}
	return nil
}

// readSegment calls fn for each record of one segment. last says whether
// the segment is the newest, the only one that may end in a torn tail.
func readSegment(path string, last bool, fn func(Record, time.Time) error) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // deleted by retention after the directory was listed
	}
	if err != nil {
		return fmt.Errorf("ingest: read log: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("ingest: read log: %w", err)
	}
	size := info.Size()
	var hdr [segHeaderSize]byte
	if size < segHeaderSize {
		if last {
			return nil // created, header not yet (or never) written
		}
		return &CorruptError{Segment: path, Offset: 0, Reason: "segment header is truncated"}
	}
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return fmt.Errorf("ingest: read log: %w", err)
	}
	version, reason := checkSegmentHeader(hdr[:])
	if reason != "" {
		return &CorruptError{Segment: path, Offset: 0, Reason: reason}
	}
	sc := newRecordScanner(f, size, version)
	for {
		rec, ts, err := sc.next()
		if err == io.EOF {
			return nil
		}
		var bad *badRecord
		if errors.As(err, &bad) {
			return tailOrCorrupt(f, path, size, sc.hs, last, bad)
		}
		if err != nil {
			return err
		}
		if err := fn(rec, time.Unix(0, ts)); err != nil {
			return err
		}
	}
}

// tailOrCorrupt decides whether a bad record ends the log harmlessly (a
// torn tail: last segment, nothing intact after it) or is corruption.
func tailOrCorrupt(f *os.File, path string, size int64, hs int, last bool, bad *badRecord) error {
	if !last {
		return &CorruptError{Segment: path, Offset: bad.off, Reason: bad.reason}
	}
	at, found, err := findIntactRecord(f, bad.off+1, size, hs)
	if err != nil {
		return err
	}
	if found {
		return &CorruptError{Segment: path, Offset: bad.off,
			Reason: fmt.Sprintf("%s; an intact record follows at offset %d", bad.reason, at)}
	}
	return nil
}
