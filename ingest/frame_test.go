package ingest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// mustFrame returns the encoding of a frame built by one of the Append*
// functions that can fail; the tests only give them valid payloads.
func mustFrame(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// rawHeader builds a header byte by byte, so malformed frames can be made.
func rawHeader(length uint32, ver byte, kind Kind, flags uint16, seq uint64) []byte {
	b := binary.BigEndian.AppendUint32(nil, length)
	b = append(b, ver, byte(kind))
	b = binary.BigEndian.AppendUint16(b, flags)
	return binary.BigEndian.AppendUint64(b, seq)
}

func TestRoundTripEveryKind(t *testing.T) {
	big := bytes.Repeat([]byte{0xAB}, DefaultMaxPayload)
	ping := []byte("0123456789012345678901234567890123456789012345678901234567890123")[:MaxPingPayload]
	tests := []struct {
		name    string
		replies bool
		frame   []byte
		want    Frame
	}{
		{"data", false, mustFrame(AppendData(nil, 1, []byte("hello"))), Frame{Header{KindData, 0, 1, 5}, []byte("hello")}},
		{"data empty", false, mustFrame(AppendData(nil, 7, nil)), Frame{Header{KindData, 0, 7, 0}, []byte{}}},
		{"data max", false, mustFrame(AppendData(nil, 1<<63, big)), Frame{Header{KindData, 0, 1 << 63, DefaultMaxPayload}, big}},
		{"ping", false, mustFrame(AppendPing(nil, 2, ping)), Frame{Header{KindPing, 0, 2, MaxPingPayload}, ping}},
		{"ping empty", false, mustFrame(AppendPing(nil, ^uint64(0), nil)), Frame{Header{KindPing, 0, ^uint64(0), 0}, []byte{}}},
		{"ack", true, AppendAck(nil, 42), Frame{Header{KindAck, 0, 42, 0}, []byte{}}},
		{"ack zero", true, AppendAck(nil, 0), Frame{Header{KindAck, 0, 0, 0}, []byte{}}},
		{"nack", true, AppendNack(nil, 9, NackOverloaded, "queue full"), Frame{Header{KindNack, 0, 9, 12}, []byte("\x00\x03queue full")}},
		{"nack no reason", true, AppendNack(nil, 9, NackShuttingDown, ""), Frame{Header{KindNack, 0, 9, 2}, []byte("\x00\x04")}},
		{"nack storage unavailable", true, AppendNack(nil, 9, NackStorageUnavailable, ""), Frame{Header{KindNack, 0, 9, 2}, []byte("\x00\x06")}},
		{"pong", true, mustFrame(AppendPong(nil, 2, ping)), Frame{Header{KindPong, 0, 2, MaxPingPayload}, ping}},
		{"goaway", true, AppendGoaway(nil, 100), Frame{Header{KindGoaway, 0, 100, 0}, []byte{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder(0)
			if tt.replies {
				d = NewReplyDecoder()
			}
			f, n, err := d.Decode(tt.frame)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if n != len(tt.frame) || n != tt.want.FrameLen() {
				t.Fatalf("consumed %d, frame is %d bytes, FrameLen %d", n, len(tt.frame), tt.want.FrameLen())
			}
			if f.Header != tt.want.Header || !bytes.Equal(f.Payload, tt.want.Payload) {
				t.Fatalf("got %+v %q, want %+v %q", f.Header, f.Payload, tt.want.Header, tt.want.Payload)
			}
			if got := f.AppendTo(nil); !bytes.Equal(got, tt.frame) {
				t.Fatalf("AppendTo = %x, want %x", got, tt.frame)
			}
			// The payload is a view whose capacity ends with the frame.
			if len(f.Payload) > 0 && &f.Payload[0] != &tt.frame[HeaderSize] || cap(f.Payload) != len(f.Payload) {
				t.Fatal("payload is not a capacity-limited view into the input")
			}
		})
	}
}

// TestGoldenBytes pins the byte dumps shown in docs/protocol.md.
func TestGoldenBytes(t *testing.T) {
	data := mustFrame(AppendData(nil, 1, []byte("hello")))
	if got, want := hex.EncodeToString(data), "00000011"+"01"+"01"+"0000"+"0000000000000001"+"68656c6c6f"; got != want {
		t.Errorf("DATA = %s, want %s", got, want)
	}
	ack := AppendAck(nil, 1)
	if got, want := hex.EncodeToString(ack), "0000000c"+"01"+"02"+"0000"+"0000000000000001"; got != want {
		t.Errorf("ACK = %s, want %s", got, want)
	}
	nack := AppendNack(nil, 3, NackOverloaded, "busy")
	if got, want := hex.EncodeToString(nack), "00000012"+"01"+"03"+"0000"+"0000000000000003"+"0003"+"62757379"; got != want {
		t.Errorf("NACK = %s, want %s", got, want)
	}
	id := SessionID{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	hello := mustFrame(AppendHello(nil, id, "cam-7"))
	if got, want := hex.EncodeToString(hello), "00000021"+"01"+"07"+"0000"+"0000000000000000"+"00112233445566778899aabbccddeeff"+"63616d2d37"; got != want {
		t.Errorf("HELLO = %s, want %s", got, want)
	}
	welcome := AppendWelcome(nil, 41, id)
	if got, want := hex.EncodeToString(welcome), "0000001c"+"01"+"08"+"0000"+"0000000000000029"+"00112233445566778899aabbccddeeff"; got != want {
		t.Errorf("WELCOME = %s, want %s", got, want)
	}
}

// TestHelloRules: HELLO decodes only as the first frame, with seq 0, a
// 16-byte id and a name of at most 64 bytes of UTF-8; WELCOME only with
// the 16-byte id.
func TestHelloRules(t *testing.T) {
	id := SessionID{9}
	hello := mustFrame(AppendHello(nil, id, "name"))
	d := NewDecoder(0)
	f, _, err := d.Decode(hello)
	if gotID, name := f.Hello(); err != nil || gotID != id || string(name) != "name" {
		t.Fatalf("HELLO decoded as %v %q, %v", gotID, name, err)
	}
	data := mustFrame(AppendData(nil, 1, []byte("x")))
	if _, _, err := d.Decode(data); err != nil {
		t.Fatalf("DATA after HELLO: %v", err)
	}
	bad := map[string][]byte{
		"seq not 0":  append(rawHeader(12+SessionIDSize, 1, KindHello, 0, 3), make([]byte, SessionIDSize)...),
		"short id":   append(rawHeader(12+8, 1, KindHello, 0, 0), make([]byte, 8)...),
		"bad utf-8":  append(append(rawHeader(12+SessionIDSize+2, 1, KindHello, 0, 0), make([]byte, SessionIDSize)...), 0xff, 0xfe),
		"after data": append(append([]byte(nil), data...), hello...),
	}
	for name, b := range bad {
		d := NewDecoder(0)
		var err error
		for len(b) > 0 && err == nil {
			var n int
			_, n, err = d.Decode(b)
			b = b[n:]
		}
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want malformed", name, err)
		}
	}
	if _, err := AppendHello(nil, id, strings.Repeat("n", MaxClientName+1)); err == nil {
		t.Error("AppendHello took a 65-byte name")
	}
	rd := NewReplyDecoder()
	if f, _, err := rd.Decode(AppendWelcome(nil, 7, id)); err != nil || f.Welcome() != id || f.Seq != 7 {
		t.Fatalf("WELCOME decoded as %v seq %d, %v", f.Welcome(), f.Seq, err)
	}
	rd = NewReplyDecoder()
	if _, _, err := rd.Decode(append(rawHeader(12+4, 1, KindWelcome, 0, 7), 1, 2, 3, 4)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short WELCOME: %v, want malformed", err)
	}
}

func TestNackAccessors(t *testing.T) {
	d := NewReplyDecoder()
	f, _, err := d.Decode(AppendNack(nil, 5, NackTooLarge, "payload of 2000000 bytes"))
	if err != nil {
		t.Fatal(err)
	}
	if f.NackCode() != NackTooLarge || string(f.NackReason()) != "payload of 2000000 bytes" {
		t.Fatalf("code %v reason %q", f.NackCode(), f.NackReason())
	}
	ack := Frame{Header: Header{Kind: KindAck}}
	if ack.NackCode() != 0 || ack.NackReason() != nil {
		t.Fatal("accessors on a non-NACK frame should return zero values")
	}
}

func TestAppendNackTruncatesReasonAtRuneBoundary(t *testing.T) {
	reason := strings.Repeat("é", MaxNackReason) // 2 bytes a rune
	reason = "x" + reason                        // put rune starts on odd offsets
	b := AppendNack(nil, 1, NackMalformed, reason)
	d := NewReplyDecoder()
	f, _, err := d.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	r := f.NackReason()
	if len(r) > MaxNackReason || len(r) < MaxNackReason-utf8.UTFMax || !utf8.Valid(r) || !strings.HasPrefix(reason, string(r)) {
		t.Fatalf("reason of %d bytes, valid UTF-8 %v", len(r), utf8.Valid(r))
	}
}

func TestAppendRefusesOversizePayloads(t *testing.T) {
	dst := []byte("keep")
	big := make([]byte, MaxPingPayload+1)
	for name, fn := range map[string]func([]byte, uint64, []byte) ([]byte, error){"ping": AppendPing, "pong": AppendPong} {
		got, err := fn(dst, 1, big)
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: err = %v, want ErrTooLarge", name, err)
		}
		if string(got) != "keep" {
			t.Errorf("%s: dst changed to %q", name, got)
		}
	}
}

func TestDecodeNeedMore(t *testing.T) {
	frame := mustFrame(AppendData(nil, 1, []byte("0123456789")))
	for i := 0; i < len(frame); i++ {
		d := NewDecoder(0)
		_, n, err := d.Decode(frame[:i])
		if err != ErrNeedMore {
			t.Fatalf("prefix %d: err = %v, want ErrNeedMore", i, err)
		}
		want := HeaderSize
		if i >= HeaderSize {
			want = len(frame)
		}
		if n != want {
			t.Fatalf("prefix %d: need %d, want %d", i, n, want)
		}
		if d.LastSeq() != 0 {
			t.Fatalf("prefix %d: incomplete frame advanced LastSeq", i)
		}
	}
}

func TestDecodeProtocolErrors(t *testing.T) {
	okData := func(seq uint64, n int) []byte {
		return mustFrame(AppendData(nil, seq, make([]byte, n)))
	}
	tests := []struct {
		name       string
		replies    bool
		maxPayload int
		input      []byte // the bad frame comes last; earlier ones are fine
		wantCode   NackCode
		wantSeq    uint64
		wantErr    error
	}{
		{"bad version 0", false, 0, rawHeader(12, 0, KindData, 0, 1), NackMalformed, 1, ErrMalformed},
		{"bad version 2", false, 0, rawHeader(12, 2, KindData, 0, 1), NackMalformed, 1, ErrMalformed},
		{"kind 0", false, 0, rawHeader(12, 1, 0, 0, 1), NackMalformed, 1, ErrMalformed},
		{"kind 7", false, 0, rawHeader(12, 1, 7, 0, 1), NackMalformed, 1, ErrMalformed},
		{"kind 255", false, 0, rawHeader(12, 1, 255, 0, 1), NackMalformed, 1, ErrMalformed},
		{"server kind from client", false, 0, AppendAck(nil, 3), NackMalformed, 3, ErrMalformed},
		{"client kind from server", true, 0, okData(1, 0), NackMalformed, 1, ErrMalformed},
		{"flags", false, 0, rawHeader(12, 1, KindData, 1, 1), NackMalformed, 1, ErrMalformed},
		{"flags high bit", false, 0, rawHeader(12, 1, KindPing, 0x8000, 1), NackMalformed, 1, ErrMalformed},
		{"len 0", false, 0, []byte{0, 0, 0, 0}, NackMalformed, 0, ErrMalformed},
		{"len 11", false, 0, rawHeader(11, 1, KindData, 0, 1), NackMalformed, 0, ErrMalformed},
		{"seq 0", false, 0, okData(0, 0), NackMalformed, 0, ErrMalformed},
		{"seq repeated", false, 0, append(okData(5, 1), okData(5, 1)...), NackMalformed, 5, ErrMalformed},
		{"seq decreasing", false, 0, append(okData(5, 1), okData(4, 1)...), NackMalformed, 4, ErrMalformed},
		{"ping seq shares data sequence", false, 0, append(okData(5, 1), mustFrame(AppendPing(nil, 5, nil))...), NackMalformed, 5, ErrMalformed},
		{"oversize default", false, 0, rawHeader(12+DefaultMaxPayload+1, 1, KindData, 0, 1), NackTooLarge, 1, ErrTooLarge},
		{"oversize configured", false, 100, rawHeader(12+101, 1, KindData, 0, 8), NackTooLarge, 8, ErrTooLarge},
		{"oversize max len", false, 0, rawHeader(^uint32(0), 1, KindData, 0, 8), NackTooLarge, 8, ErrTooLarge},
		{"ping payload 65", false, 0, rawHeader(12+65, 1, KindPing, 0, 2), NackTooLarge, 2, ErrTooLarge},
		{"pong payload 65", true, 0, rawHeader(12+65, 1, KindPong, 0, 2), NackTooLarge, 2, ErrTooLarge},
		{"ack with payload", true, 0, append(rawHeader(13, 1, KindAck, 0, 2), 0), NackMalformed, 2, ErrMalformed},
		{"goaway with payload", true, 0, append(rawHeader(13, 1, KindGoaway, 0, 2), 0), NackMalformed, 2, ErrMalformed},
		{"nack without code", true, 0, append(rawHeader(13, 1, KindNack, 0, 2), 0), NackMalformed, 2, ErrMalformed},
		{"nack unknown code", true, 0, append(rawHeader(14, 1, KindNack, 0, 2), 0, 9), NackMalformed, 2, ErrMalformed},
		{"nack undefined code 7", true, 0, append(rawHeader(14, 1, KindNack, 0, 2), 0, 7), NackMalformed, 2, ErrMalformed},
		{"nack reason too long", true, 0, rawHeader(12+2+MaxNackReason+1, 1, KindNack, 0, 2), NackTooLarge, 2, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder(tt.maxPayload)
			if tt.replies {
				d = NewReplyDecoder()
			}
			b := tt.input
			var err error
			for {
				var n int
				_, n, err = d.Decode(b)
				if err != nil {
					break
				}
				b = b[n:]
			}
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *ProtocolError", err)
			}
			if pe.Code != tt.wantCode || pe.Seq != tt.wantSeq || !errors.Is(err, tt.wantErr) {
				t.Fatalf("got code %v seq %d (%v), want code %v seq %d", pe.Code, pe.Seq, err, tt.wantCode, tt.wantSeq)
			}
			if pe.Reason == "" {
				t.Fatal("empty reason")
			}
			// The error is sticky, even for a perfectly good frame.
			if _, n, err2 := d.Decode(mustFrame(AppendData(nil, 1<<62, nil))); err2 != err || n != 0 {
				t.Fatalf("after error: n=%d err=%v, want the same error", n, err2)
			}
		})
	}
}

