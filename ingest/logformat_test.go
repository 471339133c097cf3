package ingest

import (
	"encoding/hex"
	"testing"
)

// TestLogGoldenBytes pins the byte dumps shown in docs/protocol.md. The CRC
// was cross-checked with an independent bitwise CRC-32C (polynomial
// 0x82F63B78, reflected), whose check value for "123456789" is e3069283.
func TestLogGoldenBytes(t *testing.T) {
	if got, want := hex.EncodeToString(appendSegmentHeader(nil)), "47595245494c4f47"+"00000001"+"00000000"; got != want {
		t.Errorf("segment header = %s, want %s", got, want)
	}
	rec := appendRecord(nil, &Record{Conn: 7, Seq: 1, Payload: []byte("hello")}, 1700000000000000000)
	want := "47524543" + "06aaebf3" + "00000005" + "0000000000000007" + "0000000000000001" + "17979cfe362a0000" + "68656c6c6f"
	if got := hex.EncodeToString(rec); got != want {
		t.Errorf("record = %s, want %s", got, want)
	}
	h, ok := parseRecordHeader(rec)
	if !ok || recordCRC(rec, rec[recHeaderSize:]) != h.crc || h.conn != 7 || h.seq != 1 || h.len != 5 || h.ts != 1700000000000000000 {
		t.Errorf("parsed %+v", h)
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
