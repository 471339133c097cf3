package ingest

import (
	"encoding/binary"
	"encoding/hex"
	"testing"
)

// crc32cBitwise is an independent CRC-32C (Castagnoli, reflected
// polynomial 0x82F63B78), one bit at a time, to check the table-driven one
// the log uses.
func crc32cBitwise(b []byte) uint32 {
	c := ^uint32(0)
	for _, x := range b {
		c ^= uint32(x)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0x82F63B78
			} else {
				c >>= 1
			}
		}
	}
	return ^c
}

// appendSegmentHeaderV1 and appendRecordV1 write format version 1, as the
// sink did before sessions: the tests use them to make logs of old sinks.
func appendSegmentHeaderV1(dst []byte) []byte {
	dst = append(dst, segMagic...)
	dst = binary.BigEndian.AppendUint32(dst, segVersionV1)
	return binary.BigEndian.AppendUint32(dst, 0)
}

func appendRecordV1(dst []byte, r *Record, ts int64) []byte {
	start := len(dst)
	dst = append(dst, recMagic...)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.Payload)))
	dst = binary.BigEndian.AppendUint64(dst, r.Conn)
	dst = binary.BigEndian.AppendUint64(dst, r.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts))
	dst = append(dst, r.Payload...)
	binary.BigEndian.PutUint32(dst[start+4:], crc32cBitwise(dst[start+8:]))
	return dst
}

// goldenSession is the session id of the version 2 example in
// docs/protocol.md.
var goldenSession = SessionID{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}

// TestLogGoldenBytes pins the version 2 byte dump shown in
// docs/protocol.md. The CRC is cross-checked with crc32cBitwise, whose
// check value for "123456789" is e3069283.
func TestLogGoldenBytes(t *testing.T) {
	if got := crc32cBitwise([]byte("123456789")); got != 0xe3069283 {
		t.Fatalf("bitwise CRC-32C check value %08x", got)
	}
	if got, want := hex.EncodeToString(appendSegmentHeader(nil)), "47595245494c4f47"+"00000002"+"00000000"; got != want {
		t.Errorf("segment header = %s, want %s", got, want)
	}
	r := Record{Conn: 7, Seq: 1, Session: goldenSession, Payload: []byte("hello")}
	rec := appendRecord(nil, &r, 1700000000000000000)
	want := "47524543" + "3e2baee8" + "00000005" + "0000000000000007" + "0000000000000001" + "17979cfe362a0000" +
		"00112233445566778899aabbccddeeff" + "68656c6c6f"
	if got := hex.EncodeToString(rec); got != want {
		t.Errorf("record = %s, want %s", got, want)
	}
	if len(rec) != recordSize(5) || recordSize(5) != 57 {
		t.Errorf("record is %d bytes, recordSize(5) = %d, want 57", len(rec), recordSize(5))
	}
	if got := crc32cBitwise(rec[8:]); got != binary.BigEndian.Uint32(rec[4:8]) {
		t.Errorf("bitwise CRC-32C %08x, record holds %08x", got, rec[4:8])
	}
	h, ok := parseRecordHeader(rec, recHeaderSize)
	if !ok || recordCRC(rec, recHeaderSize, rec[recHeaderSize:]) != h.crc || h.conn != 7 || h.seq != 1 || h.len != 5 ||
		h.ts != 1700000000000000000 || h.session != goldenSession {
		t.Errorf("parsed %+v", h)
	}
	if goldenSession.String() != "00112233445566778899aabbccddeeff" {
		t.Errorf("session prints as %s", goldenSession)
	}
}

// TestLogGoldenBytesV1 pins the version 1 byte dump shown in
// docs/protocol.md and checks that the reader's parsing of version 1
// headers agrees with it.
func TestLogGoldenBytesV1(t *testing.T) {
	if got, want := hex.EncodeToString(appendSegmentHeaderV1(nil)), "47595245494c4f47"+"00000001"+"00000000"; got != want {
		t.Errorf("segment header = %s, want %s", got, want)
	}
	rec := appendRecordV1(nil, &Record{Conn: 7, Seq: 1, Payload: []byte("hello")}, 1700000000000000000)
	want := "47524543" + "06aaebf3" + "00000005" + "0000000000000007" + "0000000000000001" + "17979cfe362a0000" + "68656c6c6f"
	if got := hex.EncodeToString(rec); got != want {
		t.Errorf("record = %s, want %s", got, want)
	}
	h, ok := parseRecordHeader(rec, recHeaderLen(segVersionV1))
	if !ok || recordCRC(rec, recHeaderSizeV1, rec[recHeaderSizeV1:]) != h.crc || h.conn != 7 || h.seq != 1 || h.len != 5 ||
		h.ts != 1700000000000000000 || !h.session.IsZero() {
		t.Errorf("parsed %+v", h)
	}
}

func TestCheckSegmentHeader(t *testing.T) {
	for _, v := range []uint32{0, 1, 2, 3, 1 << 31} {
		h := append([]byte(segMagic), 0, 0, 0, 0, 0, 0, 0, 0)
		binary.BigEndian.PutUint32(h[8:], v)
		got, reason := checkSegmentHeader(h)
		if ok := v == 1 || v == 2; ok != (reason == "") || ok && got != v {
			t.Errorf("version %d: checkSegmentHeader = %d, %q", v, got, reason)
		}
	}
	if _, reason := checkSegmentHeader([]byte("GYREILOX\x00\x00\x00\x02\x00\x00\x00\x00")); reason == "" {
		t.Error("bad magic accepted")
	}
}

func TestSegmentNames(t *testing.T) {
	if got := segmentName(42); got != "00000000000000000042.seg" {
		t.Errorf("segmentName(42) = %q", got)
	}
	if got := segmentName(^uint64(0)); got != "18446744073709551615.seg" {
		t.Errorf("segmentName(max) = %q", got)
	}
	for name, want := range map[string]bool{
		"00000000000000000042.seg":           true,
		"00000000000000000042.seg.dropped-9": false,
		"0000000000000000042.seg":            false,
		"0000000000000000004x.seg":           false,
		"99999999999999999999.seg":           false, // overflows uint64
		"LOCK":                               false,
	} {
		if _, ok := parseSegmentName(name); ok != want {
			t.Errorf("parseSegmentName(%q) ok = %v, want %v", name, ok, want)
		}
	}
}