// TestOversizeDecidedFromHeader checks that a too-large frame is refused
// as soon as its 16-byte header is in, so the payload need never be read.
func TestOversizeDecidedFromHeader(t *testing.T) {
	d := NewDecoder(1000)
	_, _, err := d.Decode(rawHeader(12+1001, 1, KindData, 0, 1))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	d = NewDecoder(1000)
	_, n, err := d.Decode(rawHeader(12+1000, 1, KindData, 0, 1))
	if err != ErrNeedMore || n != HeaderSize+1000 {
		t.Fatalf("at the limit: n=%d err=%v, want ErrNeedMore for %d", n, err, HeaderSize+1000)
	}
}

func TestProtocolErrorIs(t *testing.T) {
	for _, c := range []NackCode{NackMalformed, NackTooLarge, NackOverloaded, NackShuttingDown} {
		err := error(&ProtocolError{Code: c, Seq: 1, Reason: "r"})
		n := 0
		for _, s := range []error{ErrMalformed, ErrTooLarge, ErrOverloaded, ErrShuttingDown, ErrNeedMore} {
			if errors.Is(err, s) {
				n++
				if s != c.sentinel() {
					t.Errorf("%v matches %v", c, s)
				}
			}
		}
		if n != 1 {
			t.Errorf("%v matches %d sentinels", c, n)
		}
	}
	if errors.Is(&ProtocolError{Code: 77}, ErrMalformed) {
		t.Error("unknown code matches ErrMalformed")
	}
	e := &ProtocolError{Code: NackTooLarge, Seq: 12, Reason: "payload of 2 MiB"}
	if got, want := e.Error(), "ingest: frame seq 12 refused (too large): payload of 2 MiB"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestStrings(t *testing.T) {
	kinds := map[Kind]string{KindData: "DATA", KindAck: "ACK", KindNack: "NACK", KindPing: "PING", KindPong: "PONG", KindGoaway: "GOAWAY", KindHello: "HELLO", KindWelcome: "WELCOME", 0: "Kind(0)", 9: "Kind(9)"}
	for k, want := range kinds {
		if k.String() != want {
			t.Errorf("Kind %d = %q, want %q", uint8(k), k.String(), want)
		}
	}
	codes := map[NackCode]string{NackMalformed: "malformed", NackTooLarge: "too large", NackOverloaded: "overloaded", NackShuttingDown: "shutting down", NackStorageUnavailable: "storage unavailable", NackUnknownSession: "unknown session", 0: "NackCode(0)", 7: "NackCode(7)"}
	for c, want := range codes {
		if c.String() != want {
			t.Errorf("NackCode %d = %q, want %q", uint16(c), c.String(), want)
		}
	}
	fatal := map[NackCode]bool{NackMalformed: true, NackTooLarge: true, NackOverloaded: false, NackShuttingDown: false, NackStorageUnavailable: false, 0: true, 5: true, 7: true}
	for c, want := range fatal {
		if c.Fatal() != want {
			t.Errorf("NackCode(%d).Fatal() = %v", uint16(c), c.Fatal())
		}
	}
}

// streamFrame is what a test expects one decoded frame to be.
type streamFrame struct {
	kind    Kind
	seq     uint64
	payload []byte
}

// makeStream encodes n client frames (mostly DATA with 0 to 100 byte
// payloads, a few up to 4 KiB, some PINGs) with increasing but gappy seqs.
func makeStream(tb testing.TB, n int, rng *rand.Rand) ([]byte, []streamFrame) {
	var stream []byte
	frames := make([]streamFrame, 0, n)
	seq := uint64(0)
	var err error
	for range n {
		seq += 1 + uint64(rng.IntN(3))
		if rng.IntN(16) == 0 {
			p := make([]byte, rng.IntN(MaxPingPayload+1))
			fillRandom(rng, p)
			stream, err = AppendPing(stream, seq, p)
			frames = append(frames, streamFrame{KindPing, seq, p})
		} else {
			size := rng.IntN(101)
			if rng.IntN(100) == 0 {
				size = rng.IntN(4097)
			}
			p := make([]byte, size)
			fillRandom(rng, p)
			stream, err = AppendData(stream, seq, p)
			frames = append(frames, streamFrame{KindData, seq, p})
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
	return stream, frames
}

func fillRandom(rng *rand.Rand, p []byte) {
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
}

// feed decodes stream the way a connection reader does: chunks of the
// sizes next returns arrive into a receive buffer, the decoder runs over
// whatever is buffered, and the unconsumed tail moves to the front.
func feed(tb testing.TB, stream []byte, want []streamFrame, next func() int) {
	tb.Helper()
	d := NewDecoder(0)
	buf := make([]byte, 0, 512)
	i := 0
	for off := 0; off < len(stream); {
		k := min(next(), len(stream)-off)
		buf = append(buf, stream[off:off+k]...)
		off += k
		rest := buf
		for {
			f, n, err := d.Decode(rest)
			if err == ErrNeedMore {
				if n <= len(rest) {
					tb.Fatalf("ErrNeedMore asks for %d bytes with %d buffered", n, len(rest))
				}
				break
			}
			if err != nil {
				tb.Fatalf("frame %d: %v", i, err)
			}
			if i >= len(want) {
				tb.Fatalf("decoded more frames than were sent")
			}
			w := want[i]
			if f.Kind != w.kind || f.Seq != w.seq || !bytes.Equal(f.Payload, w.payload) {
				tb.Fatalf("frame %d: got %v seq %d len %d, want %v seq %d len %d", i, f.Kind, f.Seq, len(f.Payload), w.kind, w.seq, len(w.payload))
			}
			i++
			rest = rest[n:]
		}
		if len(rest) != len(buf) {
			buf = append(buf[:0], rest...) // overlapping copy to the front
		}
	}
	if i != len(want) {
		tb.Fatalf("decoded %d frames, want %d", i, len(want))
	}
}

func TestDecodeStreamSplits(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 100_000
	stream, want := makeStream(t, n, rng)

	t.Run("whole", func(t *testing.T) { feed(t, stream, want, func() int { return len(stream) }) })
	t.Run("one byte at a time", func(t *testing.T) { feed(t, stream, want, func() int { return 1 }) })
	for _, size := range []int{3, 7, HeaderSize - 1, HeaderSize, HeaderSize + 1, 4096} {
		t.Run("fixed "+strconv.Itoa(size), func(t *testing.T) { feed(t, stream, want, func() int { return size }) })
	}
	for seed := uint64(0); seed < 4; seed++ {
		t.Run("random seed "+strconv.Itoa(int(seed)), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 99))
			limit := []int{20, 200, 2000, 20000}[seed]
			feed(t, stream, want, func() int { return 1 + r.IntN(limit) })
		})
	}
}

