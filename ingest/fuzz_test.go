package ingest

import (
	"bytes"
	"errors"
	"testing"
)

// outcome is one step of decoding a byte stream: a frame (as the bytes it
// took) or the error that ended decoding.
type outcome struct {
	raw  []byte
	code NackCode // protocol error code; 0 for a frame or ErrNeedMore
	seq  uint64
	more bool // ended on ErrNeedMore
}

// decodeSteps decodes data fed in the chunks that cuts gives, with a fresh
// decoder from newDecoder, and returns every frame and the final outcome.
// It checks the invariants of Decode that hold for any input.
func decodeSteps(t *testing.T, newDecoder func() Decoder, data []byte, cuts []int) []outcome {
	t.Helper()
	d := newDecoder()
	var out []outcome
	var buf []byte
	off := 0
	for _, c := range append(cuts, len(data)) {
		c = min(max(c, off), len(data))
		buf = append(buf, data[off:c]...)
		off = c
		for {
			f, n, err := d.Decode(buf)
			if err == ErrNeedMore {
				if n <= len(buf) {
					t.Fatalf("ErrNeedMore asks for %d bytes with %d buffered", n, len(buf))
				}
				break
			}
			if err != nil {
				var pe *ProtocolError
				if !errors.As(err, &pe) || n != 0 {
					t.Fatalf("Decode returned n=%d err=%v", n, err)
				}
				if !errors.Is(err, pe.Code.sentinel()) || !pe.Code.Fatal() {
					t.Fatalf("decoder produced a non-fatal or unmatched code: %v", err)
				}
				return append(out, outcome{code: pe.Code, seq: pe.Seq})
			}
			if n < HeaderSize || n > len(buf) || n != f.FrameLen() || len(f.Payload) != int(f.PayloadLen) {
				t.Fatalf("Decode consumed %d of %d bytes for a frame of %d", n, len(buf), f.FrameLen())
			}
			raw := buf[:n]
			if len(f.Payload) > 0 && &f.Payload[0] != &raw[HeaderSize] {
				t.Fatal("payload is not a view into the input")
			}
			checkReencode(t, f, raw)
			out = append(out, outcome{raw: bytes.Clone(raw)})
			buf = buf[n:]
		}
	}
	if len(buf) > 0 {
		out = append(out, outcome{raw: bytes.Clone(buf), more: true})
	}
	return out
}

// checkReencode checks that an accepted frame is written back byte for byte
// both by Frame.AppendTo and by the Append* constructor for its kind.
func checkReencode(t *testing.T, f Frame, raw []byte) {
	t.Helper()
	if got := f.AppendTo(nil); !bytes.Equal(got, raw) {
		t.Fatalf("AppendTo = %x, want %x", got, raw)
	}
	var got []byte
	var err error
	switch f.Kind {
	case KindData:
		got, err = AppendData(nil, f.Seq, f.Payload)
	case KindPing:
		got, err = AppendPing(nil, f.Seq, f.Payload)
	case KindPong:
		got, err = AppendPong(nil, f.Seq, f.Payload)
	case KindAck:
		got = AppendAck(nil, f.Seq)
	case KindGoaway:
		got = AppendGoaway(nil, f.Seq)
	case KindNack:
		got = AppendNack(nil, f.Seq, f.NackCode(), string(f.NackReason()))
	default:
		t.Fatalf("decoder accepted kind %v", f.Kind)
	}
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("re-encoding %v: %x, %v; want %x", f.Kind, got, err, raw)
	}
}

func FuzzDecoder(f *testing.F) {
	// Seeds: a valid stream of each direction and every refusal the tests
	// name, so the fuzzer starts next to each branch.
	var client []byte
	client, _ = AppendData(client, 1, []byte("hello"))
	client, _ = AppendPing(client, 2, []byte("p"))
	client, _ = AppendData(client, 10, bytes.Repeat([]byte{7}, 40))
	var server []byte
	server = AppendAck(server, 1)
	server = AppendNack(server, 2, NackOverloaded, "busy")
	server, _ = AppendPong(server, 3, []byte("p"))
	server = AppendGoaway(server, 10)
	seeds := [][]byte{
		client, server, nil, {0, 0, 0},
		rawHeader(12, 2, KindData, 0, 1),
		rawHeader(12, 1, 9, 0, 1),
		rawHeader(12, 1, KindData, 4, 1),
		rawHeader(11, 1, KindData, 0, 1),
		append(AppendAck(nil, 0), rawHeader(12, 1, KindData, 0, 0)...),
		rawHeader(12+DefaultMaxPayload+1, 1, KindData, 0, 1),
		rawHeader(12+65, 1, KindPing, 0, 1),
		append(rawHeader(14, 1, KindNack, 0, 1), 0, 9),
	}
	for _, s := range seeds {
		f.Add(s, uint16(5), uint16(20), uint16(0))
	}

	f.Fuzz(func(t *testing.T, data []byte, cut1, cut2, maxPayload uint16) {
		cuts := []int{int(cut1), int(cut1) + int(cut2)}
		for _, newDecoder := range []func() Decoder{
			func() Decoder { return NewDecoder(int(maxPayload)) },
			NewReplyDecoder,
		} {
			whole := decodeSteps(t, newDecoder, data, nil)
			split := decodeSteps(t, newDecoder, data, cuts)
			bytewise := decodeSteps(t, newDecoder, data, everyByte(len(data)))
			for _, other := range [][]outcome{split, bytewise} {
				if len(other) != len(whole) {
					t.Fatalf("split decoding gave %d steps, whole gave %d", len(other), len(whole))
				}
				for i := range whole {
					a, b := whole[i], other[i]
					if a.code != b.code || a.seq != b.seq || a.more != b.more || !bytes.Equal(a.raw, b.raw) {
						t.Fatalf("step %d differs: whole %+v, split %+v", i, a, b)
					}
				}
			}
		}
	})
}

// everyByte returns the cut positions that feed n bytes one at a time.
func everyByte(n int) []int {
	cuts := make([]int, n)
	for i := range cuts {
		cuts[i] = i + 1
	}
	return cuts
}