// TestDecodeEveryTwoAndThreeWaySplit cuts a short stream at every pair of
// positions, so every header and payload boundary is split every way.
func TestDecodeEveryTwoAndThreeWaySplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	stream, want := makeStream(t, 4, rng)
	if len(stream) > 600 {
		stream, want = stream[:0], want[:0]
		for seq := uint64(1); seq <= 4; seq++ {
			p := []byte("payload-" + strconv.Itoa(int(seq)))
			stream = mustFrame(AppendData(stream, seq, p))
			want = append(want, streamFrame{KindData, seq, p})
		}
	}
	for i := 0; i <= len(stream); i++ {
		for j := i; j <= len(stream); j++ {
			cuts := []int{i, j - i, len(stream) - j}
			k := 0
			feed(t, stream, want, func() int {
				c := 1
				if k < len(cuts) && cuts[k] > 0 {
					c = cuts[k]
				}
				k++
				return c
			})
		}
	}
}

func TestDecodeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	stream, want := makeStream(t, 1000, rng)
	allocs := testing.AllocsPerRun(20, func() {
		d := NewDecoder(0)
		b := stream
		for len(b) > 0 {
			_, n, err := d.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			b = b[n:]
		}
		_, _, _ = d.Decode(stream[:3]) // the need-more path too
	})
	if allocs != 0 {
		t.Fatalf("decoding %d frames allocated %v times, want 0", len(want), allocs)
	}
}

func TestAppendAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	buf := make([]byte, 0, 4096)
	payload := make([]byte, 1000)
	allocs := testing.AllocsPerRun(100, func() {
		b := buf[:0]
		b, _ = AppendData(b, 1, payload)
		b, _ = AppendPing(b, 2, payload[:64])
		b, _ = AppendPong(b, 2, payload[:64])
		b = AppendAck(b, 1)
		b = AppendNack(b, 3, NackOverloaded, "queue full")
		_ = AppendGoaway(b, 1)
	})
	if allocs != 0 {
		t.Fatalf("Append* allocated %v times with a large enough dst, want 0", allocs)
	}
}

func BenchmarkDecode(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	stream, want := makeStream(b, 10_000, rng)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		d := NewDecoder(0)
		rest := stream
		for len(rest) > 0 {
			_, n, err := d.Decode(rest)
			if err != nil {
				b.Fatal(err)
			}
			rest = rest[n:]
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(want)), "ns/frame")
}
